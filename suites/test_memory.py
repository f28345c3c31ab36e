"""Memory of the suite models: compiled needs per variant, the largest batch under 1 GiB, and what
chunking, donation and rematerialization save, all from the compiled programs' memory analysis.

The guide's ``find_optimal_batch_size`` (double the batch until an out-of-memory error) runs in a child
process with a capped address space, so its OOM is real; ``max_batch_size`` compiles only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from pytest_jaxperf import chunked, donating, max_batch_size, rematerialized
from pytest_jaxperf.core.memory import compiled_memory
from pytest_jaxperf.core.wrap import wrap_model
from pytest_jaxperf.optimize.precision import mixed_precision
from pytest_jaxperf.optimize.quantize import quantize_int8
from suites.models.cnn import ConvNet
from suites.models.encoder import Encoder
from suites.models.vae import VAEDecoder

MODELS = {
    "vae_decoder": (lambda: VAEDecoder(rngs=nnx.Rngs(0)), (64, 32)),
    "encoder": (lambda: Encoder(rngs=nnx.Rngs(0)), (8, 16, 64)),
    "convnet": (lambda: ConvNet(rngs=nnx.Rngs(0)), (32, 28, 28, 1)),
}
GiB = 1024**3


def _variant(name: str, model, x):
    """(model or function, params, example input) of a variant, as the library builds it."""
    if name == "bf16":
        low, _ = mixed_precision(model, jnp.bfloat16)
        return low, None, x.astype(jnp.bfloat16)
    if name == "int8":
        quantized = quantize_int8(model, x)
        return quantized.apply, quantized.params, x
    return model, None, x


@pytest.mark.parametrize("variant", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_memory_and_largest_batch_under_1gib(jaxperf, name, variant):
    make, shape = MODELS[name]
    model, params, x = _variant(variant, make(), jnp.zeros(shape))
    wrapped = wrap_model(model, params=params, jit=True)
    needs = compiled_memory(wrapped.lower(x).compile())
    jaxperf.record(f"{name} {variant} batch {shape[0]}: compiled memory", needs.total / 2**20, "MiB")
    jaxperf.record(f"{name} {variant}: parameters (arguments)", needs.arguments / 2**20, "MiB")
    fit = max_batch_size(model, x, GiB, params=params)
    jaxperf.record(f"{name} {variant}: largest batch under 1 GiB", fit.batch, "rows")
    searched = f"{fit.compiles} compiles, {fit.autotuned_compiles} autotuned"
    jaxperf.record(f"{name} {variant}: search time ({searched})", fit.seconds, "s")
    assert fit.needs is not None
    assert fit.needs.total <= GiB
    assert fit.first_over == fit.batch + 1


GUIDE = textwrap.dedent(
    """
    import json, resource, sys, time
    import jax, jax.numpy as jnp
    from flax import nnx
    sys.path.insert(0, ".")
    from suites.models.vae import VAEDecoder

    model = VAEDecoder(rngs=nnx.Rngs(0))
    decode = jax.jit(lambda z: model(z))
    decode(jnp.zeros((1, 32))).block_until_ready()
    with open("/proc/self/status") as status:
        used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (used + int(sys.argv[1]), resource.RLIM_INFINITY))

    def find_optimal_batch_size(start=1):  # the guide's: double until out of memory
        batch, best = start, start
        while True:
            try:
                decode(jnp.zeros((batch, 32))).block_until_ready()
            except Exception as error:
                if "RESOURCE_EXHAUSTED" not in str(error):
                    raise
                return best
            best, batch = batch, batch * 2

    started = time.perf_counter()
    best = find_optimal_batch_size()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"batch": best, "seconds": seconds, "peak_rss": peak}))
    """
)


def test_max_batch_size_against_the_guides_doubling_until_oom(jaxperf, tmp_path):
    # Both on the CPU, on any machine: the guide's search meets a real out-of-memory error there through
    # the capped address space (an accelerator's memory is not capped by it).
    cpu = jax.devices("cpu")[0]
    model = VAEDecoder(rngs=nnx.Rngs(0))
    with jax.default_device(cpu):
        fit = max_batch_size(model, jnp.zeros((64, 32)), GiB)
    script = tmp_path / "guide.py"
    script.write_text(GUIDE)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script), str(GiB)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    guide = json.loads(done.stdout.strip().splitlines()[-1])
    jaxperf.record("VAE decoder, 1 GiB: max_batch_size (compile-only) batch", fit.batch, "rows")
    jaxperf.record("VAE decoder, 1 GiB: max_batch_size time", fit.seconds, "s")
    jaxperf.record(
        "VAE decoder, 1 GiB address space: guide's doubling-until-OOM batch", guide["batch"], "rows"
    )
    jaxperf.record("VAE decoder: guide's search time (in its process)", guide["seconds"], "s")
    jaxperf.record("VAE decoder: guide's process peak RSS", guide["peak_rss"] / 2**20, "MiB")
    jaxperf.record("VAE decoder: guide's child process, wall time", time.perf_counter() - started, "s")
    # Doubling can only land on a power of two, at most half of what fits.
    assert guide["batch"] & (guide["batch"] - 1) == 0
    assert guide["batch"] <= fit.batch


def test_chunking_and_donation_savings(jaxperf):
    model = VAEDecoder(rngs=nnx.Rngs(0))
    z = jax.random.normal(jax.random.key(0), (65536, 32))
    run = chunked(model, 4096)
    out = run(z)
    assert out.shape == (65536, 784)
    assert run.compiles == 1
    whole, chunk = run.memory_saved(z)
    jaxperf.record("VAE decoder 65,536 rows: one program", whole.total / 2**20, "MiB")
    jaxperf.record("VAE decoder in chunks of 4,096: one chunk's program", chunk.total / 2**20, "MiB")
    jaxperf.record("chunking saves (compiled memory)", (whole.total - chunk.total) / 2**20, "MiB")

    for name, (make, shape) in MODELS.items():
        plain, donated = donating(make()).memory_saved(jnp.zeros(shape))
        jaxperf.record(f"{name}: donation aliases (output reusing an input)", donated.aliased / 2**20, "MiB")
        jaxperf.record(f"{name}: donation saves", (plain.total - donated.total) / 2**20, "MiB")

    class Residual(nnx.Module):
        def __init__(self, *, rngs):
            self.linear = nnx.Linear(1024, 1024, rngs=rngs)

        def __call__(self, x):
            return x + self.linear(x)

    plain, donated = donating(Residual(rngs=nnx.Rngs(0))).memory_saved(jnp.zeros((8192, 1024)))
    jaxperf.record("residual block 8192×1024: donation aliases", donated.aliased / 2**20, "MiB")
    jaxperf.record("residual block: without donation", plain.total / 2**20, "MiB")
    jaxperf.record("residual block: with donation", donated.total / 2**20, "MiB")


def test_rematerialization_saves_for_gradients_not_for_inference(jaxperf):
    model = VAEDecoder(hidden=(1024, 1024, 1024, 1024), rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    z = jnp.zeros((4096, 32))

    def forward(state, z):
        return nnx.merge(graphdef, state)(z)

    def temporaries(fn, *args):
        return compiled_memory(jax.jit(fn).lower(*args).compile()).temporaries / 2**20

    inference, inference_remat = (
        temporaries(forward, state, z),
        temporaries(rematerialized(forward), state, z),
    )

    def loss(state, z, checkpoint=lambda block: block):
        # A training-style step: gelu layers in pairs, each pair optionally rematerialized.
        live = nnx.merge(graphdef, state)
        layers, h = list(live.layers), z
        for first, second in zip(layers[::2], layers[1::2], strict=True):
            h = checkpoint(lambda h, a=first, b=second: nnx.gelu(b(nnx.gelu(a(h)))))(h)
        return jnp.mean(nnx.sigmoid(live.head(h)))

    grad = temporaries(jax.grad(loss), state, z)
    grad_remat = temporaries(jax.grad(lambda s, z: loss(s, z, checkpoint=rematerialized)), state, z)
    jaxperf.record("inference temporaries, plain", inference, "MiB")
    jaxperf.record("inference temporaries, jax.checkpoint (the guide's use)", inference_remat, "MiB")
    jaxperf.record("gradient temporaries, plain", grad, "MiB")
    jaxperf.record("gradient temporaries, two-layer blocks checkpointed", grad_remat, "MiB")
    assert inference_remat == inference
    assert grad_remat < grad
