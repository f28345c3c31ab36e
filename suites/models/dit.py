"""A diffusion-transformer (DiT) block: layer norm modulated by the conditioning (adaLN), multi-head
self-attention and an MLP, each gated and added to the residual stream (Peebles & Xie 2023)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flax import nnx

if TYPE_CHECKING:
    import jax


class DiTBlock(nnx.Module):
    """(tokens B×N×W, conditioning B×W) → B×N×W; width 384 and 6 heads are DiT-S's."""

    def __init__(self, width: int = 384, heads: int = 6, mlp_ratio: int = 4, *, rngs: nnx.Rngs) -> None:
        self.norm1 = nnx.LayerNorm(width, use_scale=False, use_bias=False, epsilon=1e-6, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(
            heads, width, decode=False, kernel_init=nnx.initializers.xavier_uniform(), rngs=rngs
        )
        self.norm2 = nnx.LayerNorm(width, use_scale=False, use_bias=False, epsilon=1e-6, rngs=rngs)
        self.up = nnx.Linear(
            width, mlp_ratio * width, kernel_init=nnx.initializers.xavier_uniform(), rngs=rngs
        )
        self.down = nnx.Linear(
            mlp_ratio * width, width, kernel_init=nnx.initializers.xavier_uniform(), rngs=rngs
        )
        # DiT initializes this projection to zero ("adaLN-Zero"), which makes an untrained block the
        # identity: nothing for a precision check to see. A trained block's modulation is not zero, so it
        # starts from small random weights here.
        self.modulation = nnx.Linear(width, 6 * width, kernel_init=nnx.initializers.normal(0.02), rngs=rngs)

    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        import jax.numpy as jnp

        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(
            self.modulation(nnx.silu(c))[:, None, :], 6, axis=-1
        )
        h = self.norm1(x) * (1 + scale1) + shift1
        x = x + gate1 * self.attention(h)
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.down(nnx.gelu(self.up(h), approximate=True))
