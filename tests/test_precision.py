"""``@jaxperf.dtype``: real precision variants, the audit of what they compute, fidelity against float32."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from .conftest import expect

#: Models for the precision tests: correct ones, and broken variants a user may supply. The guide's own
#: snippets come from the suites' copy of them, ``suites/known_bad/guide.py``.
PRECISION_MODELS = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx


    class Block(nnx.Module):
        '''A pre-norm residual MLP block and a head, like a transformer's.'''

        def __init__(self, dim=64, *, rngs):
            self.norm = nnx.LayerNorm(dim, rngs=rngs)
            self.up = nnx.Linear(dim, 4 * dim, rngs=rngs)
            self.down = nnx.Linear(4 * dim, dim, rngs=rngs)
            self.head = nnx.Linear(dim, 16, rngs=rngs)

        def __call__(self, x):
            return self.head(x + self.down(nnx.gelu(self.up(self.norm(x)))))


    class Squares(nnx.Module):
        '''Squares an activation: fine in float32, beyond float16's range for large inputs.'''

        def __init__(self, *, rngs):
            self.proj = nnx.Linear(32, 64, rngs=rngs)
            self.out = nnx.Linear(64, 8, rngs=rngs)

        def __call__(self, x):
            h = self.proj(x)
            return self.out(h * h)


    def two_layer(params, x):
        return jax.nn.gelu(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


    def two_layer_params():
        k1, k2 = jax.random.split(jax.random.key(0))
        return {
            "w1": jax.random.normal(k1, (32, 64)) / 32**0.5,
            "b1": jnp.zeros((64,)),
            "w2": jax.random.normal(k2, (64, 8)) / 8.0,
            "b2": jnp.zeros((8,)),
        }


    def swap_linears(model, make):
        '''A copy of model with every nnx.Linear replaced by make(linear).'''
        model = nnx.clone(model)
        for path, sub in list(nnx.iter_modules(model)):
            for name, child in list(vars(sub).items()):
                if isinstance(child, nnx.Linear):
                    setattr(sub, name, make(child))
        return model


    class PerTensorInt8Linear(nnx.Module):
        '''Real int8 (int8 weight into the matmul, scale after it), but one scale for the whole tensor.'''

        def __init__(self, linear):
            w = linear.kernel[...]
            self.scale = nnx.Param(jnp.max(jnp.abs(w)) / 127.0)
            self.codes = nnx.Param(jnp.clip(jnp.round(w / self.scale[...]), -127, 127).astype(jnp.int8))
            self.bias = nnx.Param(linear.bias[...])

        def __call__(self, x):
            y = jax.lax.dot_general(
                x, self.codes[...], (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.float32
            )
            return y * self.scale[...] + self.bias[...]


    class DequantizedLinear(nnx.Module):
        '''int8 weights, but dequantized to float32 before a float32 matmul: weight-only at best.'''

        def __init__(self, linear):
            w = linear.kernel[...]
            self.w_scale = nnx.Param(jnp.max(jnp.abs(w), axis=0) / 127.0)
            self.codes = nnx.Param(jnp.round(w / self.w_scale[...]).astype(jnp.int8))
            self.bias = nnx.Param(linear.bias[...])

        def __call__(self, x):
            return x @ (self.codes[...].astype(jnp.float32) * self.w_scale[...]) + self.bias[...]
    """
)


GUIDE_SNIPPETS = Path(__file__).parents[1] / "suites" / "known_bad" / "guide.py"


