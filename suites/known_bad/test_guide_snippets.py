"""The guide's snippets (``guide.py``), each run through the plugin and caught for the right reason: the
test asserts the plugin's failure message. Should the plugin stop catching one, its test fails."""

from __future__ import annotations

import asyncio

import jax.numpy as jnp
import pytest
from flax import nnx

import pytest_jaxperf as jaxperf
from pytest_jaxperf import RecompileError
from pytest_jaxperf.optimize.serving import DynamicBatcher as OurBatcher
from suites.known_bad.guide import (
    CompressedModel,
    DynamicBatcher,
    DynamicQuantizedLinear,
    MixedPrecisionModel,
    QuantizedLinear,
    replace_linears,
)
from suites.models.vae import VAEDecoder

PLUGIN_FAILURE = pytest.fail.Exception


@jaxperf.jit_warm
@jaxperf.dtype("fp16")
def test_mixed_precision_model_computes_in_float32(jaxperf):
    # Casting the input only: fp16 × fp32 promotes to fp32, so every matmul still runs in float32.
    with pytest.raises(PLUGIN_FAILURE, match=r"fp16: 3 of 3 matmuls run in float32: model\.layers\.0, "):
        jaxperf.check(VAEDecoder(rngs=nnx.Rngs(0)), jnp.zeros((64, 32)), convert=MixedPrecisionModel)


@jaxperf.jit_warm
# Latents of a VAE: N(0, 1), so scales about 1 (near 0 the sigmoid's output is 0.5 whatever the error).
@jaxperf.dtype("int8-dynamic", input_scale=(0.3, 3.0))
def test_dynamic_quantization_saturates(jaxperf):
    # (x - min) / scale spans 0…255; cast to int8 everything above 127 saturates. The matmul itself is a
    # real int8 × int8 → int32 one, so the audit passes and the fidelity check is what catches it, in the
    # layer that quantizes first.
    convert = lambda model: replace_linears(model, DynamicQuantizedLinear)  # noqa: E731
    with pytest.raises(
        PLUGIN_FAILURE, match=r"(?s)int8-dynamic: output SQNR .* dB < 25\.0 dB.*local\): layers\.0"
    ):
        jaxperf.check(VAEDecoder(rngs=nnx.Rngs(0)), jnp.zeros((64, 32)), convert=convert)


@jaxperf.jit_warm
@jaxperf.dtype("int8")
def test_quantized_linear_is_fake_quantization(jaxperf):
    # int8 codes are stored, but multiplied back to float32 before a float32 matmul: neither int8 compute
    # nor (at run time) int8 memory.
    convert = lambda model: replace_linears(model, QuantizedLinear)  # noqa: E731
    with pytest.raises(
        PLUGIN_FAILURE,
        match=r"int8: 3 of 3 matmuls dequantize the weight to float before the matmul \(fake quantization\)",
    ):
        jaxperf.check(VAEDecoder(rngs=nnx.Rngs(0)), jnp.zeros((64, 32)), convert=convert)


# A recompile the plugin catches fails the test even where the test catches it (a safeguard against a broad
# except): these cases are strict xfails on RecompileError, re-raised once its message has been matched.
@pytest.mark.xfail(strict=True, raises=RecompileError, reason="the ragged last chunk compiles a new program")
@jaxperf.jit_warm
def test_compressed_model_recompiles_on_the_ragged_chunk(jaxperf):
    decode = jaxperf.wrap(VAEDecoder(rngs=nnx.Rngs(0)), jnp.zeros((16, 32)))  # warm at the chunk size
    compressed = CompressedModel(decode, chunk_size=16)
    assert compressed(jnp.ones((32, 32))).shape == (32, 784)  # two full chunks: no new program
    with pytest.raises(RecompileError, match=r"shape \[16, 32\] → \[8, 32\]") as caught:
        compressed(jnp.ones((40, 32)))  # 16 + 16 + 8 rows: the last chunk is a new shape
    raise caught.value


@pytest.mark.xfail(strict=True, raises=RecompileError, reason="each new count of queued requests compiles")
@jaxperf.jit_warm
def test_dynamic_batcher_compiles_per_batch_size(jaxperf):
    decode = jaxperf.wrap(VAEDecoder(rngs=nnx.Rngs(0)), jnp.zeros((4, 32)))  # warm at 4 rows

    async def requests(count):
        batcher = DynamicBatcher(decode, max_batch_size=32, timeout_ms=1)
        pending = asyncio.gather(
            *(batcher.add_request(jnp.full((32,), i, jnp.float32)) for i in range(count))
        )
        try:
            return await asyncio.wait_for(pending, timeout=1.0)
        except TimeoutError:
            # The model raised inside the batcher's task, so its callers are never answered (the next
            # test shows why); what the first task raised is the finding.
            raise batcher.tasks[0].exception() from None
        finally:
            # The race's extra tasks die in jnp.stack (the next test). Their errors are retrieved here:
            # otherwise each task's finalizer logs its traceback whenever the garbage collector runs, and
            # on Python 3.11 one did so inside pytest's parsing of a failure's source, whose shared parser
            # state it corrupted ("SystemError: AST constructor recursion depth mismatch", 1 run in 12).
            await asyncio.sleep(0.05)
            for task in batcher.tasks:
                if task.done():
                    task.exception()

    assert len(asyncio.run(requests(4))) == 4  # four requests at once: the 4-row program
    # Whatever happens to be queued is stacked as it is: three requests are a new batch size, a new compile.
    with pytest.raises(RecompileError, match=r"shape \[4, 32\] → \[3, 32\]") as caught:
        asyncio.run(requests(3))
    raise caught.value


def test_dynamic_batcher_race_leaves_later_requests_waiting_forever(jaxperf):
    decode = jaxperf.wrap(VAEDecoder(rngs=nnx.Rngs(0)))
    row, malformed = jnp.ones((32,)), jnp.ones((31,))

    async def main():
        batcher = DynamicBatcher(decode, max_batch_size=32, timeout_ms=1)
        # The race: the flag is set inside the task it guards, so each request that arrives before that
        # task first runs starts a task of its own. The first answers all four; the rest find the queue
        # empty and die in jnp.stack.
        assert len(await asyncio.gather(*(batcher.add_request(row) for _ in range(4)))) == 4
        await asyncio.sleep(0.05)
        assert len(batcher.tasks) == 4
        assert sum(task.exception() is not None for task in batcher.tasks) == 3
        # No error handling: one malformed request kills the task with the flag still set, and neither it,
        # nor the request batched with it, nor any later request is ever answered.
        first = asyncio.gather(batcher.add_request(malformed), batcher.add_request(row))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(first, timeout=1.0)
        assert batcher.processing
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.add_request(row), timeout=1.0)
        for task in batcher.tasks:
            task.exception()  # retrieved: they were expected
        # The plugin's batcher, given the same requests: the malformed one's batch fails, later ones run.
        async with OurBatcher(decode, max_batch_size=32, timeout=0.001) as ours:
            outcomes = await asyncio.gather(ours.submit(malformed), ours.submit(row), return_exceptions=True)
            assert any(isinstance(outcome, Exception) for outcome in outcomes)
            assert (await asyncio.wait_for(ours.submit(row), timeout=5.0)).shape == (784,)

    asyncio.run(main())
