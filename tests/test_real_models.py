"""Models as their authors write them: called with keyword arguments and static flags, holding RNG streams
and plain array attributes. Each is checked as written, in every precision, without a wrapper."""

from __future__ import annotations

import pytest

from .conftest import expect

# A classifier called as NNX examples call theirs: an optional positional mask, keyword-only rngs and a
# deterministic flag that Python control flow reads (it cannot be traced).
KEYWORDS = r"""
import jax.numpy as jnp
import pytest
from flax import nnx

import pytest_jaxperf as jaxperf


class Classifier(nnx.Module):
    def __init__(self, *, rngs):
        self.dense = nnx.Linear(16, 32, rngs=rngs)
        self.out = nnx.Linear(32, 4, rngs=rngs)

    def __call__(self, x, mask=None, *, rngs=None, deterministic=False, scale=1.0):
        if not deterministic:
            raise ValueError("only inference here")
        h = nnx.relu(self.dense(x)) * scale
        if mask is not None:
            h = h * mask
        return self.out(h)


X = jnp.linspace(-1.0, 1.0, 8 * 16).reshape(8, 16)
MASK = jnp.ones((8, 32))


@jaxperf.jit_warm
@jaxperf.dtype("float32", "bfloat16", "int8", max_examples=5)
@jaxperf.devices(1, 2)
def test_keywords(jaxperf):
    record = jaxperf.check(
        Classifier(rngs=nnx.Rngs(0)), X, mask=MASK, rngs=None, deterministic=True, scale=2.0
    )
    assert record.compiles == 1


@jaxperf.jit_warm
@jaxperf.dtype("float32", "int8", max_examples=5)
def test_a_positional_none(jaxperf):
    jaxperf.check(Classifier(rngs=nnx.Rngs(0)), X, None, deterministic=True)


@jaxperf.jit_warm
def test_the_wrapped_model_is_called_as_the_model_is(jaxperf):
    model = Classifier(rngs=nnx.Rngs(0))
    wrapped = jaxperf.wrap(model, X, mask=MASK, deterministic=True)
    expected = model(X, mask=MASK, deterministic=True)
    assert jnp.allclose(wrapped(X, mask=MASK, deterministic=True), expected, atol=1e-6)
    doubled = model(X * 2, mask=MASK, deterministic=True)
    assert jnp.allclose(wrapped(X * 2, mask=MASK, deterministic=True), doubled, atol=1e-6)
    with pytest.raises(TypeError, match=r"deterministic= is False here, True in the example"):
        wrapped(X, mask=MASK, deterministic=False)


@jaxperf.jit_warm
@jaxperf.dtype("float32", "bfloat16", "int8", max_examples=5)
def test_a_closed_over_model(jaxperf):
    model = Classifier(rngs=nnx.Rngs(0))
    if jaxperf.variant.dtype == "float32":
        jaxperf.check(lambda x: model(x, deterministic=True), X)
        return
    with pytest.raises(TypeError, match=r"<lambda> closes over the flax.nnx module model \(Classifier\): .*"
                       r"Pass the module itself"):
        jaxperf.check(lambda x: model(x, deterministic=True), X)


@jaxperf.jit_warm
def test_static_arguments_need_an_example_call(jaxperf):
    model = Classifier(rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"the example call model\(deterministic=True\) holds no input"):
        jaxperf.wrap(model, deterministic=True)
    with pytest.raises(TypeError, match=r"without an example call, so deterministic=True would be traced"):
        jaxperf.wrap(model)(X, deterministic=True)


@jaxperf.jit_warm
@jaxperf.dtype("bfloat16", max_examples=3)
def test_an_rngs_passed_in(jaxperf):
    jaxperf.check(Classifier(rngs=nnx.Rngs(0)), X, rngs=nnx.Rngs(1), deterministic=True)


@jaxperf.jit_warm
@jaxperf.dtype("bfloat16", max_examples=3)
@jaxperf.devices(2)
def test_a_batch_that_does_not_split(jaxperf):
    jaxperf.check(Classifier(rngs=nnx.Rngs(0)), X[:7], deterministic=True)


@jaxperf.jit_warm(max_compiles=2)
def test_wrap_then_check_share_one_compile_history(jaxperf):
    model = nnx.Linear(16, 4, rngs=nnx.Rngs(0))
    jaxperf.wrap(model)(jnp.ones((3, 16)))  # no example call: the plain pattern
    assert jaxperf.check(model, X).compiles == 2


def test_only_static_arguments_is_a_clear_error(jaxperf):
    with pytest.raises(TypeError, match=r"needs at least one example input holding an array .*True"):
        jaxperf.check(Classifier(rngs=nnx.Rngs(0)), None, deterministic=True)
"""


