"""The inference-optimization guide's snippets, kept as the guide writes them (ported to flax 0.12's NNX
accessors, ``param[...]``), bugs included. ``test_guide_snippets.py`` runs each through the plugin.

- :class:`MixedPrecisionModel` casts the input only: JAX's type promotion runs every matmul in float32.
- :func:`quantize_inference` maps ``(x - min) / scale`` into 0…255 and casts to int8, which saturates at 127.
- :class:`QuantizedLinear` keeps one scale per tensor and multiplies its codes back to float32 before a
  float32 matmul (fake quantization).
- :class:`CompressedModel` runs the batch in chunks through a jitted model: the ragged last chunk compiles
  a second program.
- :class:`DynamicBatcher` sets its ``processing`` flag inside the task it guards and stacks whatever is
  queued: concurrent requests start several tasks, a task that finds the queue empty dies with the flag
  set, and every later request waits forever; each distinct batch size is a new compile.
"""

from __future__ import annotations

import asyncio
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


class MixedPrecisionModel(nnx.Module):
    """The guide's mixed precision: cast the input to the compute dtype, run the model, cast back."""

    def __init__(self, model: nnx.Module, compute_dtype: Any = jnp.float16) -> None:
        self.model = model
        self.compute_dtype = compute_dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.compute_dtype)
        return self.model(x).astype(jnp.float32)  # type: ignore[operator, no-any-return]


def quantize_inference(x: jax.Array, bits: int = 8) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The guide's dynamic quantization of a tensor: its min/max range in ``2**bits`` steps, as int8."""
    x_min, x_max = x.min(), x.max()
    scale = (x_max - x_min) / (2**bits - 1)
    quantized = jnp.round((x - x_min) / scale).astype(jnp.int8)
    return quantized, scale, x_min


def dequantize_inference(quantized: jax.Array, scale: jax.Array, x_min: jax.Array) -> jax.Array:
    return quantized.astype(jnp.float32) * scale + x_min


class DynamicQuantizedLinear(nnx.Module):
    """A linear layer with the guide's dynamic quantization of its activations (int8 × int8 → int32,
    weights per output channel): the matmul is right, the activation codes are not."""

    def __init__(self, linear: nnx.Linear) -> None:
        w = linear.kernel[...]
        self.w_scale = nnx.Param(jnp.max(jnp.abs(w), axis=0) / 127.0)
        self.codes = nnx.Param(jnp.round(w / self.w_scale[...]).astype(jnp.int8))
        self.column_sums = nnx.Param(jnp.sum(w, axis=0))
        self.bias = nnx.Param(linear.bias[...])  # type: ignore[index]

    def __call__(self, x: jax.Array) -> jax.Array:
        q, scale, x_min = quantize_inference(x)
        dims = (((x.ndim - 1,), (0,)), ((), ()))
        acc = jax.lax.dot_general(q, self.codes[...], dims, preferred_element_type=jnp.int32)
        # x ≈ q·scale + x_min, so x @ w ≈ scale·(q @ w) + x_min·(column sums of w)
        return acc * scale * self.w_scale[...] + x_min * self.column_sums[...] + self.bias[...]  # type: ignore[no-any-return]


class QuantizedLinear(nnx.Module):
    """The guide's QuantizedLinear: one scale for the whole kernel, the codes dequantized to float32
    before the matmul."""

    def __init__(self, linear: nnx.Linear) -> None:
        kernel = linear.kernel[...]
        self.scale = nnx.Param(jnp.max(jnp.abs(kernel)))
        self.kernel_quantized = nnx.Param(jnp.round(kernel / self.scale[...] * 127).astype(jnp.int8))
        self.bias = nnx.Param(linear.bias[...])  # type: ignore[index]

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel_quantized[...].astype(jnp.float32) * self.scale[...] / 127
        return x @ kernel + self.bias[...]  # type: ignore[no-any-return]


def replace_linears(model: nnx.Module, layer: type[nnx.Module]) -> nnx.Module:
    """The guide's conversion: every ``nnx.Linear`` of the model replaced by ``layer(linear)``."""
    for path, module in list(model.iter_modules()):
        if isinstance(module, nnx.Linear) and path:
            parent: Any = model
            for name in path[:-1]:
                parent = parent[name] if isinstance(name, int) else getattr(parent, name)
            if isinstance(path[-1], int):
                parent[path[-1]] = layer(module)
            else:
                setattr(parent, path[-1], layer(module))
    return model


class CompressedModel:
    """The guide's activation compression: the batch processed ``chunk_size`` rows at a time."""

    def __init__(self, model: Any, chunk_size: int = 16) -> None:
        self.model = model
        self.chunk_size = chunk_size

    def __call__(self, x: jax.Array) -> jax.Array:
        outputs = []
        for start in range(0, x.shape[0], self.chunk_size):
            chunk = x[start : start + self.chunk_size]
            outputs.append(self.model(chunk))
        return jnp.concatenate(outputs, axis=0)


class DynamicBatcher:
    """The guide's dynamic batcher: requests queue up, a task waits ``timeout_ms`` and runs them."""

    def __init__(self, model: Any, max_batch_size: int = 32, timeout_ms: float = 10) -> None:
        self.model = model
        self.max_batch_size = max_batch_size
        self.timeout_ms = timeout_ms
        self.queue: list[tuple[jax.Array, asyncio.Future[Any]]] = []
        self.processing = False
        self.tasks: list[asyncio.Task[None]] = []  # kept so that the tests can read what the tasks raised

    async def add_request(self, x: jax.Array) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queue.append((x, future))
        if not self.processing:
            self.tasks.append(asyncio.create_task(self.process_batch()))
        return await future

    async def process_batch(self) -> None:
        self.processing = True
        await asyncio.sleep(self.timeout_ms / 1000)
        batch = self.queue[: self.max_batch_size]
        self.queue = self.queue[self.max_batch_size :]
        inputs = jnp.stack([x for x, _ in batch])
        outputs = self.model(inputs)
        for (_, future), output in zip(batch, outputs, strict=True):
            future.set_result(output)
        self.processing = False
