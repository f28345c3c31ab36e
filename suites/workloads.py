"""The suite models with their example inputs, the batch each backend runs them at, and their budgets.

On the CPU the batches are small enough for the whole suite to finish in minutes on two cores; on a GPU
they are large enough for the matmuls to be compute-bound (a small batch measures kernel launches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class Workload:
    """A model and what it is called with: ``build()`` makes the model, ``inputs(batch)`` its inputs."""

    name: str
    build: Callable[[], Any]
    shapes: tuple[tuple[int, ...], ...]
    """Each input's shape without the batch axis."""
    cpu_batch: int
    gpu_batch: int
    matmul_heavy: bool = False

    def batch(self) -> int:
        import jax

        return self.cpu_batch if jax.default_backend() == "cpu" else self.gpu_batch

    def inputs(self, batch: int | None = None) -> tuple[Any, ...]:
        """Inputs of ``batch`` rows (the backend's batch by default): smooth, deterministic, not zeros,
        so that a timing never runs on a degenerate input."""
        import jax.numpy as jnp

        rows = self.batch() if batch is None else batch
        arrays = []
        for index, shape in enumerate(self.shapes):
            size = rows
            for extent in shape:
                size *= extent
            values = jnp.sin(jnp.arange(size, dtype=jnp.float32) * (0.37 + 0.11 * index))
            arrays.append(values.reshape(rows, *shape))
        return tuple(arrays)


def _vae() -> Any:
    from flax import nnx

    from suites.models.vae import VAEDecoder

    return VAEDecoder(rngs=nnx.Rngs(0))


def _vae_wide() -> Any:
    from flax import nnx

    from suites.models.vae import VAEDecoder

    return VAEDecoder(hidden=(1024, 1024), rngs=nnx.Rngs(0))


def _dcgan() -> Any:
    from flax import nnx

    from suites.models.dcgan import DCGANGenerator

    return DCGANGenerator(rngs=nnx.Rngs(0))


def _unet() -> Any:
    from flax import nnx

    from suites.models.unet import UNetBlock

    return UNetBlock(rngs=nnx.Rngs(0))


def _dit() -> Any:
    from flax import nnx

    from suites.models.dit import DiTBlock

    return DiTBlock(rngs=nnx.Rngs(0))


WORKLOADS = {
    workload.name: workload
    for workload in (
        Workload("vae", _vae, ((32,),), cpu_batch=64, gpu_batch=4096),
        Workload("vae-wide", _vae_wide, ((32,),), cpu_batch=64, gpu_batch=32768, matmul_heavy=True),
        Workload("dcgan", _dcgan, ((100,),), cpu_batch=16, gpu_batch=512),
        Workload("unet", _unet, ((16, 16, 128), (512,)), cpu_batch=8, gpu_batch=128),
        # 64 tokens: a 16×16 latent in 2×2 patches, as DiT runs on 128-pixel images' latents.
        Workload("dit", _dit, ((64, 384), (384,)), cpu_batch=8, gpu_batch=512, matmul_heavy=True),
    )
}
