"""The suite models with their example inputs and the batch each backend runs them at.

On the CPU the batches are small enough for the whole suite to finish in minutes on two cores; on a GPU
they are large enough for the matmuls to be compute-bound (a small batch measures kernel launches).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from flax import nnx

from suites.models.dcgan import DCGANGenerator
from suites.models.dit import DiTBlock
from suites.models.unet import UNetBlock
from suites.models.vae import VAEDecoder

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class Workload:
    """A model and what it is called with: ``build()`` makes the model, ``inputs(batch)`` its inputs."""

    name: str
    model: Callable[..., nnx.Module] = field(repr=False)
    """The model's class (or a partial of it with its options), called with ``rngs=``."""
    shapes: tuple[tuple[int, ...], ...]
    """Each input's shape without the batch axis."""
    cpu_batch: int
    gpu_batch: int
    matmul_heavy: bool = False

    def build(self) -> nnx.Module:
        """The model, its weights from seed 0: the same in every process."""
        return self.model(rngs=nnx.Rngs(0))

    def batch(self) -> int:
        return self.cpu_batch if jax.default_backend() == "cpu" else self.gpu_batch

    def inputs(self, batch: int | None = None) -> tuple[Any, ...]:
        """Inputs of ``batch`` rows (the backend's batch by default): smooth, deterministic, not zeros,
        so that a timing never runs on a degenerate input."""
        rows = self.batch() if batch is None else batch
        return tuple(
            jnp.sin(jnp.arange(rows * math.prod(shape), dtype=jnp.float32) * (0.37 + 0.11 * index)).reshape(
                rows, *shape
            )
            for index, shape in enumerate(self.shapes)
        )


WORKLOADS = {
    workload.name: workload
    for workload in (
        Workload("vae", VAEDecoder, ((32,),), cpu_batch=64, gpu_batch=4096),
        Workload(
            "vae-wide",
            functools.partial(VAEDecoder, hidden=(1024, 1024)),
            ((32,),),
            cpu_batch=64,
            gpu_batch=32768,
            matmul_heavy=True,
        ),
        Workload("dcgan", DCGANGenerator, ((100,),), cpu_batch=16, gpu_batch=512),
        Workload("unet", UNetBlock, ((16, 16, 128), (512,)), cpu_batch=8, gpu_batch=128),
        # 64 tokens: a 16×16 latent in 2×2 patches, as DiT runs on 128-pixel images' latents.
        Workload("dit", DiTBlock, ((64, 384), (384,)), cpu_batch=8, gpu_batch=512, matmul_heavy=True),
    )
}
