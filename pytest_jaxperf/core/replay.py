"""A baseline's stored program replayed beside the current program, in the same process.

Both programs are ``jax.export`` modules of the same shape (the state leaves and the inputs as
arguments), compiled here, and called the same way on the same arguments: what differs between them is the
program, not the Python around it, the machine's mood or the process's memory layout. They are timed in
alternating slots, blocks of A B B A and B A A B quads (A the baseline, B the current program): in A B B A
the middle calls run back to back, warm, and alternating the pattern gives that slot to each side in turn.

What replay cannot see: what lies outside the program (Python overhead around the call, placement of the
inputs) and what affects both programs alike (an XLA or jaxlib change compiles both anew).
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from jax import export as jax_export

from ..errors import first_line
from ..records import SLOWER_COMPILE_RATIO, ReplayRecord
from .export import exported_program, other_platform, serialized
from .metrics import normalized_hlo

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from jax import export

    from .wrap import WrappedModel

#: A timed slot lasts at least this long: a program of microseconds is called several times per slot, so
#: the timer and the dispatch stay small beside it.
_SLOT_SECONDS = 0.0005
#: Quads in a block at most; a block's ratio is the median of its quads', which a stray slow call (a
#: preempted thread) cannot move.
_QUADS_PER_BLOCK = 8
#: Blocks before the interval may stop the sampling: the t interval of fewer is too wide to trust.
_MIN_BLOCKS = 6
#: Blocks whatever the budget: an interval needs at least this many...
_FEWEST_BLOCKS = 3
#: ...of at least this many quads (one A B B A, one B A A B)...
_MIN_QUADS = 2
#: ...unless that would take more than this many budgets: then the program is too slow to replay here.
_OVERRUN = 3.0
_CONFIDENCE = 0.95
#: A compile ratio beyond SLOWER_COMPILE_RATIO is confirmed through this many more compiles of both: one
#: busy moment can slow a single compile.
_COMPILE_CONFIRMATIONS = 2


class ReplayUnavailable(Exception):
    """The stored program cannot be replayed here: the message says why (the gate falls back)."""


class ReplayFailed(Exception):
    """The stored program was compiled but failed to run (out of memory, an invalid shape)."""


@dataclass(frozen=True)
class ReplayConfig:
    """How long and how precisely to replay."""

    budget_seconds: float = 2.0
    """Time the replay takes, exporting and compiling included (at least the fewest blocks are timed)..."""
    target: float = 0.0125
    """...unless the ratio's 95% interval is within ± this fraction sooner (in log terms)."""


@dataclass(frozen=True)
class Replay:
    """The current program's time relative to the baseline program's, measured interleaved."""

    ratio: float
    """Current time / baseline program's time (geometric mean over blocks): above 1, slower now."""
    ci_low: float
    ci_high: float
    blocks: int
    pairs: int
    """Slot pairs timed: each quad is two of each program."""
    calls_per_slot: int
    seconds: float
    """Time this replay took: the export and compiles it needed and its timed slots."""
    arguments: str
    """``current`` (the check's own state and inputs) or ``generated`` (arrays of the stored shapes)."""
    same_program: bool
    """Whether both optimized programs are identical here: the ratio then measures only noise."""
    compile_seconds_current: float
    compile_seconds_baseline: float
    """XLA's compile of each program here (the backend compile, not tracing); where the current one came
    out beyond the warning line, the faster of up to three."""
    compile_cache: bool = False
    """Whether jax's persistent compilation cache was on: the compile times may then be cache reads."""
    note: str = ""
    block_logs: tuple[float, ...] = field(default=(), repr=False)
    """Each block's log ratio: a longer replay goes on from them."""
    quads_per_block: int = 0

    @property
    def compile_ratio(self) -> float:
        return self.compile_seconds_current / self.compile_seconds_baseline

    def to_dict(self) -> ReplayRecord:
        return ReplayRecord(
            ratio=self.ratio,
            ci_low=self.ci_low,
            ci_high=self.ci_high,
            blocks=self.blocks,
            pairs=self.pairs,
            calls_per_slot=self.calls_per_slot,
            seconds=self.seconds,
            arguments=self.arguments,
            same_program=self.same_program,
            compile_seconds_current=self.compile_seconds_current,
            compile_seconds_baseline=self.compile_seconds_baseline,
            compile_ratio=self.compile_ratio,
            compile_cache=self.compile_cache,
            note=self.note,
        )


