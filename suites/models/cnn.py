"""A small MNIST-sized convolutional classifier (two 3×3 convolutions, pooling, a linear head)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flax import nnx

if TYPE_CHECKING:
    import jax


class ConvNet(nnx.Module):
    """28×28×1 images → 10 logits."""

    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(1, 16, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(16, 32, (3, 3), rngs=rngs)
        self.head = nnx.Linear(7 * 7 * 32, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = nnx.avg_pool(nnx.relu(self.conv1(x)), (2, 2), strides=(2, 2))
        h = nnx.avg_pool(nnx.relu(self.conv2(h)), (2, 2), strides=(2, 2))
        return self.head(h.reshape(h.shape[0], -1))
