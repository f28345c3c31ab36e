"""The decoder half of an MNIST-sized variational autoencoder (latent 32 → 128 → 256 → 784)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from flax import nnx

if TYPE_CHECKING:
    import jax


class VAEDecoder(nnx.Module):
    """Maps a latent code to a 28×28 image of pixel probabilities (flattened to 784)."""

    def __init__(self, latent: int = 32, hidden: tuple[int, ...] = (128, 256), *, rngs: nnx.Rngs) -> None:
        widths = (latent, *hidden)
        self.layers = nnx.List(
            [
                nnx.Linear(a, b, kernel_init=nnx.initializers.he_normal(), rngs=rngs)
                for a, b in itertools.pairwise(widths)
            ]
        )
        self.head = nnx.Linear(widths[-1], 784, kernel_init=nnx.initializers.xavier_uniform(), rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        h = z
        for layer in self.layers:
            h = nnx.relu(layer(h))
        return nnx.sigmoid(self.head(h))
