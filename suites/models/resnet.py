"""A small ResNet classifier, written as such models are: a stem convolution, residual stages of basic
blocks with batch norm (running averages at inference: ``model(images, train=False)``), global average
pooling and a linear head."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class BasicBlock(nnx.Module):
    """Two 3×3 convolutions with batch norm, added to the input (projected where the shape changes)."""

    def __init__(self, channels_in: int, channels: int, stride: int, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(channels_in, channels, (3, 3), strides=stride, use_bias=False, rngs=rngs)
        self.norm1 = nnx.BatchNorm(channels, rngs=rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), use_bias=False, rngs=rngs)
        self.norm2 = nnx.BatchNorm(channels, rngs=rngs)
        self.shortcut = (
            nnx.Conv(channels_in, channels, (1, 1), strides=stride, use_bias=False, rngs=rngs)
            if stride != 1 or channels_in != channels
            else None
        )

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        h = nnx.relu(self.norm1(self.conv1(x), use_running_average=not train))
        h = self.norm2(self.conv2(h), use_running_average=not train)
        return nnx.relu(h + (self.shortcut(x) if self.shortcut is not None else x))


class ResNet(nnx.Module):
    """``resnet(images, train=False)`` → class logits; images ``[batch, height, width, channels]``."""

    def __init__(
        self, classes: int = 10, widths: tuple[int, ...] = (16, 32, 64), channels: int = 3, *, rngs: nnx.Rngs
    ) -> None:
        self.stem = nnx.Conv(channels, widths[0], (3, 3), use_bias=False, rngs=rngs)
        self.stem_norm = nnx.BatchNorm(widths[0], rngs=rngs)
        blocks = []
        for index, width in enumerate(widths):
            before = widths[max(index - 1, 0)]
            blocks.append(BasicBlock(before, width, 1 if index == 0 else 2, rngs=rngs))
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(widths[-1], classes, rngs=rngs)

    def __call__(self, images: jax.Array, *, train: bool = True) -> jax.Array:
        h = nnx.relu(self.stem_norm(self.stem(images), use_running_average=not train))
        for block in self.blocks:
            h = block(h, train=train)
        return self.head(jnp.mean(h, axis=(1, 2)))
