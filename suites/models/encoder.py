"""A small pre-norm transformer encoder over feature vectors (2 blocks, 4 heads, width 128)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flax import nnx

if TYPE_CHECKING:
    import jax


class EncoderBlock(nnx.Module):
    """Self-attention and an MLP, each behind a LayerNorm and added back to the residual stream."""

    def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs) -> None:
        self.attention_norm = nnx.LayerNorm(width, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(heads, width, decode=False, rngs=rngs)
        self.mlp_norm = nnx.LayerNorm(width, rngs=rngs)
        self.up = nnx.Linear(width, 4 * width, rngs=rngs)
        self.down = nnx.Linear(4 * width, width, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attention(self.attention_norm(x))
        return x + self.down(nnx.gelu(self.up(self.mlp_norm(x))))


class Encoder(nnx.Module):
    """Projects features to the model width, runs the blocks, and classifies the mean token."""

    def __init__(
        self, features: int = 64, width: int = 128, depth: int = 2, heads: int = 4, classes: int = 10,
        *, rngs: nnx.Rngs,
    ) -> None:  # fmt: skip
        self.embed = nnx.Linear(features, width, rngs=rngs)
        self.blocks = nnx.List([EncoderBlock(width, heads, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.head = nnx.Linear(width, classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h).mean(axis=1))
