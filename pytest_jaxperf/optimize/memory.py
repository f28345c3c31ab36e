"""Memory-saving optimizations, each measured from the compiled program's memory analysis.

- :func:`max_batch_size`: the largest batch under a budget, by binary search over compile-only memory
  analysis: no trial run, no out-of-memory, no device memory used (``confirm=True`` runs it once). On
  accelerators the trial programs compile without autotuning and the boundary is then checked with the
  program the model really runs.
- :func:`chunked`: a batch run in fixed-size chunks, the last one padded to the chunk size and its result
  sliced, so one program serves every batch size; :meth:`ChunkedModel.memory_saved` says what it buys.
- :func:`donating`: the inputs' buffers donated to the computation (the caller promises not to reuse
  them); the bytes XLA reuses are the aliased bytes of the memory analysis.
- Rematerialization (``jax.checkpoint`` with a policy) trades compute for the activations a *gradient*
  keeps; :func:`rematerialized` applies it. Inference keeps no activations for a backward pass, so there
  it saves nothing, which ``suites/test_memory.py`` shows by measurement.
"""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core.memory import MemoryBreakdown, compiled_memory, device_memory_stats
from ..core.wrap import wrap_model
from ..units import format_bytes, parse_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ..core.wrap import WrappedModel


def _at_batch(example: Any, batch: int) -> Any:
    """The example input's abstract shape with another leading dimension."""
    return jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct((batch, *np.shape(leaf)[1:]), jnp.result_type(leaf)),  # type: ignore[no-untyped-call]
        example,
    )


def memory_at_batch(
    wrapped: WrappedModel,
    example_input: Any,
    batch: int,
    *,
    compiler_options: Mapping[str, Any] | None = None,
) -> MemoryBreakdown:
    """What the model's compiled program needs for ``batch`` rows (compiles; runs nothing)."""
    assert wrapped.forward is not None
    lowered = jax.jit(wrapped.forward).lower(wrapped.params, _at_batch(example_input, batch))
    return compiled_memory(lowered.compile(dict(compiler_options) if compiler_options else None))


#: XLA options of the search's trial compiles. A GPU compile autotunes: it times candidate kernels for
#: every GEMM, convolution and fusion at the new shape, which at large batches takes seconds a compile
#: and made a 30-compile search the slowest case of the suites on an H100. Without it XLA takes its
#: default kernels, whose workspaces can differ a little, so the boundary is re-checked with the program
#: the model really runs. XLA:CPU does not autotune; the option changes nothing there.
UNTUNED_OPTIONS: Mapping[str, Any] = MappingProxyType({"xla_gpu_autotune_level": 0})


def fitting_boundary(fits: Callable[[int], bool], start: int, limit: int) -> tuple[int, int | None]:
    """The largest batch in ``1..limit`` for which ``fits`` holds (0: none) and the smallest tried for
    which it does not (None: ``limit`` fits), for a ``fits`` that holds up to some batch and not beyond.

    Steps out from ``start`` by 1, 2, 4, ... rows until the answer changes, then bisects: from 1 that is
    doubling (1, 2, 4, ...), from a good guess it is two calls.
    """
    start = max(1, min(start, limit))
    low, high, step = 0, None, 1
    if fits(start):
        low = start
        while low < limit:
            batch = min(low + step, limit)
            if not fits(batch):
                high = batch
                break
            low, step = batch, step * 2
    else:
        high = start
        while high - step >= 1:
            batch = high - step
            if fits(batch):
                low = batch
                break
            high, step = batch, step * 2
    while high is not None and high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low, high


