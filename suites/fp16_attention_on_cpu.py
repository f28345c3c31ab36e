"""The float16 variants of the attention models, which only a GPU runs, predicted on the CPU.

``python -m suites.fp16_attention_on_cpu`` (from the repository root) prints, per attention model, the
fidelity check of float16 and bfloat16 exactly as ``suites/test_precision.py`` runs it (same inputs,
floors and 40 derandomized examples), but for one thing: flax's attention calls
``jax.nn.dot_product_attention``, whose XLA path asks for float16 × float16 products accumulated in
float32 logits, which XLA:CPU does not implement (there the suite's float16 cases fail, saying so). Here
the query and key are widened to float32 before that one product: the same products, accumulated in
float32, as a GPU computes them; the scale and the softmax in float32 and the probabilities cast back, as
jax does. Everything else runs in float16 as the variant does. Not a test: a GPU run is the proof.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from hypothesis import settings

from pytest_jaxperf.checks.fidelity import check_fidelity, floor_for
from pytest_jaxperf.core.wrap import wrap_model
from pytest_jaxperf.optimize.precision import mixed_precision
from suites.models.encoder import Encoder
from suites.workloads import WORKLOADS

_xla_attention = jax.nn.dot_product_attention


def float16_attention_as_on_a_gpu(query, key, value, bias=None, mask=None, *, is_causal=False, **options):
    """jax's XLA attention, its float16 logits product widened to float32 operands (XLA:CPU lacks f16→f32)."""
    if query.dtype != jnp.float16:
        return _xla_attention(query, key, value, bias, mask, is_causal=is_causal, **options)
    if bias is not None or mask is not None or is_causal or options:
        raise NotImplementedError("the suite models' attention has no bias, mask or options")
    logits = jnp.einsum("BTNH,BSNH->BNTS", query.astype(jnp.float32), key.astype(jnp.float32))
    logits = logits / math.sqrt(query.shape[-1])  # in float32, as jax scales the logits
    probabilities = jax.nn.softmax(logits, axis=-1).astype(key.dtype)
    return jnp.einsum("BNTS,BSNH->BTNH", probabilities, value)


#: The attention models of ``test_precision.py``: model, example inputs, the marker's input scale and kinds.
CASES = {
    "encoder": (lambda: Encoder(rngs=nnx.Rngs(0)), lambda: (jnp.zeros((8, 16, 64)),), (1e-3, 1e3), None),
    "unet": (
        WORKLOADS["unet"].build,
        lambda: WORKLOADS["unet"].inputs(8),
        (0.1, 10.0),
        ("gaussian", "spike", "positive"),
    ),
    "dit": (
        WORKLOADS["dit"].build,
        lambda: WORKLOADS["dit"].inputs(8),
        (1e-3, 3.0),
        ("gaussian", "positive"),
    ),
}


def main() -> None:
    jax.nn.dot_product_attention = float16_attention_as_on_a_gpu  # flax looks it up at each call
    settings.register_profile("suites", max_examples=40, derandomize=True, database=None, deadline=None)
    settings.load_profile("suites")
    for name, (build, inputs, scale, kinds) in CASES.items():
        model = build()
        for dtype, low in (("float16", jnp.float16), ("bfloat16", jnp.bfloat16)):
            variant, _ = mixed_precision(model, low)
            result = check_fidelity(
                wrap_model(model, name=name),
                wrap_model(variant, cast_inputs=low, name=name),
                tuple(inputs()),
                dtype=dtype,
                floor_db=floor_for(dtype, None),
                max_examples=40,
                database_key=f"fp16-attention-{name}-{dtype}",
                input_scale=scale,
                input_kinds=kinds,
            )
            verdict = f"fails: {result.failure.splitlines()[0]}" if result.failure else "passes"
            lowest = f"lowest output SQNR {result.min_sqnr_db:.1f} dB (floor {result.floor_db:.0f})"
            worst = f"worst channel {result.min_worst_channel_db:.1f} dB"
            print(f"{name} {dtype}: {lowest}, {worst} over {result.examples} inputs: {verdict}", flush=True)


if __name__ == "__main__":
    main()