def test_keyword_inputs_and_static_arguments_reach_the_model_as_written(
    jaxperf_pytester: pytest.Pytester,
) -> None:
    jaxperf_pytester.makepyfile(test_keywords=KEYWORDS)
    expect(
        jaxperf_pytester,
        "--jaxperf-cpu-devices=2",
        passed=16,
        failed=1,
        lines=["*jaxperf bf16-d2: input [0] has a batch of 7 along axis 0, which does not divide among 2*"],
    )


# A language-model head: token ids in, logits out. Its only input is integers.
TOKENS = """
import jax.numpy as jnp
import pytest
from flax import nnx

import pytest_jaxperf
import pytest_jaxperf as jaxperf


class TinyLM(nnx.Module):
    def __init__(self, *, rngs):
        self.embed = nnx.Embed(64, 32, rngs=rngs)
        self.head = nnx.Linear(32, 64, rngs=rngs)

    def __call__(self, ids):
        return self.head(nnx.gelu(self.embed(ids)))


IDS = jnp.arange(48, dtype=jnp.int32).reshape(4, 12) % 64


@jaxperf.jit_warm
@jaxperf.dtype("bfloat16", max_examples=8)
def test_token_ids_vary(jaxperf):
    record = jaxperf.check(TinyLM(rngs=nnx.Rngs(0)), IDS)
    precision = record.precision
    assert precision["fidelity"]["examples"] == 8
    # Edge inputs (all lowest, all highest) may come twice; the rest differ.
    assert precision["distinct_inputs"] == precision["fidelity"]["distinct_inputs"] >= 4


@jaxperf.jit_warm
@jaxperf.dtype("bfloat16", max_examples=6, int_range=(0, 63))
def test_a_declared_range_reaches_its_edges(jaxperf):
    record = jaxperf.check(TinyLM(rngs=nnx.Rngs(0)), jnp.full((4, 12), 7, jnp.int32))
    assert record.precision["distinct_inputs"] > 1


@jaxperf.jit_warm
@jaxperf.dtype("bfloat16", max_examples=6)
def test_one_token_everywhere_warns(jaxperf):
    with pytest.warns(pytest_jaxperf.IdenticalInputsWarning, match=r"all 6 inputs .*int_range=\\(lowest"):
        record = jaxperf.check(TinyLM(rngs=nnx.Rngs(0)), jnp.full((4, 12), 7, jnp.int32))
    assert record.precision["distinct_inputs"] == 1

"""

BAD_RANGE = """
import pytest_jaxperf as jaxperf


@jaxperf.dtype("bfloat16", int_range=(5, 1))
def test_bad_range(jaxperf):
    pass
"""