@dataclass(frozen=True)
class BatchFit:
    """The result of :func:`max_batch_size`."""

    batch: int
    """The largest batch whose program fits the budget (0: not even one row)."""
    budget: int
    needs: MemoryBreakdown | None
    """What the program needs at ``batch``."""
    first_over: int | None
    """The smallest batch tried that did not fit (None: the search stopped at ``limit``)."""
    compiles: int
    seconds: float
    confirmed: bool = False
    """Whether ``confirm=True`` ran the model at ``batch``."""
    autotuned_compiles: int = 0
    """Of ``compiles``, those with the backend's autotuning (the boundary's check on accelerators)."""

    def describe(self) -> str:
        needs = f" (needs {format_bytes(self.needs.total)}: {self.needs.describe()})" if self.needs else ""
        return (
            f"largest batch {self.batch} under {format_bytes(self.budget)}{needs}; "
            f"{self.compiles} compiles ({self.autotuned_compiles} autotuned), {self.seconds:.2f} s, "
            "no device memory used"
        )


def device_budget(device: Any = None) -> int:
    """The device's memory limit (``bytes_limit``); raises ValueError where the backend reports none."""
    device = device or jax.devices()[0]
    limit = device_memory_stats(device).get("bytes_limit")
    if not limit:
        raise ValueError(
            f"{device.platform} device {device} reports no memory limit: pass budget= (bytes or '1GiB')"
        )
    return int(limit)


def max_batch_size(
    model: Any,
    example_input: Any,
    budget: int | str | None = None,
    *,
    params: Any = None,
    limit: int = 1 << 24,
    confirm: bool = False,
) -> BatchFit:
    """The largest batch of ``example_input``'s row shape whose compiled program fits ``budget``.

    Doubles the batch until the program needs more than the budget, then bisects: about 2·log2(batch)
    compiles, each ahead of time (nothing runs, nothing is allocated), without autotuning; where the
    backend autotunes (GPUs), the boundary is then checked with the program the model really runs.
    ``budget`` is bytes or a size string (``"1GiB"``); by default the device's own limit (GPUs and TPUs
    report one; the CPU does not).
    ``confirm=True`` then runs the model once at the batch found.
    """

    started = time.perf_counter()
    budget_bytes = device_budget() if budget is None else parse_bytes(budget)
    wrapped = wrap_model(model, params=params, jit=False)
    # Trial programs compile without autotuning; then, where the backend autotunes, the boundary is
    # checked (and if need be moved) with the programs the model really runs: two compiles when the
    # untuned estimate was right.
    untuned: dict[int, MemoryBreakdown] = {}
    tuned: dict[int, MemoryBreakdown] = {}

    def needs(batch: int, cache: dict[int, MemoryBreakdown], options: Mapping[str, Any] | None) -> int:
        if batch not in cache:
            cache[batch] = memory_at_batch(wrapped, example_input, batch, compiler_options=options)
        return cache[batch].total

    fits, over = fitting_boundary(lambda b: needs(b, untuned, UNTUNED_OPTIONS) <= budget_bytes, 1, limit)
    if jax.default_backend() != "cpu":
        fits, over = fitting_boundary(lambda b: needs(b, tuned, None) <= budget_bytes, fits, limit)
    final = tuned if tuned else untuned
    confirmed = False
    if confirm and fits:
        assert wrapped.forward is not None
        output = jax.jit(wrapped.forward)(wrapped.params, _zeros(example_input, fits))
        jax.tree.map(lambda leaf: leaf.block_until_ready(), output)
        confirmed = True
    return BatchFit(
        batch=fits,
        budget=budget_bytes,
        needs=final[fits] if fits else None,
        first_over=over,
        compiles=len(untuned) + len(tuned),
        autotuned_compiles=len(tuned),
        seconds=time.perf_counter() - started,
        confirmed=confirmed,
    )


def _zeros(example: Any, batch: int) -> Any:
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), _at_batch(example, batch))