def current_program(
    wrapped: WrappedModel, inputs: tuple[Any, ...]
) -> tuple[export.Exported, tuple[Any, ...]]:
    """The current program exported, serialized and read back as a baseline's is, and its arguments
    (state leaves, placed inputs): both sides of a replay are called through the same path.
    Raises :class:`~pytest_jaxperf.core.export.ProgramNotExported` when it cannot be exported."""
    exported, arguments = exported_program(wrapped, inputs)
    return jax_export.deserialize(bytearray(serialized(exported))), arguments


@dataclass(frozen=True)
class SideBySide:
    """The baseline's and the current program compiled here, ready to be timed against each other (and
    timed again, with a longer budget, without compiling them anew)."""

    run_baseline: Callable[..., Any]
    run_current: Callable[..., Any]
    baseline_arguments: tuple[Any, ...]
    arguments: tuple[Any, ...]
    generated: str
    """Why the baseline runs on generated arrays of its own shapes; empty where it runs on ``arguments``."""
    compile_seconds_baseline: float
    compile_seconds_current: float
    same_program: bool

    def call_baseline(self) -> Any:
        return self.run_baseline(*self.baseline_arguments)

    def call_current(self) -> Any:
        return self.run_current(*self.arguments)


def side_by_side(
    baseline: export.Exported, current: export.Exported, arguments: tuple[Any, ...]
) -> SideBySide:
    """Both programs compiled for ``arguments`` (the baseline for generated arrays of its own shapes where
    its abstract arguments differ). ReplayUnavailable when the baseline cannot run here, ReplayFailed when
    the two do not compile side by side."""
    elsewhere = other_platform(baseline)
    if elsewhere:
        raise ReplayUnavailable(elsewhere)
    if baseline.nr_devices != current.nr_devices:
        raise ReplayUnavailable(
            f"the stored program runs on {baseline.nr_devices} device(s), the current one on "
            f"{current.nr_devices}"
        )
    baseline_arguments, generated = _baseline_arguments(baseline, current, arguments)
    try:
        run_baseline, baseline_compile = _compiled(baseline, baseline_arguments)
    except Exception as error:  # a module this XLA rejects: not comparable, the rest of the gate goes on
        raise ReplayUnavailable(f"the stored program does not compile here: {first_line(error)}") from None
    try:
        run_current, current_compile = _compiled(current, arguments)
        # One compile each, paid from the replay's budget; a ratio beyond the warning line may be a busy
        # moment: both are compiled again, in the opposite order, until it holds or is gone (the faster
        # compile of each kept).
        for _ in range(_COMPILE_CONFIRMATIONS):
            if current_compile <= SLOWER_COMPILE_RATIO * baseline_compile:
                break
            current_compile = min(current_compile, _compiled(current, arguments)[1])
            baseline_compile = min(baseline_compile, _compiled(baseline, baseline_arguments)[1])
    except Exception as error:
        raise ReplayFailed(f"the programs did not compile side by side: {first_line(error)}") from error
    return SideBySide(
        run_baseline=run_baseline,
        run_current=run_current,
        baseline_arguments=baseline_arguments,
        arguments=arguments,
        generated=generated,
        compile_seconds_baseline=baseline_compile,
        compile_seconds_current=current_compile,
        same_program=_fingerprint(run_baseline) == _fingerprint(run_current),
    )


