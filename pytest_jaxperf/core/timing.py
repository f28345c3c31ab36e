"""The timing engine: correct for JAX by construction.

* Every timed call is blocked on its whole output pytree (``jax.block_until_ready``): without it only the
  asynchronous dispatch is timed.
* The callable is warmed up until its call time is steady before any sample counts; compile time and the
  first call are figures of their own (see :mod:`.wrap`), never samples.
* A compile inside the timed region fails the measurement: the sample would time XLA, not the model.
* Sampling goes on in rounds until the median's confidence interval is within ``target`` of the median, or
  the time budget is spent.

Two modes: ``latency`` blocks each call (median, p90, p99 of single calls); ``throughput`` dispatches a
round of calls back to back and blocks once (the pipelined rate, items per second).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from ..intervals import median_ci, ratio_ci
from ..records import InterleavedRecord, TimingRecord
from .compiles import event_log

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

MODES = ("latency", "throughput")
#: Round length aimed at: long enough for the timer and the dispatch to be small beside it.
_ROUND_SECONDS = 0.01
_MIN_SAMPLES = 10
#: Rounds between two looks at the intervals (each look costs a sort of every sample list).
_LOOK_EVERY = 5
#: At most this many samples are kept in a result (evenly spaced order statistics beyond).
_KEPT_SAMPLES = 200


class MeasurementError(AssertionError):
    """A measurement that cannot be trusted (for instance, something compiled while it was timed)."""


@dataclass(frozen=True)
class TimingConfig:
    """How long and how precisely to measure."""

    mode: str = "latency"
    target: float = 0.02
    """Stop when the median's 95% confidence interval is within ±target of the median..."""
    budget_seconds: float = 2.0
    """...or when this much time has been spent sampling (warm-up not included)."""
    min_seconds: float = 0.2
    """Sample at least this long, whatever the interval: a few lucky samples are not a median."""
    warmup_seconds: float = 0.2


@dataclass(frozen=True)
class Timing:
    """What the timing engine measured for one callable."""

    mode: str
    samples: tuple[float, ...]
    """Seconds per call: one sample per call (latency) or per round divided by its calls (throughput);
    at most 200 kept, as evenly spaced order statistics."""
    sample_count: int
    calls_per_sample: int
    items_per_call: int
    median: float
    ci_low: float
    ci_high: float
    """The median's distribution-free 95% confidence interval (order statistics)."""
    p90: float
    p99: float
    warmup_calls: int
    seconds_spent: float

    @property
    def throughput(self) -> float:
        """Items per second along the batch axis, at the median."""
        return self.items_per_call / self.median if self.median > 0 else math.inf

    @property
    def relative_ci(self) -> float:
        return max(self.median - self.ci_low, self.ci_high - self.median) / self.median

    def to_dict(self) -> TimingRecord:
        return TimingRecord(
            mode=self.mode,
            samples=list(self.samples),
            sample_count=self.sample_count,
            calls_per_sample=self.calls_per_sample,
            items_per_call=self.items_per_call,
            median=self.median,
            ci_low=self.ci_low,
            ci_high=self.ci_high,
            p90=self.p90,
            p99=self.p99,
            warmup_calls=self.warmup_calls,
            seconds_spent=self.seconds_spent,
            throughput=self.throughput,
        )


def _compiles_since(count_before: int) -> list[str]:
    return [e.fun_name for e in event_log().backend_compiles_since(count_before)]


