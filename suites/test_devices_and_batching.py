"""Serving the VAE decoder: the dynamic batcher at fixed request rates, and a two-device pipeline.

Figures are reported with ``jaxperf.record``. Throughput per device count and batch sweeps of every suite
model are in ``test_models.py``.
"""

from __future__ import annotations

import asyncio
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pytest_jaxperf.optimize.serving import DynamicBatcher
from suites.models.vae import VAEDecoder

REQUEST_RATES = (500, 2000)  # requests per second, open loop
REQUESTS = 2000


@pytest.mark.parametrize("rate", REQUEST_RATES)
def test_batcher_at_a_fixed_request_rate(jaxperf, rate):
    forward = jax.jit(VAEDecoder(rngs=nnx.Rngs(0)))
    rows_in = np.linspace(0, 1, REQUESTS * 32, dtype=np.float32).reshape(REQUESTS, 32)

    async def main():
        async with DynamicBatcher(forward, max_batch_size=64, timeout=0.002) as batcher:
            await batcher.warm_up(rows_in[0])  # one compile per bucket, before the clock starts
            start = time.perf_counter()
            tasks = []
            for i in range(REQUESTS):
                # Open loop: requests arrive on schedule whether or not earlier ones are answered.
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(batcher.submit(rows_in[i])))
            rows = await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - start
        return batcher, rows, elapsed

    batcher, rows, elapsed = asyncio.run(main())
    assert len(rows) == REQUESTS
    # The row answered from its bucket's program is the row computed alone: to float32 rounding on the CPU;
    # on a GPU to TF32's (float32 matmuls run in TF32 by default, a 64-row and a 1-row matmul in kernels
    # of their own).
    tolerance = 1e-5 if jax.default_backend() == "cpu" else 5e-3
    np.testing.assert_allclose(
        rows[7], np.asarray(forward(rows_in[7:8]))[0], rtol=tolerance, atol=tolerance / 10
    )
    jaxperf.record(f"batcher, {rate} requests/s offered: answered", REQUESTS / elapsed, "requests/s")
    jaxperf.record(f"batcher, {rate} requests/s: p50 latency", batcher.stats.percentile(0.5) * 1e3, "ms")
    jaxperf.record(f"batcher, {rate} requests/s: p99 latency", batcher.stats.percentile(0.99) * 1e3, "ms")
    jaxperf.record(
        f"batcher, {rate} requests/s: mean batch", batcher.stats.rows / batcher.stats.batches, "rows"
    )


def test_encoder_decoder_pipeline_split(jaxperf):
    class Encoder(nnx.Module):
        def __init__(self, *, rngs):
            self.linear = nnx.Linear(784, 32, rngs=rngs)

        def __call__(self, x):
            return nnx.relu(self.linear(x))

    output, timing = jaxperf.pipeline(
        Encoder(rngs=nnx.Rngs(0)), VAEDecoder(rngs=nnx.Rngs(1)), jnp.ones((256, 784))
    )
    assert output.shape == (256, 784)
    assert timing.transferred_bytes == 256 * 32 * 4
