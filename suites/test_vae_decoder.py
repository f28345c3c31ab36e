"""JIT with warm-up on the VAE decoder: one compile per input shape, and nothing after warm-up."""

from __future__ import annotations

import jax.numpy as jnp
import pytest
from flax import nnx

import pytest_jaxperf as jaxperf
from suites.models.vae import VAEDecoder


@jaxperf.jit_warm(warmup=5)
@pytest.mark.parametrize("batch", [1, 64, 1024])
def test_vae_decoder_compiles_once(jaxperf, batch):
    record = jaxperf.check(VAEDecoder(rngs=nnx.Rngs(0)), jnp.zeros((batch, 32)))
    # Expectation: the first call pays for the compile, the warm calls do not.
    assert record.compiles == 1
    assert max(record.steady_call_seconds) < record.first_call_seconds


@jaxperf.jit_warm(max_compiles=3)
def test_vae_decoder_one_program_per_batch_bucket(jaxperf):
    decode = jaxperf.wrap(VAEDecoder(hidden=(512, 512), rngs=nnx.Rngs(0)))
    for _ in range(3):
        for batch in (8, 64, 512):
            decode(jnp.zeros((batch, 32)))
    assert len(decode.watched.compiles) == 3
    with jaxperf.no_recompile(decode):
        decode(jnp.ones((64, 32)))
