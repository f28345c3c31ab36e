"""A diffusion UNet block at 16×16: two residual convolution blocks with group norm and the diffusion
time step's embedding, then a self-attention block over the 256 positions (as in DDPM's middle blocks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flax import nnx

if TYPE_CHECKING:
    import jax


class ResidualBlock(nnx.Module):
    """GroupNorm → SiLU → 3×3 conv, the time embedding added, GroupNorm → SiLU → 3×3 conv, plus the input."""

    def __init__(self, channels: int, time_features: int, *, rngs: nnx.Rngs) -> None:
        self.norm1 = nnx.GroupNorm(channels, num_groups=32, rngs=rngs)
        self.conv1 = nnx.Conv(channels, channels, (3, 3), rngs=rngs)
        self.time = nnx.Linear(time_features, channels, rngs=rngs)
        self.norm2 = nnx.GroupNorm(channels, num_groups=32, rngs=rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), rngs=rngs)

    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        h = self.conv1(nnx.silu(self.norm1(x)))
        h = h + self.time(nnx.silu(t))[:, None, None, :]
        h = self.conv2(nnx.silu(self.norm2(h)))
        return x + h


class AttentionBlock(nnx.Module):
    """GroupNorm, then multi-head self-attention over the H×W positions, added back to the input."""

    def __init__(self, channels: int, heads: int, *, rngs: nnx.Rngs) -> None:
        self.norm = nnx.GroupNorm(channels, num_groups=32, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(heads, channels, decode=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        batch, height, width, channels = x.shape
        tokens = self.norm(x).reshape(batch, height * width, channels)
        return x + self.attention(tokens).reshape(batch, height, width, channels)


class UNetBlock(nnx.Module):
    """(feature map B×16×16×C, time embedding B×T) → B×16×16×C."""

    def __init__(
        self, channels: int = 128, time_features: int = 512, heads: int = 4, *, rngs: nnx.Rngs
    ) -> None:
        self.res1 = ResidualBlock(channels, time_features, rngs=rngs)
        self.attention = AttentionBlock(channels, heads, rngs=rngs)
        self.res2 = ResidualBlock(channels, time_features, rngs=rngs)

    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        return self.res2(self.attention(self.res1(x, t)), t)
