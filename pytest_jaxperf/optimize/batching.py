"""Batching done right: fixed buckets (one compile each), batch sweeps, and a pipeline split over devices.

A jitted function compiles once per input shape. Serving arbitrary batch sizes therefore needs a small,
fixed set of bucket sizes: a request of 5 rows runs in the 8 bucket, padded with zeros, and the padding
rows are sliced off the result. :func:`batch_sweep` measures throughput and latency per bucket and finds
where throughput stops growing.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import statistics
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from ..core.compiles import WatchedFunction
from ..core.timing import TimingConfig, measure_round_robin, timed_call
from ..intervals import ratio_ci

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


def bucket_for(size: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds ``size`` rows; ValueError when none does."""
    fitting = [b for b in sorted(buckets) if b >= size]
    if not fitting:
        raise ValueError(f"a batch of {size} rows exceeds the largest bucket, {max(buckets)}")
    return fitting[0]


def pad_batch(tree: Any, size: int, xp: Any = jnp) -> Any:
    """Pad axis 0 of every array leaf with zeros up to ``size`` rows (``xp``: jax.numpy or numpy)."""

    def pad(leaf: Any) -> Any:
        missing = size - leaf.shape[0]
        if missing == 0:
            return leaf
        return xp.concatenate([leaf, xp.zeros((missing, *leaf.shape[1:]), leaf.dtype)])

    return jax.tree_util.tree_map(pad, tree)


def take_rows(tree: Any, rows: int) -> Any:
    """The first ``rows`` rows of every array leaf (padding sliced off)."""
    return jax.tree_util.tree_map(lambda leaf: leaf[:rows], tree)


class BucketedModel:
    """``fn`` called on batches padded to fixed bucket sizes: at most one compile per bucket.

    ``BucketedModel(jitted, buckets=(1, 8, 64))(x)`` with ``x`` of 5 rows runs the 8-row program and
    returns 5 rows. ``watched.compiles`` shows the compiles (one per bucket used). ``fn`` may be a model
    from ``jaxperf.wrap``: its own watched function is the one counted.
    """

    def __init__(self, fn: Callable[..., Any], buckets: Sequence[int]) -> None:
        if not buckets or any(b < 1 for b in buckets):
            raise ValueError(f"buckets must be positive sizes, got {tuple(buckets)!r}")
        self.buckets = tuple(sorted(set(buckets)))
        own = getattr(fn, "watched", None)
        self._call: Callable[..., Any]
        if isinstance(fn, WatchedFunction):
            self.watched, self._call = fn, fn
        elif isinstance(own, WatchedFunction):  # a wrapped model: called as it is, counted by its own watch
            self.watched, self._call = own, fn
        else:
            self.watched = WatchedFunction(fn)
            self._call = self.watched

    def __call__(self, *inputs: Any) -> Any:
        rows = inputs[0].shape[0]
        bucket = bucket_for(rows, self.buckets)
        return take_rows(self._call(*pad_batch(inputs, bucket)), rows)


#: A figure to report: name, value, unit, and for a point of a batch sweep its model and batch.
Figure = tuple[str, float, str, str, int | None]


@dataclass(frozen=True)
class SweepPoint:
    """One batch size of a sweep."""

    batch: int
    latency_seconds: float
    """Median time of one blocked call."""
    throughput: float
    """Items per second at that latency."""
    compiles: int
    """Compiles this size caused (1 when each size compiles exactly once)."""
    samples: tuple[float, ...] = ()
    """The seconds of each timed call, measured in turn with every other size's."""


@dataclass(frozen=True)
class Sweep:
    """Throughput and latency against batch size, and where throughput stops growing."""

    points: tuple[SweepPoint, ...]
    saturation: int
    """The smallest batch after which doubling-or-more the batch gains less than ``gain`` throughput."""

    def throughput_ratio(self, batch: int, other: int) -> tuple[float, float, float]:
        """Throughput at ``batch`` over throughput at ``other``, with its 95% interval (from the two
        sizes' samples, taken in turn)."""
        point, reference = self.point(batch), self.point(other)
        rows = point.batch / reference.batch
        # throughput ratio = rows × (other's time / batch's time)
        low, high = ratio_ci(list(point.samples), list(reference.samples))
        return rows * reference.latency_seconds / point.latency_seconds, rows * low, rows * high

    def point(self, batch: int) -> SweepPoint:
        """The point of batch size ``batch``; KeyError naming the sizes swept where it is not one."""
        for point in self.points:
            if point.batch == batch:
                return point
        raise KeyError(f"batch {batch} was not swept; the sizes were {[p.batch for p in self.points]}")

    def lines(self) -> list[str]:
        rows = [f"{'batch':>7} {'latency ms':>11} {'items/s':>12} {'compiles':>8}"]
        rows += [
            f"{p.batch:>7} {p.latency_seconds * 1e3:>11.3f} {p.throughput:>12.0f} {p.compiles:>8}"
            for p in self.points
        ]
        rows.append(f"throughput saturates at batch {self.saturation}")
        return rows

    def figures(self, model: str) -> list[Figure]:
        """The sweep as reported figures, each point's with its model and batch as fields (``jaxperf
        report`` plots throughput against batch size from them)."""
        figures: list[Figure] = []
        for p in self.points:
            figures.append((f"{model} batch {p.batch}: throughput", p.throughput, "items/s", model, p.batch))
            figures.append(
                (f"{model} batch {p.batch}: latency", p.latency_seconds * 1e3, "ms", model, p.batch)
            )
        return [*figures, (f"{model}: throughput saturates at batch", self.saturation, "rows", "", None)]


