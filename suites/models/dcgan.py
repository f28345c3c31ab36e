"""A DCGAN-style convolutional generator (Radford et al. 2015) for 32×32 RGB images."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flax import nnx

if TYPE_CHECKING:
    import jax

# DCGAN initializes every weight from N(0, 0.02), and the batch-norm scales from N(1, 0.02).
_WEIGHTS = nnx.initializers.normal(0.02)


def _scale_init(key: jax.Array, shape: tuple[int, ...], dtype: object) -> jax.Array:
    import jax

    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)  # type: ignore[arg-type]


class DCGANGenerator(nnx.Module):
    """Latent (default 100) → 4×4×4w → 8×8×2w → 16×16×w → 32×32×3 in [-1, 1]: a dense projection, then
    stride-2 4×4 transposed convolutions, each but the last followed by batch norm (running statistics:
    inference) and ReLU; tanh on the image."""

    def __init__(self, latent: int = 100, width: int = 64, *, rngs: nnx.Rngs) -> None:
        self.width = width
        self.project = nnx.Linear(latent, 4 * 4 * 4 * width, use_bias=False, kernel_init=_WEIGHTS, rngs=rngs)
        self.norm0 = self._norm(4 * width, rngs)
        self.up1 = nnx.ConvTranspose(
            4 * width, 2 * width, (4, 4), (2, 2), use_bias=False, kernel_init=_WEIGHTS, rngs=rngs
        )
        self.norm1 = self._norm(2 * width, rngs)
        self.up2 = nnx.ConvTranspose(
            2 * width, width, (4, 4), (2, 2), use_bias=False, kernel_init=_WEIGHTS, rngs=rngs
        )
        self.norm2 = self._norm(width, rngs)
        self.to_rgb = nnx.ConvTranspose(width, 3, (4, 4), (2, 2), kernel_init=_WEIGHTS, rngs=rngs)

    @staticmethod
    def _norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
        return nnx.BatchNorm(features, use_running_average=True, scale_init=_scale_init, rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        import jax.numpy as jnp

        h = self.project(z).reshape(z.shape[0], 4, 4, 4 * self.width)
        h = nnx.relu(self.norm0(h))
        h = nnx.relu(self.norm1(self.up1(h)))
        h = nnx.relu(self.norm2(self.up2(h)))
        return jnp.tanh(self.to_rgb(h))