def test_integer_inputs_are_generated_within_their_range(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(test_tokens=TOKENS, test_bad_range=BAD_RANGE)
    result = expect(jaxperf_pytester, "--continue-on-collection-errors", passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*jaxperf_dtype: int_range must be (lowest, highest) integers, both included, *got (5, 1)*"]
    )


# A VAE keeping its RNG streams, as NNX examples do (self.rngs sampled in __call__), and a layer holding
# its int8 weight and its scale as plain jax arrays (no nnx.Variable), as a hand-written quantized
# linear does.
STATE = """
import jax
import jax.numpy as jnp
from flax import nnx

import pytest_jaxperf as jaxperf


class VAE(nnx.Module):
    def __init__(self, *, rngs):
        self.encoder = nnx.Linear(32, 16, rngs=rngs)
        self.decoder = nnx.Linear(8, 32, rngs=rngs)
        self.rngs = rngs

    def __call__(self, x):
        mean, log_var = jnp.split(self.encoder(x), 2, axis=-1)
        z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(self.rngs.noise(), mean.shape)
        return self.decoder(z)


class QuantizedLinear(nnx.Module):
    def __init__(self, *, rngs):
        weight = jax.random.normal(rngs.params(), (32, 24))
        self.scale = jnp.max(jnp.abs(weight), axis=0) / 127
        self.w = jnp.round(weight / self.scale).astype(jnp.int8)
        self.dense = nnx.Linear(24, 16, rngs=rngs)
        self.table = jnp.linspace(0.0, 1.0, 16)

    def __call__(self, x):
        h = x @ (self.w.astype(x.dtype) * self.scale)
        return self.dense(nnx.relu(h)) + self.table


X = jnp.linspace(-1.0, 1.0, 8 * 32).reshape(8, 32)


# A VAE's encoder output goes through exp(): large inputs (or a ×100 spike) overflow it in any precision.
@jaxperf.jit_warm
@jaxperf.dtype(
    "float32", "bfloat16", "int8", "int8-dynamic", max_examples=5, input_scale=(1e-2, 0.5),
    input_kinds=("gaussian", "positive", "constant", "zero"),
)
def test_rng_streams(jaxperf):
    record = jaxperf.check(VAE(rngs=nnx.Rngs(params=0, noise=1)), X)
    precision = record.precision
    # Two keys and two counts ride along with the weights: in the bytes, never cast nor quantized.
    float32_weights = (32 * 16 + 16 + 8 * 32 + 32) * 4
    assert precision["float32_param_bytes"] > float32_weights
    assert precision["float32_param_bytes"] < float32_weights + 64


@jaxperf.jit_warm
@jaxperf.dtype("float32", "bfloat16", "int8", "int8-dynamic", max_examples=5)
def test_plain_array_attributes(jaxperf):
    record = jaxperf.check(QuantizedLinear(rngs=nnx.Rngs(0)), X)
    assert record.compiles == 1
"""


def test_modules_holding_rng_streams_and_plain_arrays_run_in_every_precision(
    jaxperf_pytester: pytest.Pytester,
) -> None:
    jaxperf_pytester.makepyfile(test_state=STATE)
    expect(jaxperf_pytester, passed=8)
    expect(jaxperf_pytester, "--jaxperf-update-baselines", "--jaxperf-repeat=1", passed=8)


# Rotary angles computed from positions made by iota: a matmul of no input and no weight, which no
# precision variant changes. The audit lists it apart and judges the model's own matmuls.
ROTARY = """
import jax.numpy as jnp
from flax import nnx

import pytest_jaxperf as jaxperf


class Rotary(nnx.Module):
    def __init__(self, *, rngs):
        self.proj = nnx.Linear(16, 16, rngs=rngs)

    def __call__(self, x):
        positions = jnp.broadcast_to(jnp.arange(x.shape[1]), x.shape[:2])
        frequencies = 1.0 / (10000 ** (jnp.arange(0, 8, dtype=jnp.float32) / 8))
        angles = jnp.einsum("BT,k->BTk", positions, frequencies)
        h = self.proj(x)
        first, second = jnp.split(h, 2, axis=-1)
        cos, sin = jnp.cos(angles).astype(h.dtype), jnp.sin(angles).astype(h.dtype)
        return jnp.concatenate([first * cos - second * sin, first * sin + second * cos], axis=-1)


@jaxperf.jit_warm
@jaxperf.dtype("bfloat16", "int8", max_examples=5)
def test_rotary(jaxperf):
    record = jaxperf.check(Rotary(rngs=nnx.Rngs(0)), jnp.ones((2, 6, 16)))
    audit = record.precision["audit"]
    assert len(audit["apart"]) == 1
    assert audit["apart"][0].endswith("(input-independent)")
    assert "1 apart, not judged (1 input-independent)" in audit["summary"]
    assert [m["layer"] for m in audit["matmuls"]] == ["proj"]
"""


def test_the_audit_lists_input_independent_matmuls_apart(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(test_rotary=ROTARY)
    expect(jaxperf_pytester, passed=2)


# A cache allocated in float32 and written with the variant's bfloat16 keys: the model's own dtype
# mismatch, which the bfloat16 variant must name as the model's failure at its line, not as the backend's.
CACHE = """
import jax
import jax.numpy as jnp
from flax import nnx

import pytest_jaxperf as jaxperf


class Cached(nnx.Module):
    def __init__(self, *, rngs):
        self.keys = nnx.Linear(16, 16, rngs=rngs)

    def __call__(self, x):
        cache = jnp.zeros((x.shape[0], 8, 16), jnp.float32)
        return jax.lax.dynamic_update_slice(cache, self.keys(x)[:, None, :], (0, 0, 0))


@jaxperf.jit_warm
@jaxperf.dtype("bfloat16")
def test_cache(jaxperf):
    jaxperf.check(Cached(rngs=nnx.Rngs(0)), jnp.ones((2, 16)))
"""


def test_a_models_own_failure_in_a_precision_is_named_at_its_line(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(test_cache=CACHE)
    result = expect(jaxperf_pytester, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*jaxperf bf16: the bfloat16 variant of Cached failed: TypeError: *dynamic_update_slice*",
            "*at *test_cache.py:*, in __call__*",
        ]
    )
    result.stdout.no_fnmatch_line("*cannot run on*")


# A model's other entry point, called as its author calls it: a VAE's decode method, and a classifier
# swept over batch sizes with its keyword arguments as written.
METHODS = """
import jax.numpy as jnp
import pytest
from flax import nnx

import pytest_jaxperf as jaxperf


class VAE(nnx.Module):
    def __init__(self, *, rngs):
        self.encoder = nnx.Linear(32, 16, rngs=rngs)
        self.decoder = nnx.Linear(8, 32, rngs=rngs)

    def __call__(self, x):
        return self.decode(self.encoder(x)[:, :8])

    def decode(self, z, *, scale=1.0):
        return nnx.sigmoid(self.decoder(z) * scale)

    @nnx.jit
    def reconstruct(self, x):
        return self(x)


Z = jnp.linspace(-1.0, 1.0, 4 * 8).reshape(4, 8)


# A latent of scale 1e3 saturates the sigmoid, where int8's error shows (23 dB): latents are of unit scale.
@jaxperf.jit_warm
@jaxperf.dtype("float32", "bfloat16", "int8", max_examples=5, input_scale=(1e-2, 10.0))
def test_decode(jaxperf):
    vae = VAE(rngs=nnx.Rngs(0))
    record = jaxperf.check(vae.decode, Z, scale=2.0)
    assert record.model == "VAE.decode"
    assert record.compiles == 1
    if jaxperf.variant.dtype != "float32":
        assert [m["layer"] for m in record.precision["audit"]["matmuls"]] == ["VAE.decoder"]
    # The same method wrapped again shares the check's compiled callable.
    decode = jaxperf.wrap(vae.decode, Z, scale=2.0)
    assert decode(Z, scale=2.0).shape == (4, 32)
    assert record.compiles == 1


@jaxperf.jit_warm
def test_the_module_call_itself(jaxperf):
    vae = VAE(rngs=nnx.Rngs(0))
    assert jaxperf.check(vae.__call__, jnp.ones((4, 32))).model == "VAE"


@jaxperf.jit_warm
@jaxperf.dtype("float32", "int8", max_examples=5, input_scale=(1e-2, 10.0))
def test_a_method_compiled_by_its_author(jaxperf):
    vae = VAE(rngs=nnx.Rngs(0))
    record = jaxperf.check(vae.reconstruct, jnp.ones((4, 32)))
    assert record.model == "VAE.reconstruct"
    assert record.compiles == 1


def test_sweep_with_keywords(jaxperf):
    vae = VAE(rngs=nnx.Rngs(0))
    sweep = jaxperf.batch_sweep(vae.decode, Z, scale=2.0, sizes=(1, 2))
    assert [p.batch for p in sweep.points] == [1, 2]
    assert all(p.compiles == 1 for p in sweep.points)
"""


def test_a_modules_method_and_a_sweep_take_the_call_as_written(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(test_methods=METHODS)
    expect(jaxperf_pytester, passed=7)


# A model written for explicit sharding under an ambient mesh (jax.set_mesh), as public NNX LMs are: it
# reads its input's sharding, which every generated input must carry as the example did.
AMBIENT_MESH = """
import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import reshard

import pytest_jaxperf as jaxperf

jax.set_mesh(jax.make_mesh((2, 1), ("batch", "model"), axis_types=(jax.sharding.AxisType.Explicit,) * 2))


class Resharded(nnx.Module):
    def __init__(self, *, rngs):
        self.linear = nnx.Linear(16, 16, rngs=rngs)

    def __call__(self, x):
        return reshard(self.linear(x), jax.typeof(x).sharding)


X = jnp.linspace(-1.0, 1.0, 4 * 16).reshape(4, 16)


@jaxperf.jit_warm
@jaxperf.dtype("fp32", "bf16", "int8", "int8-dynamic", max_examples=5)
def test_ambient_mesh(jaxperf):
    jaxperf.check(Resharded(rngs=nnx.Rngs(0)), X)


@jaxperf.jit_warm
@jaxperf.devices(1, 2, 4)
def test_over_the_ambient_mesh(jaxperf):
    jaxperf.check(Resharded(rngs=nnx.Rngs(0)), X)
"""


def test_a_model_under_an_ambient_mesh_runs_on_it(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(test_mesh=AMBIENT_MESH)
    result = expect(jaxperf_pytester, "--jaxperf-cpu-devices=4", "-rs", passed=6, skipped=1)
    result.stdout.fnmatch_lines(
        ["*d4*the model runs under the mesh jax.set_mesh gave (batch: 2, model: 1), of 2 device(s), not 4*"]
    )


# A fidelity failure stored in hypothesis's database replays first on the next run: the same example twice
# (replayed, then reported) is no sign of inputs that cannot vary.
REPLAYED = """
import jax.numpy as jnp
from flax import nnx
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

import pytest_jaxperf as jaxperf

settings.register_profile("stored", database=DirectoryBasedExampleDatabase("examples"))
settings.load_profile("stored")


@jaxperf.jit_warm
@jaxperf.dtype("bfloat16", max_examples=5, min_sqnr_db=200.0)
def test_beyond_bfloat16(jaxperf):
    jaxperf.check(nnx.Linear(16, 16, rngs=nnx.Rngs(0)), jnp.ones((4, 16)))
"""


def test_a_replayed_failure_is_no_identical_inputs_warning(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(test_replayed=REPLAYED)
    expect(jaxperf_pytester, failed=1)
    replayed = expect(jaxperf_pytester, failed=1)
    replayed.stdout.fnmatch_lines(["*output SQNR * < 200.0 dB*"])
    replayed.stdout.no_fnmatch_line("*IdenticalInputsWarning*")


# A model whose author builds its layers in bfloat16 (a ViT's use_bfloat16=True): its "float32" case is no
# float32 reference, and a bfloat16 variant compared with it compares with itself.
BFLOAT16_LAYERS = """
import jax.numpy as jnp
import pytest
from flax import nnx

import pytest_jaxperf
import pytest_jaxperf as jaxperf


@jaxperf.jit_warm
@jaxperf.dtype("fp32", "bf16", max_examples=5)
def test_bfloat16_layers(jaxperf):
    model = nnx.Linear(16, 16, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    with pytest.warns(pytest_jaxperf.LowPrecisionReferenceWarning, match=r"computes 1 of 1 matmuls in lower"):
        jaxperf.check(model, jnp.ones((4, 16)))
"""


def test_a_reference_in_low_precision_is_said(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(test_layers=BFLOAT16_LAYERS)
    expect(jaxperf_pytester, passed=2)


def test_only_nnx_jits_wrapper_is_opened_never_a_users_transform() -> None:
    import functools

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from pytest_jaxperf.core.model import as_module

    class Linear(nnx.Module):
        def __init__(self) -> None:
            self.linear = nnx.Linear(4, 4, rngs=nnx.Rngs(0))

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.linear(x)

        @nnx.jit
        def jitted(self, x: jax.Array) -> jax.Array:
            return self(x)

    model = Linear()
    vmapped = functools.partial(jax.vmap(lambda m, x: m(x), in_axes=(None, 0)), model)
    assert as_module(vmapped) is vmapped  # the vmap is part of the model
    opened = as_module(model.jitted)
    assert type(opened).__name__ == "Linear.jitted"
    assert opened(jnp.ones((2, 4))).shape == (2, 4)