class ChunkedModel:
    """``model`` over a batch in chunks of ``chunk_size`` rows: one compiled program for every batch size."""

    def __init__(self, model: Any, chunk_size: int, *, params: Any = None) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self.chunk_size = chunk_size
        self.wrapped = wrap_model(model, params=params, jit=True)

    @property
    def compiles(self) -> int:
        """How many times the chunk program compiled (one per input signature of a chunk)."""
        return len(self.wrapped.watched.compiles) if self.wrapped.watched else 0

    def __call__(self, x: Any) -> Any:
        rows = int(np.shape(jax.tree.leaves(x)[0])[0])
        outputs = []
        for start in range(0, rows, self.chunk_size):
            piece = jax.tree.map(lambda leaf, s=start: leaf[s : s + self.chunk_size], x)
            real = int(np.shape(jax.tree.leaves(piece)[0])[0])
            if real < self.chunk_size:
                # Pad the short last chunk to the chunk size: the same program, no recompile.
                piece = jax.tree.map(functools.partial(_pad_rows, rows=self.chunk_size), piece)
            out = self.wrapped(piece)
            outputs.append(jax.tree.map(functools.partial(_first_rows, rows=real), out))
        return jax.tree.map(lambda *leaves: jnp.concatenate(leaves, axis=0), *outputs)

    def memory_saved(self, x: Any) -> tuple[MemoryBreakdown, MemoryBreakdown]:
        """``(whole batch, one chunk)``: what one program over all of ``x`` needs against one chunk's."""
        rows = int(np.shape(jax.tree.leaves(x)[0])[0])
        whole = memory_at_batch(self.wrapped, x, rows)
        return whole, memory_at_batch(self.wrapped, x, self.chunk_size)


def _first_rows(leaf: Any, rows: int) -> Any:
    return leaf[:rows]


def _pad_rows(leaf: Any, rows: int) -> Any:
    return jnp.pad(leaf, [(0, rows - leaf.shape[0])] + [(0, 0)] * (leaf.ndim - 1))


def chunked(model: Any, chunk_size: int, *, params: Any = None) -> ChunkedModel:
    """``model`` run over any batch in chunks of ``chunk_size`` rows (see :class:`ChunkedModel`)."""
    return ChunkedModel(model, chunk_size, params=params)


class DonatingModel:
    """``model`` with its input buffers donated: do not use an input again after passing it."""

    def __init__(self, model: Any, *, params: Any = None) -> None:
        wrapped = wrap_model(model, params=params, jit=False)
        assert wrapped.forward is not None
        self.name = wrapped.name
        self.params = wrapped.params
        self._forward = wrapped.forward
        self._jitted: dict[int, Any] = {}

    def _jit(self, count: int) -> Any:
        if count not in self._jitted:
            # Arguments 1..count are the inputs (0 is the parameters, kept).
            self._jitted[count] = jax.jit(self._forward, donate_argnums=tuple(range(1, count + 1)))
        return self._jitted[count]

    def __call__(self, *inputs: Any) -> Any:
        return self._jit(len(inputs))(self.params, *inputs)

    def memory_saved(self, *inputs: Any) -> tuple[MemoryBreakdown, MemoryBreakdown]:
        """``(without donation, with it)``; the bytes saved are the second's aliased bytes."""
        plain = compiled_memory(jax.jit(self._forward).lower(self.params, *inputs).compile())
        with warnings.catch_warnings():
            # "Some donated buffers were not usable": then nothing is aliased, which the figures show.
            warnings.simplefilter("ignore", UserWarning)
            donated = compiled_memory(self._jit(len(inputs)).lower(self.params, *inputs).compile())
        return plain, donated


def donating(model: Any, *, params: Any = None) -> DonatingModel:
    """``model`` compiled with its inputs donated (see :class:`DonatingModel`)."""
    return DonatingModel(model, params=params)


def rematerialized(fn: Callable[..., Any], policy: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """``jax.checkpoint(fn, policy=...)``: under a gradient, ``fn``'s activations are recomputed rather
    than kept (default policy: nothing saved). It changes nothing for a forward pass alone."""
    return functools.partial(jax.checkpoint, policy=policy or jax.checkpoint_policies.nothing_saveable)(fn)
