"""Image classifiers called as their authors call them: a ResNet with batch norm at inference
(``resnet(images, train=False)``) and a ViT (``vit(images, rngs=None, deterministic=True)``), in every
precision, over 1 and 8 devices, within a memory budget, and swept over batch sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import pytest_jaxperf as jaxperf
from suites.models.resnet import ResNet
from suites.models.vit import ViT

ON_CPU = jax.default_backend() == "cpu"
BATCH = 8 if ON_CPU else 256
# About 1.5× what each compiled program needs at the backend's batch (`record.memory`).
BUDGETS = {"resnet": "4MiB", "vit": "8MiB"} if ON_CPU else {"resnet": "256MiB", "vit": "256MiB"}

MODELS = {
    "resnet": (lambda: ResNet(rngs=nnx.Rngs(0)), {"train": False}),
    "vit": (lambda: ViT(rngs=nnx.Rngs(0)), {"rngs": None, "deterministic": True}),
}


def images(batch: int = BATCH) -> jax.Array:
    """Smooth, deterministic images of about unit scale (normalized pixels)."""
    return jnp.sin(jnp.arange(batch * 32 * 32 * 3, dtype=jnp.float32) * 0.37).reshape(batch, 32, 32, 3)


def with_budget(name: str) -> object:
    return pytest.param(name, marks=jaxperf.memory(max_bytes=BUDGETS[name]), id=name)


# Normalized pixels: checked up to 10 (at 1e3 every activation saturates and no precision means anything),
# without a ×100 spike: an image holds no such pixel, and int8-dynamic quantizes each ViT token's
# activations with one scale, which a spike takes (18.1 dB measured on one, below the 25 dB floor).
@jaxperf.jit_warm
@jaxperf.dtype(
    "fp32",
    "bf16",
    "int8",
    "int8-dynamic",
    input_scale=(1e-3, 10.0),
    input_kinds=("gaussian", "positive", "constant", "zero"),
)
@jaxperf.devices(1, 8)
@pytest.mark.parametrize("name", [with_budget(name) for name in MODELS])
def test_classifier(jaxperf, name):
    build, keywords = MODELS[name]
    record = jaxperf.check(build(), images(), **keywords)
    assert record.compiles == 1
    if jaxperf.variant.dtype.startswith("int8"):
        ratio = record.precision["param_bytes"] / record.precision["float32_param_bytes"]
        jaxperf.record(f"{name}: int8 parameter bytes / float32's", ratio, "×")
        # int8 weights with one float32 scale per output channel, and what stays in float (norms,
        # biases, the class token and positions): about a quarter of float32's bytes.
        assert ratio <= 0.35


@pytest.mark.parametrize("name", list(MODELS))
def test_classifier_batch_sweep(jaxperf, name):
    build, keywords = MODELS[name]
    model = build()
    sweep = jaxperf.batch_sweep(model, images(1), **keywords, sizes=(1, 2, 4, 8, BATCH))
    assert all(point.compiles == 1 for point in sweep.points)