@pytest.fixture
def precision_pytester(jaxperf_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester directory with the precision models and the guide's snippets, its runs derandomized as
    on CI."""
    jaxperf_pytester.makepyfile(precision_models=PRECISION_MODELS, guide=GUIDE_SNIPPETS.read_text())
    # On CI, hypothesis's own "ci" profile derandomizes the generated inputs: every run checks the same.
    monkeypatch.setenv("CI", "1")
    return jaxperf_pytester


def test_correct_variants_pass_audited_and_faithful(precision_pytester: pytest.Pytester) -> None:
    precision_pytester.makepyfile(
        """
        import jax.numpy as jnp
        from flax import nnx

        import pytest_jaxperf as jaxperf
        from models import Decoder
        from precision_models import Block, two_layer, two_layer_params


        def show(record):
            p = record.precision
            fidelity = p["fidelity"] or {}
            print(f"RESULT {record.variant} {p['audit']['summary']} | bytes {p['param_bytes']}/"
                  f"{p['float32_param_bytes']} | examples {fidelity.get('examples')}")


        @jaxperf.jit_warm
        @jaxperf.dtype("fp32", "bf16", "fp16", "int8", "int8-dynamic")
        def test_block(jaxperf):
            show(jaxperf.check(Block(rngs=nnx.Rngs(0)), jnp.zeros((64, 64))))


        @jaxperf.dtype("bf16", "fp16", "int8", "int8-dynamic")
        def test_function(jaxperf):
            show(jaxperf.check(two_layer, jnp.zeros((64, 32)), params=two_layer_params()))


        # A VAE latent is N(0, 1): its decoder is checked on the scales it sees. (Its sigmoid output
        # amplifies int8-dynamic's error on spiky rows past the worst-channel floor on rare inputs.)
        @jaxperf.dtype("bf16", "fp16", "int8", input_scale=(1e-3, 10))
        def test_decoder_low_precision(jaxperf):
            jaxperf.check(Decoder(rngs=nnx.Rngs(0)), jnp.zeros((64, 32)))
        """
    )
    result = expect(
        precision_pytester,
        "-v",
        "-s",
        passed=12,
        lines=[
            "*RESULT fp32-d1 3 matmuls: 3 float32×float32; compiled: 3 float32 | bytes 137024/137024 "
            "| examples None",
            "*RESULT bf16-d1 3 matmuls: 3 bfloat16×bfloat16; compiled: * | bytes 68768/137024 | examples 25",
            "*RESULT fp16-d1 3 matmuls: 3 float16×float16; compiled: * | bytes 68768/137024 | examples 25",
            # a quarter of the bytes: int8 codes and one float32 scale per output channel
            "*RESULT int8-d1 3 matmuls: 3 float32×int8; compiled: 3 float32 | bytes 36992/137024 "
            "| examples 25",
            "*RESULT int8-dynamic-d1 3 matmuls: 3 int8×int8; compiled: 3 int32 | bytes 36992/137024 "
            "| examples 25",
        ],
    )
    result.stdout.fnmatch_lines(["*RESULT int8-d1 2 matmuls: 2 float32×int8 | bytes * | examples 25"])


def test_user_variant_with_an_outlier_weight_names_the_layer(precision_pytester: pytest.Pytester) -> None:
    precision_pytester.makepyfile(
        """
        import jax.numpy as jnp
        from flax import nnx

        import pytest_jaxperf as jaxperf
        from models import Decoder
        from precision_models import PerTensorInt8Linear, swap_linears


        def per_tensor_int8(model):
            return swap_linears(model, PerTensorInt8Linear)


        @jaxperf.dtype("int8")
        def test_outlier(jaxperf):
            model = Decoder(rngs=nnx.Rngs(0))
            model.linear2.kernel[...] = model.linear2.kernel[...].at[3, 7].set(500.0)
            jaxperf.check(model, jnp.zeros((64, 32)), convert=per_tensor_int8)
        """
    )
    expect(
        precision_pytester,
        failed=1,
        lines=[
            "*jaxperf int8: * on input #* (scale *)",
            "worst layers fed float32's inputs (local): linear2: SQNR * dB, worst channel * dB*",
            "worst layers along the variant's own run (propagated): *",
            "output: SQNR *",
            "Fa*: jaxperf_fidelity(*",  # "Falsifying example:"; "Failing test case:" in newer hypothesis
        ],
    )


def test_float16_overflow_in_an_intermediate_names_where(precision_pytester: pytest.Pytester) -> None:
    precision_pytester.makepyfile(
        """
        import jax.numpy as jnp
        from flax import nnx

        import pytest_jaxperf as jaxperf
        from precision_models import Squares


        @jaxperf.dtype("fp16", "bf16")
        def test_squares(jaxperf):
            jaxperf.check(Squares(rngs=nnx.Rngs(0)), jnp.zeros((16, 32)))
        """
    )
    expect(
        precision_pytester,
        failed=1,
        passed=1,  # bfloat16 has float32's range
        lines=[
            "*jaxperf fp16: * non-finite output values where float32's are finite on input #*",
            "first non-finite value: Squares (*)",
        ],
    )


def test_a_layer_left_in_float32_is_named(precision_pytester: pytest.Pytester) -> None:
    precision_pytester.makepyfile(
        """
        import jax.numpy as jnp
        from flax import nnx

        import pytest_jaxperf as jaxperf
        from models import Decoder


        def bf16_but_the_head(model):
            model = nnx.clone(model)
            for layer in (model.linear1, model.linear2):
                layer.dtype = jnp.bfloat16
                layer.kernel[...] = layer.kernel[...].astype(jnp.bfloat16)
            return model


        @jaxperf.dtype("bf16")
        def test_partial(jaxperf):
            jaxperf.check(Decoder(rngs=nnx.Rngs(0)), jnp.zeros((8, 32)), convert=bf16_but_the_head)
        """
    )
    expect(
        precision_pytester,
        failed=1,
        lines=["*jaxperf bf16: 1 of 3 matmuls run in float32: head"],
    )


def test_the_guides_three_snippets_are_caught(precision_pytester: pytest.Pytester) -> None:
    precision_pytester.makepyfile(
        """
        import jax.numpy as jnp
        from flax import nnx

        import pytest_jaxperf as jaxperf
        from guide import DynamicQuantizedLinear, MixedPrecisionModel, QuantizedLinear
        from models import Decoder
        from precision_models import swap_linears


        @jaxperf.dtype("fp16")
        def test_mixed_precision_model(jaxperf):
            jaxperf.check(Decoder(rngs=nnx.Rngs(0)), jnp.zeros((8, 32)), convert=MixedPrecisionModel)


        @jaxperf.dtype("int8")
        def test_quantized_linear(jaxperf):
            convert = lambda model: swap_linears(model, QuantizedLinear)
            jaxperf.check(Decoder(rngs=nnx.Rngs(0)), jnp.zeros((8, 32)), convert=convert)


        @jaxperf.dtype("int8-dynamic", input_scale=(1e-3, 10))
        def test_dynamic_quantization(jaxperf):
            convert = lambda model: swap_linears(model, DynamicQuantizedLinear)
            jaxperf.check(Decoder(rngs=nnx.Rngs(0)), jnp.zeros((64, 32)), convert=convert)
        """
    )
    expect(
        precision_pytester,
        failed=3,
        lines=[
            # MixedPrecisionModel holds the model as .model: its layers are model.linear1, ...
            "*jaxperf fp16: 3 of 3 matmuls run in float32: model.linear1, model.linear2, model.head",
            "*jaxperf int8: 3 of 3 matmuls dequantize the weight to float before the matmul "
            "(fake quantization): linear1, linear2, head",
            # Codes 0..255 saturate at 127 in the int8 cast: the first layer's local SQNR collapses.
            "*jaxperf int8-dynamic: output SQNR * dB < 25.0 dB on input #*",
            "worst layers fed float32's inputs (local): linear1: SQNR * dB*",
        ],
    )


def test_int8_dequantized_before_a_float_matmul_is_not_int8_dynamic(
    precision_pytester: pytest.Pytester,
) -> None:
    precision_pytester.makepyfile(
        """
        import jax.numpy as jnp
        from flax import nnx

        import pytest_jaxperf as jaxperf
        from models import Decoder
        from precision_models import DequantizedLinear, swap_linears


        @jaxperf.dtype("int8-dynamic")
        def test_labelled_dynamic(jaxperf):
            convert = lambda model: swap_linears(model, DequantizedLinear)
            jaxperf.check(Decoder(rngs=nnx.Rngs(0)), jnp.zeros((8, 32)), convert=convert)
        """
    )
    expect(
        precision_pytester,
        failed=1,
        lines=[
            "*jaxperf int8-dynamic: 3 of 3 matmuls dequantize the weight to float before a float matmul: "
            "linear1, linear2, head"
        ],
    )


def test_bad_input_gets_a_clear_outcome(precision_pytester: pytest.Pytester) -> None:
    precision_pytester.makepyfile(
        """
        import jax
        import jax.numpy as jnp
        from flax import nnx

        import pytest_jaxperf as jaxperf
        from models import Decoder


        def no_weights(x):
            return jnp.tanh(x) * 2.0


        @jaxperf.dtype("int8")
        def test_nothing_to_quantize(jaxperf):
            jaxperf.check(no_weights, jnp.zeros((4, 8)))


        def inverse(params, x):
            return jnp.linalg.inv(x @ params)


        @jaxperf.dtype("fp16")
        def test_not_on_this_backend(jaxperf):
            jaxperf.check(inverse, jnp.eye(4), params=jnp.eye(4))


        @jaxperf.dtype("int8")
        def test_wrap_needs_inputs(jaxperf):
            jaxperf.wrap(Decoder(rngs=nnx.Rngs(0)))
        """
    )
    precision_pytester.makepyfile(
        test_bad_scale="""
        import pytest_jaxperf as jaxperf


        @jaxperf.dtype("int8", input_scale=(10, 1))
        def test_bad_scale(jaxperf):
            pass
        """
    )
    expect(
        precision_pytester,
        "-rs",
        "--continue-on-collection-errors",
        skipped=1,
        failed=2,
        errors=1,
        lines=[
            "*test_bad_scale.py::test_bad_scale: jaxperf_dtype: input_scale must be (smallest, largest) "
            "positive magnitudes such as (1e-3, 1e3), got (10, 1)",
            # jax 0.10 raises NotImplementedError from LAPACK, jax 0.11 a TypeError from lu's dtype check
            "*jaxperf fp16: the float16 variant of inverse cannot run on cpu: *float16*",
            "*TypeError: jaxperf int8: int8 quantization needs example inputs to see how each weight "
            "is used*",
            "SKIPPED*jaxperf int8: no_weights has no matmul or convolution taking a floating-point weight: "
            "nothing to quantize to int8",
        ],
    )


def test_hypothesis_settings_come_from_the_marker_and_the_profile(
    precision_pytester: pytest.Pytester,
) -> None:
    precision_pytester.makeconftest(
        """
        from hypothesis import settings

        settings.register_profile("few", max_examples=4)
        """
    )
    precision_pytester.makepyfile(
        """
        import jax.numpy as jnp
        from flax import nnx

        import pytest_jaxperf as jaxperf
        from precision_models import Block


        @jaxperf.dtype("bf16", max_examples=7)
        def test_marker(jaxperf):
            record = jaxperf.check(Block(rngs=nnx.Rngs(0)), jnp.zeros((8, 64)))
            print("EXAMPLES marker", record.precision["fidelity"]["examples"])


        @jaxperf.dtype("bf16")
        def test_profile(jaxperf):
            record = jaxperf.check(Block(rngs=nnx.Rngs(0)), jnp.zeros((8, 64)))
            print("EXAMPLES profile", record.precision["fidelity"]["examples"])
        """
    )
    expect(
        precision_pytester,
        "-s",
        "--hypothesis-profile=few",
        passed=2,
        lines=["*EXAMPLES marker 7", "*EXAMPLES profile 4"],
    )


def test_precision_table_under_jaxperf(precision_pytester: pytest.Pytester) -> None:
    precision_pytester.makepyfile(
        """
        import jax.numpy as jnp
        from flax import nnx

        import pytest_jaxperf as jaxperf
        from precision_models import Block


        @jaxperf.jit_warm
        @jaxperf.dtype("fp32", "int8")
        def test_block(jaxperf):
            jaxperf.check(Block(rngs=nnx.Rngs(0)), jnp.zeros((8, 64)))
        """
    )
    expect(
        precision_pytester,
        "--jaxperf",
        "--jaxperf-json=out.json",
        passed=2,
        lines=[
            # the int8 variant is compiled and watched like any model: one compile
            "*test_block?int8?*int8-d1*Block*1*",
            "*test*model*min SQNR dB*floor dB*examples*× fp32*matmuls*",
            # The ids shortened in their middle to fit 120 columns.
            "*_block?fp32?*Block*-*-*-*1.00*3 matmuls: 3 float32×float32*",
            "*_block?int8?*Block*30.0*25*0.27*3 matmuls: 3 float32×int8*",
        ],
    )


def test_a_model_quantized_with_qwix_gets_the_same_checks(precision_pytester: pytest.Pytester) -> None:
    # qwix (Google's JAX quantization library) is in the test extra: its models are checked through convert=.
    pytest.importorskip("qwix", reason="qwix is part of the test extra: pip install -e '.[test]'")
    precision_pytester.makepyfile(
        """
        import jax.numpy as jnp
        import qwix
        from flax import nnx

        import pytest_jaxperf as jaxperf
        from precision_models import Block

        X = jnp.zeros((8, 64))


        def qwix_int8(act_qtype):
            rules = [qwix.QuantizationRule(module_path=".*", weight_qtype="int8", act_qtype=act_qtype)]
            return lambda model: qwix.quantize_model(model, qwix.PtqProvider(rules), X)


        @jaxperf.jit_warm
        @jaxperf.dtype("int8-dynamic")
        def test_qwix_w8a8(jaxperf):
            jaxperf.check(Block(rngs=nnx.Rngs(0)), X, convert=qwix_int8("int8"))


        # qwix's weight-only PTQ stores int8 but multiplies it back to float32 before a float32 matmul.
        @jaxperf.dtype("int8")
        def test_qwix_weight_only(jaxperf):
            jaxperf.check(Block(rngs=nnx.Rngs(0)), X, convert=qwix_int8(None))
        """
    )
    expect(
        precision_pytester,
        passed=1,
        failed=1,
        lines=[
            "*jaxperf int8: 3 of 3 matmuls dequantize the weight to float before the matmul (fake "
            "quantization): up.kernel.array, down.kernel.array, head.kernel.array",
        ],
    )


def test_precision_variants_shard_over_devices(precision_pytester: pytest.Pytester) -> None:
    precision_pytester.makepyfile(
        """
        import jax.numpy as jnp
        from flax import nnx

        import pytest_jaxperf as jaxperf
        from precision_models import Block


        @jaxperf.jit_warm
        @jaxperf.devices(1, 2)
        @jaxperf.dtype("bf16", "int8-dynamic")
        def test_block(jaxperf):
            # the 2-device program is checked against the same variant on one device
            record = jaxperf.check(Block(rngs=nnx.Rngs(0)), jnp.zeros((8, 64)))
            print("AUDIT", jaxperf.variant.id, record.precision["audit"]["summary"])
        """
    )
    expect(
        precision_pytester,
        "-v",
        "-s",
        "--jaxperf-cpu-devices=2",
        passed=4,
        lines=[
            "*test_block?bf16-d1? AUDIT bf16-d1 3 matmuls: 3 bfloat16×bfloat16*",
            "*test_block?bf16-d2? AUDIT bf16-d2 3 matmuls: 3 bfloat16×bfloat16*",
            "*test_block?int8-dynamic-d1? AUDIT int8-dynamic-d1 3 matmuls: 3 int8×int8*",
            "*test_block?int8-dynamic-d2? AUDIT int8-dynamic-d2 3 matmuls: 3 int8×int8*",
        ],
    )


def test_matmuls_the_quantizer_cannot_reach_are_in_the_record(precision_pytester: pytest.Pytester) -> None:
    precision_pytester.makepyfile(
        """
        import jax
        import jax.numpy as jnp

        import pytest_jaxperf as jaxperf
        from precision_models import two_layer_params


        def looped(params, x):
            h = x @ params["w1"]
            h, _ = jax.lax.scan(lambda c, _: (jnp.tanh(c @ params["loop"]), None), h, None, length=2)
            return h @ params["w2"]


        # tanh saturates beyond 1 (a ×100 spike at 10 lost 1.3 dB below the floor): this test is about the
        # record, not the fidelity.
        @jaxperf.dtype("int8", input_scale=(1e-3, 1))
        def test_looped(jaxperf):
            params = {**two_layer_params(), "loop": jnp.eye(64) * 0.5}
            record = jaxperf.check(looped, jnp.zeros((16, 32)), params=params)
            print("LEFT", record.precision["left_in_float"])
        """
    )
    expect(
        precision_pytester,
        "-s",
        passed=1,
        lines=["*LEFT ['? (inside scan, which the quantizer does not open)']"],
    )
