"""A decoder-only language model as it serves: a prefill of the prompt, then decode steps, one token each.

Each step is checked as the model is called (``lm(tokens, cache, position=…)``): in every precision with
its fidelity on the logits and the cache (kept in the variant's dtype), over 1 and 8 devices, within a
memory budget. The generation test runs prefill then decode steps through one wrapped model, proves that
no decode step compiles again (the position is an array, not a static argument) and reports prefill and
decode tokens per second; the decode sweep reports decode tokens per second against the batch.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import pytest_jaxperf as jaxperf
from suites.models.lm import DecoderLM

ON_CPU = jax.default_backend() == "cpu"
BATCH = 8 if ON_CPU else 64
PROMPT = 16
DECODE_STEPS = 16
VOCAB = 512
# Device-memory budgets at the backend's batch, about 1.5× what the compiled step needs (`record.memory`).
BUDGET = "5MiB" if ON_CPU else "64MiB"


def language_model() -> DecoderLM:
    return DecoderLM(vocab=VOCAB, rngs=nnx.Rngs(0))


def prompt(batch: int = BATCH) -> jax.Array:
    """Token ids spread over the whole vocabulary, the same in every process."""
    return (jnp.arange(batch * PROMPT, dtype=jnp.int32) * 7919 % VOCAB).reshape(batch, PROMPT)


def step_inputs(phase: str) -> tuple[jax.Array, dict[str, jax.Array], jax.Array]:
    model = language_model()
    if phase == "prefill":
        return prompt(), model.empty_cache(BATCH), jnp.int32(0)
    return prompt()[:, :1], model.empty_cache(BATCH), jnp.int32(PROMPT)


# The cache holds keys and values of unit scale: generated caches span 0.1…10 of it (a cache of 1e3 is
# no state a model reaches, and it saturates every softmax).
@jaxperf.jit_warm
@jaxperf.dtype("fp32", "bf16", "int8", "int8-dynamic", input_scale=(0.1, 10.0))
@jaxperf.devices(1, 8)
@jaxperf.memory(max_bytes=BUDGET)
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_lm_step(jaxperf, phase):
    tokens, cache, position = step_inputs(phase)
    record = jaxperf.check(language_model(), tokens, cache, position=position)
    # Expectation (JIT with warm-up): one program per phase.
    assert record.compiles == 1
    if jaxperf.variant.dtype != "float32":
        # Reported: how many of the generated inputs (token ids within the prompt's range, caches) differed.
        jaxperf.record(
            f"lm {phase}: distinct generated inputs", record.precision["distinct_inputs"], "inputs"
        )


@jaxperf.jit_warm(max_compiles=2)
def test_generation(jaxperf):
    model = language_model()
    tokens, cache, position = step_inputs("prefill")
    step = jaxperf.wrap(model, tokens, cache, position=position)

    def generate() -> tuple[float, float, jax.Array]:
        start = time.perf_counter()
        logits, state = step(tokens, model.empty_cache(BATCH), position=jnp.int32(0))
        token = jnp.argmax(logits[:, -1:], axis=-1).astype(jnp.int32)
        jax.block_until_ready(token)
        prefilled = time.perf_counter()
        generated = [token]
        for index in range(DECODE_STEPS):
            logits, state = step(token, state, position=jnp.int32(PROMPT + index))
            token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
            generated.append(token)
        jax.block_until_ready(token)
        return prefilled - start, time.perf_counter() - prefilled, jnp.concatenate(generated, axis=1)

    generate()  # the prefill program and the decode program compile here
    # Expectation: the decode program compiles once, never again for another position.
    with jaxperf.no_recompile(step):
        runs = [generate() for _ in range(5)]
    assert len(step.watched.compiles) == 2
    # The same tokens every time: the cache carries the state, nothing else does.
    assert all(bool(jnp.array_equal(run[2], runs[0][2])) for run in runs)
    prefill = statistics.median(run[0] for run in runs)
    decode = statistics.median(run[1] for run in runs)
    jaxperf.record("lm: prefill tokens/s", BATCH * PROMPT / prefill, "tokens/s")
    jaxperf.record("lm: decode tokens/s", BATCH * DECODE_STEPS / decode, "tokens/s")
    jaxperf.record("lm: decode latency per token (whole batch)", decode / DECODE_STEPS * 1e3, "ms")


def test_decode_batch_sweep(jaxperf):
    """Decode tokens per second against the number of sequences decoded together (each sweep point's
    throughput is tokens/s: one token per sequence per step)."""
    model = language_model()
    tokens, cache, position = step_inputs("decode")
    sweep = jaxperf.batch_sweep(model, tokens, cache, position=position, sizes=(1, 2, 4, BATCH, 4 * BATCH))
    # Expectation: one decode program per batch size, the position (an array) never compiling another.
    assert all(point.compiles == 1 for point in sweep.points)