def batch_sweep(
    fn: Callable[..., Any],
    *example_inputs: Any,
    sizes: Sequence[int] = (1, 8, 64, 512),
    config: TimingConfig | None = None,
    gain: float = 0.10,
) -> Sweep:
    """Measure ``fn`` (a jitted callable of batched inputs, batch on axis 0 of each) at each batch size.

    Each example input's first row is repeated to each size; a 0-d leaf (a position, a step) has no
    batch and is passed as it is. Each size compiles once, first; then the sizes are timed in turn
    (:func:`~pytest_jaxperf.core.timing.measure_round_robin`, ``config``'s budget for each size), so
    what the sweep compares between sizes is measured under the same load. A compile while timing fails
    the sweep (MeasurementError).
    """
    if not example_inputs:
        raise TypeError("batch_sweep needs at least one example input (a batch on axis 0)")
    config = config or TimingConfig(budget_seconds=0.5)
    watched = fn if isinstance(fn, WatchedFunction) else WatchedFunction(fn)

    def batch_of(leaf: Any, size: int) -> Any:
        return leaf if jnp.ndim(leaf) == 0 else jnp.repeat(leaf[:1], size, axis=0)

    ordered = sorted(set(sizes))
    batches, compiles = [], []
    for size in ordered:
        batch = jax.tree_util.tree_map(functools.partial(batch_of, size=size), example_inputs)
        before = len(watched.compiles)
        jax.block_until_ready(watched(*batch))  # type: ignore[no-untyped-call]
        batches.append(batch)
        compiles.append(len(watched.compiles) - before)
    shared = dataclasses.replace(config, budget_seconds=config.budget_seconds * len(ordered))
    samples = measure_round_robin([functools.partial(watched, *batch) for batch in batches], shared)
    points = []
    for size, count, times in zip(ordered, compiles, samples, strict=True):
        median = statistics.median(times)
        points.append(SweepPoint(size, median, size / median, count, tuple(times)))
    saturation = points[-1].batch
    for current, following in itertools.pairwise(points):
        if following.throughput < (1 + gain) * current.throughput:
            saturation = current.batch
            break
    return Sweep(tuple(points), saturation)


@dataclass(frozen=True)
class PipelineTiming:
    """A two-stage pipeline over two devices: each stage and the transfer between them."""

    stage_one_seconds: float
    transfer_seconds: float
    stage_two_seconds: float
    transferred_bytes: int
    devices: tuple[str, str]

    def figures(self) -> list[Figure]:
        """The pipeline as reported figures: each stage, the transfer and its size."""
        return [
            ("pipeline stage one", self.stage_one_seconds * 1e3, "ms", "", None),
            (
                f"pipeline transfer {self.devices[0]} → {self.devices[1]}",
                self.transfer_seconds * 1e3,
                "ms",
                "",
                None,
            ),
            ("pipeline transfer size", self.transferred_bytes, "bytes", "", None),
            ("pipeline stage two", self.stage_two_seconds * 1e3, "ms", "", None),
        ]


def on_device(model: Any, device: Any) -> Callable[..., Any]:
    """``model`` (an NNX module or a function of one input) compiled with its parameters on ``device``."""
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(model, nnx.Module):
        graphdef, state = nnx.split(model)
        state = jax.device_put(state, device)
        forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
        return lambda x: forward(state, x)
    return jax.jit(model)


def pipeline_split(
    stage_one: Any, stage_two: Any, x: Any, devices: Sequence[Any] | None = None, repeats: int = 20
) -> tuple[Any, PipelineTiming]:
    """Run stage one on device 0 and stage two on device 1, timing both stages and the transfer.

    Returns the output (on device 1) and the medians over ``repeats`` runs, each part blocked on its own.
    """
    chosen = list(devices) if devices is not None else jax.devices()[:2]
    if len(chosen) < 2:
        raise ValueError(f"a pipeline split needs 2 devices, {len(chosen)} available")
    first, second = on_device(stage_one, chosen[0]), on_device(stage_two, chosen[1])
    x = jax.device_put(x, chosen[0])

    def transfer_to_second(tree: Any) -> Any:
        return jax.device_put(tree, chosen[1])

    one, transfer, two = [], [], []
    for index in range(repeats + 1):  # the first round compiles both stages and is not counted
        middle, seconds_one = timed_call(first, x)
        moved, seconds_transfer = timed_call(transfer_to_second, middle)
        output, seconds_two = timed_call(second, moved)
        if index:
            one.append(seconds_one)
            transfer.append(seconds_transfer)
            two.append(seconds_two)
    nbytes = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(middle))
    names = (f"{chosen[0].platform}:{chosen[0].id}", f"{chosen[1].platform}:{chosen[1].id}")
    return output, PipelineTiming(
        statistics.median(one), statistics.median(transfer), statistics.median(two), nbytes, names
    )