def replay(
    pair: SideBySide,
    config: ReplayConfig | None = None,
    *,
    spent: float = 0.0,
    previous: Replay | None = None,
) -> Replay:
    """Time the current program against the baseline's, interleaved, until the ratio's interval is
    within the target or the budget is spent (``spent`` of it already went to exporting and compiling:
    the timed slots get the rest, and at least the fewest blocks an interval needs). With ``previous``
    (an inconclusive replay of the same pair) its blocks are kept and more are added, timed alike.
    ReplayUnavailable when one call is too slow to replay within the budget, ReplayFailed when a program
    fails while running."""
    # Imported before anything is timed: scipy.stats takes most of a second to import.
    from scipy import stats

    config = config or ReplayConfig()
    t_quantile = functools.partial(stats.t.ppf, 0.5 + _CONFIDENCE / 2)
    began = time.perf_counter()
    sampling_budget = max(config.budget_seconds - spent, 0.0)
    call_baseline, call_current = pair.call_baseline, pair.call_current
    try:
        for _ in range(3):  # first calls allocate, fault pages in: not samples
            _slot(call_baseline, 1)
            _slot(call_current, 1)
        one_call = max(min(_slot(call_baseline, 1), _slot(call_current, 1)), 1e-7)
        calls = max(1, math.ceil(_SLOT_SECONDS / one_call))
        fewest_seconds = _FEWEST_BLOCKS * _MIN_QUADS * 4 * calls * one_call
        if fewest_seconds > _OVERRUN * config.budget_seconds:
            raise ReplayUnavailable(
                f"one call takes {one_call:.3g} s: the fewest quads an interval needs would take "
                f"{fewest_seconds:.3g} s, beyond {_OVERRUN:g}× the budget of {config.budget_seconds:g} s "
                "(--jaxperf-budget, @jaxperf.gate(budget_seconds=…))"
            )
        # Small blocks for a slow program, so that at least _MIN_BLOCKS of them fit the budget; an even
        # number of quads, so that each block holds as many A B B A as B A A B.
        fitting = int(sampling_budget / (_MIN_BLOCKS * 4 * calls * one_call))
        quads_per_block = max(_MIN_QUADS, min(_QUADS_PER_BLOCK, fitting)) // 2 * 2
        block_logs: list[float] = []
        if previous is not None and previous.quads_per_block:
            # Blocks of another size or slot length would estimate another ratio's spread.
            calls, quads_per_block = previous.calls_per_slot, previous.quads_per_block
            block_logs = list(previous.block_logs)
        enough = len(block_logs) + _FEWEST_BLOCKS
        start = time.perf_counter()
        while True:
            # Every other block starts with B A A B: no side owns the slot after the bookkeeping.
            block_logs.append(
                _block(call_baseline, call_current, calls, quads_per_block, len(block_logs) % 2)
            )
            elapsed = time.perf_counter() - start
            # Looked at every third block only: each look is a chance for noise to stop the sampling
            # early on a lucky interval.
            looked = len(block_logs) >= _MIN_BLOCKS and len(block_logs) % 3 == 0
            if looked and _half_width(block_logs, t_quantile) <= config.target:
                break
            if len(block_logs) >= enough and elapsed >= sampling_budget:
                break
    except ReplayUnavailable:
        raise
    except Exception as error:  # out of memory with both programs resident, a shape no longer valid
        raise ReplayFailed(f"the programs failed when run side by side: {first_line(error)}") from error
    centre = statistics.fmean(block_logs)
    half_width = _half_width(block_logs, t_quantile)
    return Replay(
        ratio=math.exp(centre),
        ci_low=math.exp(centre - half_width),
        ci_high=math.exp(centre + half_width),
        blocks=len(block_logs),
        pairs=2 * quads_per_block * len(block_logs),
        calls_per_slot=calls,
        seconds=spent + time.perf_counter() - began + (previous.seconds if previous is not None else 0.0),
        arguments="generated" if pair.generated else "current",
        same_program=pair.same_program,
        compile_seconds_current=pair.compile_seconds_current,
        compile_seconds_baseline=pair.compile_seconds_baseline,
        compile_cache=bool(getattr(jax.config, "jax_compilation_cache_dir", None)),
        note=pair.generated,
        block_logs=tuple(block_logs),
        quads_per_block=quads_per_block,
    )