def timed_call(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` blocked on its whole output pytree: (output, wall seconds)."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))  # type: ignore[no-untyped-call]
    return out, time.perf_counter() - start


def _time_round(fn: Callable[[], Any], calls: int, blocked_each: bool) -> float:
    if blocked_each:
        return timed_call(fn)[1]
    start = time.perf_counter()
    out = None
    for _ in range(calls):
        out = fn()  # dispatched back to back: only the last output is waited for
    jax.block_until_ready(out)  # type: ignore[no-untyped-call]
    return time.perf_counter() - start


def _warm_up(fn: Callable[[], Any], seconds: float) -> tuple[int, float]:
    """Call until steady: at least 3 calls and ``seconds``, and two consecutive medians within 5%."""
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while True:
        times.append(_time_round(fn, 1, True))
        if len(times) >= 6 and time.perf_counter() >= deadline:
            last, before = float(np.median(times[-3:])), float(np.median(times[-6:-3]))
            if abs(last - before) <= 0.05 * before or len(times) >= 200:
                return len(times), float(np.median(times[-3:]))
        if len(times) >= 1000:
            return len(times), float(np.median(times[-3:]))


def measure_callable(
    fn: Callable[..., Any],
    args: Sequence[Any] = (),
    *,
    items_per_call: int = 1,
    config: TimingConfig | None = None,
) -> Timing:
    """Time ``fn(*args)`` as the module docstring describes; raise MeasurementError on a compile."""
    config = config or TimingConfig()
    if config.mode not in MODES:
        raise ValueError(f"unknown timing mode {config.mode!r}; accepted: {', '.join(MODES)}")

    def call() -> Any:
        return fn(*args)

    warmup_calls, call_seconds = _warm_up(call, config.warmup_seconds)
    blocked_each = config.mode == "latency"
    calls = 1 if blocked_each else max(1, min(1000, int(_ROUND_SECONDS / max(call_seconds, 1e-7))))
    log = event_log()
    compiles_before = log.count
    samples: list[float] = []
    start = time.perf_counter()
    while True:
        samples.append(_time_round(call, calls, blocked_each) / calls)
        spent = time.perf_counter() - start
        if len(samples) >= _MIN_SAMPLES and len(samples) % _LOOK_EVERY == 0:
            precise = _precise(samples, config.target)
            if (precise and spent >= config.min_seconds) or spent >= config.budget_seconds:
                break
    compiled = _compiles_since(compiles_before)
    if compiled:
        raise MeasurementError(
            f"{len(compiled)} compile(s) inside the timed region ({', '.join(sorted(set(compiled)))}): "
            "the samples would time XLA, not the model; make the call's shapes, dtypes and static "
            "arguments the same on every call"
        )
    low, high = median_ci(samples)
    ordered = np.sort(np.asarray(samples))
    return Timing(
        mode=config.mode,
        samples=tuple(float(s) for s in _keep(ordered)),
        sample_count=len(samples),
        calls_per_sample=calls,
        items_per_call=items_per_call,
        median=float(np.median(ordered)),
        ci_low=low,
        ci_high=high,
        p90=float(np.quantile(ordered, 0.9)),
        p99=float(np.quantile(ordered, 0.99)),
        warmup_calls=warmup_calls,
        seconds_spent=time.perf_counter() - start,
    )


def measure_round_robin(calls: Sequence[Callable[[], Any]], config: TimingConfig) -> list[list[float]]:
    """Time each of ``calls`` once per round, in turn (the order reversed every other round), until every
    median's interval is within ``config.target`` or the budget is spent: the seconds of each call, blocked.

    Measured one after another, two calls can read different phases of a busy machine (the same program
    read 1.2 ms, then 0.26 ms a minute later); in turn, a phase hits all of them alike, and what is
    compared between them holds. MeasurementError on a compile in the timed region.
    """
    for call in calls:
        _warm_up(call, config.warmup_seconds)
    compiles_before = event_log().count
    samples: list[list[float]] = [[] for _ in calls]
    start = time.perf_counter()
    rounds = 0
    while True:
        order = range(len(calls)) if rounds % 2 == 0 else reversed(range(len(calls)))
        for index in order:
            samples[index].append(_time_round(calls[index], 1, True))
        rounds += 1
        spent = time.perf_counter() - start
        if rounds >= _MIN_SAMPLES and rounds % _LOOK_EVERY == 0:
            precise = all(_precise(s, config.target) for s in samples)
            if (precise and spent >= config.min_seconds) or spent >= config.budget_seconds:
                break
    compiled = _compiles_since(compiles_before)
    if compiled:
        raise MeasurementError(f"compile(s) inside the timed region: {', '.join(sorted(set(compiled)))}")
    return samples


def _precise(samples: Sequence[float], target: float) -> bool:
    """Whether the median's 95% interval is within ±``target`` of the median."""
    low, high = median_ci(samples)
    median = float(np.median(samples))
    return max(median - low, high - median) <= target * median


def _keep(ordered: np.ndarray) -> np.ndarray:
    """At most _KEPT_SAMPLES samples: evenly spaced order statistics, which keep the distribution."""
    if len(ordered) <= _KEPT_SAMPLES:
        return ordered
    kept: np.ndarray = np.quantile(ordered, np.linspace(0, 1, _KEPT_SAMPLES))
    return kept


@dataclass(frozen=True)
class Comparison:
    """Two callables timed interleaved (ABAB…): B's time relative to A's, with its interval."""

    name_a: str
    name_b: str
    median_a: float
    median_b: float
    ratio: float
    """median(B) / median(A): below 1, B is faster."""
    ci_low: float
    ci_high: float
    rounds: int

    def to_dict(self) -> InterleavedRecord:
        return InterleavedRecord(
            name_a=self.name_a,
            name_b=self.name_b,
            median_a=self.median_a,
            median_b=self.median_b,
            ratio=self.ratio,
            ci_low=self.ci_low,
            ci_high=self.ci_high,
            rounds=self.rounds,
        )

    def describe(self) -> str:
        return (
            f"{self.name_b} / {self.name_a}: {self.ratio:.3f}× time "
            f"(95% CI {self.ci_low:.3f}…{self.ci_high:.3f}, {self.rounds} interleaved rounds)"
        )


def evidence(low: float, high: float, expected: float) -> str:
    """An expectation "at least ``expected``" against an interval ``low…high`` of what was measured:
    ``holds``, ``false`` or ``inconclusive``. A timing expectation fails only where the interval lies
    below it: a busy machine widens the interval, which then says it cannot tell."""
    if low >= expected:
        return HOLDS
    if high < expected:
        return FALSE
    return INCONCLUSIVE_EVIDENCE


HOLDS, FALSE, INCONCLUSIVE_EVIDENCE = "holds", "false", "inconclusive"


def compare_callables(
    a: Callable[[], Any],
    b: Callable[[], Any],
    *,
    names: tuple[str, str] = ("A", "B"),
    config: TimingConfig | None = None,
) -> Comparison:
    """Time ``a()`` and ``b()`` in alternating rounds, so drift in the machine's speed hits both alike."""
    config = config or TimingConfig()
    _warm_up(a, config.warmup_seconds)
    _warm_up(b, config.warmup_seconds)
    compiles_before = event_log().count
    times_a: list[float] = []
    times_b: list[float] = []
    start = time.perf_counter()
    while True:
        # ABBA order within each pair of rounds cancels a linear drift exactly.
        first, second = (
            ((a, times_a), (b, times_b)) if len(times_a) % 2 == 0 else ((b, times_b), (a, times_a))
        )
        for fn, times in (first, second):
            times.append(_time_round(fn, 1, True))
        if len(times_a) >= _MIN_SAMPLES and len(times_a) % _LOOK_EVERY == 0:
            low, high = ratio_ci(times_a, times_b)
            ratio = float(np.median(times_b) / np.median(times_a))
            done = max(ratio - low, high - ratio) <= config.target * ratio
            if done or time.perf_counter() - start >= config.budget_seconds:
                break
    compiled = _compiles_since(compiles_before)
    if compiled:
        raise MeasurementError(f"compile(s) inside the timed region: {', '.join(sorted(set(compiled)))}")
    low, high = ratio_ci(times_a, times_b)
    return Comparison(
        names[0],
        names[1],
        float(np.median(times_a)),
        float(np.median(times_b)),
        float(np.median(times_b) / np.median(times_a)),
        low,
        high,
        len(times_a),
    )


def items_along_batch(inputs: Sequence[Any]) -> int:
    """Items per call: the leading dimension of the first array input (1 when there is none)."""
    for value in inputs:
        for leaf in jax.tree_util.tree_leaves(value):
            shape: tuple[int, ...] = tuple(getattr(leaf, "shape", ()))
            if len(shape) >= 1:
                return int(shape[0])
    return 1


__all__ = [
    "MODES",
    "Comparison",
    "MeasurementError",
    "Timing",
    "TimingConfig",
    "compare_callables",
    "items_along_batch",
    "measure_callable",
    "timed_call",
]
