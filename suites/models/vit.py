"""A small vision transformer, written as such models are: a patch embedding (a strided convolution), a
learned class token and position embedding, pre-norm blocks with dropout, and a head on the class token.
Called as ``vit(images, rngs=None, deterministic=True)`` at inference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class ViTBlock(nnx.Module):
    def __init__(self, width: int, heads: int, dropout: float, *, rngs: nnx.Rngs) -> None:
        self.attention_norm = nnx.LayerNorm(width, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(heads, width, decode=False, rngs=rngs)
        self.mlp_norm = nnx.LayerNorm(width, rngs=rngs)
        self.up = nnx.Linear(width, 4 * width, rngs=rngs)
        self.down = nnx.Linear(4 * width, width, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None, deterministic: bool) -> jax.Array:
        attended = self.attention(self.attention_norm(x), deterministic=deterministic, rngs=rngs)
        x = x + self.dropout(attended, deterministic=deterministic, rngs=rngs)
        h = self.down(nnx.gelu(self.up(self.mlp_norm(x))))
        return x + self.dropout(h, deterministic=deterministic, rngs=rngs)


class ViT(nnx.Module):
    """``vit(images, rngs=None, deterministic=True)`` → class logits."""

    def __init__(
        self, image: int = 32, patch: int = 4, width: int = 128, depth: int = 2, heads: int = 4,
        classes: int = 10, channels: int = 3, dropout: float = 0.1, *, rngs: nnx.Rngs,
    ) -> None:  # fmt: skip
        tokens = (image // patch) ** 2
        self.patches = nnx.Conv(channels, width, (patch, patch), strides=patch, rngs=rngs)
        self.class_token = nnx.Param(jnp.zeros((1, 1, width)))
        self.positions = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, tokens + 1, width)))
        self.blocks = nnx.List([ViTBlock(width, heads, dropout, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.head = nnx.Linear(width, classes, rngs=rngs)

    def __call__(
        self, images: jax.Array, *, rngs: nnx.Rngs | None = None, deterministic: bool = False
    ) -> jax.Array:
        patches = self.patches(images)
        batch = patches.shape[0]
        x = patches.reshape(batch, -1, patches.shape[-1])
        class_token = jnp.broadcast_to(self.class_token[...], (batch, 1, x.shape[-1])).astype(x.dtype)
        x = jnp.concatenate([class_token, x], axis=1) + self.positions[...].astype(x.dtype)
        for block in self.blocks:
            x = block(x, rngs=rngs, deterministic=deterministic)
        return self.head(self.norm(x)[:, 0])