def _baseline_arguments(
    baseline: export.Exported, current: export.Exported, arguments: tuple[Any, ...]
) -> tuple[tuple[Any, ...], str]:
    """The current arguments where the baseline takes the same abstract values; else generated arrays of
    the baseline's shapes, and a note saying so."""
    ours = [(a.shape, a.dtype) for a in current.in_avals]
    theirs = [(a.shape, a.dtype) for a in baseline.in_avals]
    if ours == theirs and str(baseline.in_tree) == str(current.in_tree):
        return arguments, ""
    if baseline.nr_devices > 1:
        raise ReplayUnavailable(
            "the stored program takes other arguments than the current one, and it is sharded over "
            f"{baseline.nr_devices} devices: no placement to generate them with"
        )
    generator = np.random.default_rng(0)
    leaves = [_generated(generator, aval.shape, aval.dtype) for aval in baseline.in_avals]
    args, kwargs = jax.tree_util.tree_unflatten(baseline.in_tree, leaves)
    if kwargs:
        raise ReplayUnavailable("the stored program takes keyword arguments: not generated")
    changed = _first_difference(theirs, ours)
    return tuple(args), (
        f"its arguments differ from the current ones ({changed}): the baseline program ran on generated "
        "arrays of its own shapes and dtypes"
    )


def _first_difference(theirs: Sequence[tuple[Any, Any]], ours: Sequence[tuple[Any, Any]]) -> str:
    if len(theirs) != len(ours):
        return f"{len(theirs)} arguments stored, {len(ours)} now"
    for index, ((shape_b, dtype_b), (shape_c, dtype_c)) in enumerate(zip(theirs, ours, strict=True)):
        if (shape_b, dtype_b) != (shape_c, dtype_c):
            return f"argument {index}: {dtype_b}{list(shape_b)} stored, {dtype_c}{list(shape_c)} now"
    return "their tree structure differs"


def _generated(generator: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> Any:
    kind = np.dtype(dtype).kind
    if kind == "f" or kind == "V":  # V: bfloat16 and other ml_dtypes floats
        values = generator.standard_normal(shape).astype(np.float32) * 0.1
        return jax.numpy.asarray(values, dtype=dtype)
    return jax.numpy.zeros(shape, dtype=dtype)  # integers as indices: zero is always a valid one


def _compiled(program: export.Exported, arguments: tuple[Any, ...]) -> tuple[Callable[..., Any], float]:
    """The program compiled for these arguments, and the seconds XLA's compile took."""
    lowered = jax.jit(program.call).lower(*arguments)
    start = time.perf_counter()
    compiled = lowered.compile()
    return compiled, time.perf_counter() - start


def _fingerprint(compiled: Any) -> str:
    return normalized_hlo(compiled.as_text() or "")


def _slot(call: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(call())  # type: ignore[no-untyped-call]
    return time.perf_counter() - start


def _block(
    baseline: Callable[[], Any], current: Callable[[], Any], calls: int, quads: int, first: int
) -> float:
    """The log of current / baseline over one block: the median of its quads' ratios, the quads
    alternately A B B A and B A A B (``quads`` even; ``first`` 1 starts with B A A B)."""
    logs = []
    for quad in range(first, first + quads):
        if quad % 2 == 0:
            a1, b1, b2, a2 = (_slot(baseline, calls), _slot(current, calls), _slot(current, calls),
                              _slot(baseline, calls))  # fmt: skip
        else:
            b1, a1, a2, b2 = (_slot(current, calls), _slot(baseline, calls), _slot(baseline, calls),
                              _slot(current, calls))  # fmt: skip
        logs.append(math.log((b1 + b2) / (a1 + a2)))
    return statistics.median(logs)


def _half_width(block_logs: Sequence[float], t_quantile: Callable[[int], float]) -> float:
    """The half-width of the 95% t interval of the mean block log ratio (``t_quantile`` of the degrees of
    freedom)."""
    if len(block_logs) < 2:
        return math.inf
    error = statistics.stdev(block_logs) / math.sqrt(len(block_logs))
    return float(t_quantile(len(block_logs) - 1)) * error
