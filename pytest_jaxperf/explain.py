"""Why a check's time changed: the baseline's optimized program against the current one, and, both
profiled in this process, the ops that added the time.

With a replayed baseline both programs are already compiled side by side (``core.replay.SideBySide``):
the explanation reads their HLO and profiles their calls, in alternating runs as the replay times them.
Without a stored program it compares the figures the baseline recorded (op counts, bytes) and says what
it lacks.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from .core.hlo import Inventory, ProgramChange, inventory, program_changes
from .core.memory import MemoryAnalysisUnavailable, compiled_memory
from .core.profile import ProfilerUnavailable, calls_to_profile, op_seconds, seconds_to_profile
from .core.timing import timed_call
from .records import ExplanationRecord, OpTimeRecord, counts_bytes
from .units import format_bytes

if TYPE_CHECKING:
    from .core.replay import SideBySide
    from .records import MetricsRecord

#: Ops kept in the time breakdown: those whose time changed most.
OPS_LISTED = 10
#: Profiled runs, two of each program (A B B A).
PROFILED_RUNS = 4
#: The time breakdown may take this many sampling budgets at most; a slower program gets none, saying why.
BUDGETS_FOR_PROFILING = 3.0
#: The figures a baseline records that show a program change, compared where no program is stored.
_RECORDED_FIGURES = (
    ("hlo_ops", "ops"),
    ("hlo_fusions", "fusions"),
    ("hlo_custom_calls", "custom calls"),
    ("argument_bytes", "parameter bytes"),
    ("temp_bytes", "temporary bytes"),
    ("bytes_accessed", "bytes accessed"),
    ("flops", "flops"),
)


def explain_replayed(pair: SideBySide, budget_seconds: float) -> ExplanationRecord:
    """The two programs of a replay compared, their HLO and their per-op times (profiled within a few
    times ``budget_seconds``, the check's sampling budget)."""
    began = time.perf_counter()
    explanation, baseline, current = _compared(pair.run_baseline, pair.run_current, pair.same_program)
    if pair.same_program:
        explanation["no_time_breakdown"] = (
            "the same program on both sides: its ops' times differ by noise only"
        )
    else:
        try:
            explanation["op_times"] = _op_times(pair, baseline, current, budget_seconds)
        except ProfilerUnavailable as error:
            explanation["no_time_breakdown"] = str(error)
    explanation["seconds"] = time.perf_counter() - began
    return explanation


def explain_compiled(baseline: Any, current: Any, why_not_replayed: str) -> ExplanationRecord:
    """Where the baseline's stored program compiles here but was not replayed (the current program
    cannot be exported, say): the two optimized programs compared, without a time breakdown."""
    began = time.perf_counter()
    explanation, _, _ = _compared(baseline, current, same_program=False)
    explanation["no_time_breakdown"] = f"the programs were not run side by side: {why_not_replayed}"
    explanation["seconds"] = time.perf_counter() - began
    return explanation


def _compared(
    baseline: Any, current: Any, same_program: bool
) -> tuple[ExplanationRecord, Inventory, Inventory]:
    """Two compiled programs' HLO compared: the explanation's program part, and both inventories."""
    theirs, ours = inventory(_text(baseline)), inventory(_text(current))
    changes = program_changes(theirs, ours, baseline_bytes=_bytes(baseline), current_bytes=_bytes(current))
    explanation = ExplanationRecord(
        headline=_headline(changes, same_program=same_program),
        program_changes=[change.to_dict() for change in changes],
        counts={"baseline": theirs.counts, "current": ours.counts},
    )
    return explanation, theirs, ours


def explain_recorded(
    why_no_program: str, baseline: MetricsRecord | None, current: MetricsRecord | None
) -> ExplanationRecord:
    """Where the baseline's program cannot be compiled here: what it lacks, and the figures the baseline
    recorded against the current ones."""
    began = time.perf_counter()
    changes: list[ProgramChange] = []
    if baseline is not None and current is not None:
        for field, kind in _RECORDED_FIGURES:
            before, after = baseline.get(field), current.get(field)
            if not isinstance(before, int | float) or not isinstance(after, int | float) or before == after:
                continue
            shown = format_bytes if counts_bytes(kind) else _count
            changes.append(
                ProgramChange(
                    kind,
                    f"{kind}: {shown(before)} → {shown(after)}",
                    int(before),
                    int(after),
                    int(abs(after - before)) if counts_bytes(kind) else 0,
                )
            )
    # Bytes first (the ranking of program changes), then the counts in the order listed above.
    changes.sort(key=lambda change: -change.bytes)
    compared = "the figures the baseline recorded" if baseline is not None else "nothing: no figures recorded"
    explanation = ExplanationRecord(
        no_program=f"{why_no_program}; compared {compared}",
        program_changes=[change.to_dict() for change in changes],
        no_time_breakdown="no baseline program to profile beside the current one",
    )
    if changes:
        explanation["headline"] = f"the program changed: {changes[0].description}"
    elif baseline is not None:
        explanation["headline"] = "the recorded figures of the program are unchanged"
    explanation["seconds"] = time.perf_counter() - began
    return explanation


def _headline(changes: list[ProgramChange], *, same_program: bool) -> str:
    if same_program or not changes:
        return (
            "the same optimized program as the baseline's: the time changed outside it "
            "(the machine, the placement of the inputs, the Python around the call)"
        )
    return f"the program changed: {changes[0].description}"


def _text(compiled: Any) -> str:
    return str(compiled.as_text() or "")


def _bytes(compiled: Any) -> dict[str, int]:
    try:
        breakdown = compiled_memory(compiled)
    except MemoryAnalysisUnavailable:
        return {}
    return {"parameter bytes": breakdown.arguments, "temporary bytes": breakdown.temporaries}


def _op_times(
    pair: SideBySide, baseline: Inventory, current: Inventory, budget_seconds: float
) -> list[OpTimeRecord]:
    """Each op's time per call in both programs, matched by what it computes (XLA may name the same
    fusion differently in each): the ops that added most time first, each with its share of it.
    ProfilerUnavailable where the profiler cannot run, or where the runs would overrun the budget."""
    one_call = max(timed_call(pair.call_baseline)[1], timed_call(pair.call_current)[1])
    needed = seconds_to_profile(one_call, PROFILED_RUNS)
    if needed > BUDGETS_FOR_PROFILING * budget_seconds:
        raise ProfilerUnavailable(
            f"one call takes {one_call:.3g} s: profiling both programs would take {needed:.3g} s, beyond "
            f"{BUDGETS_FOR_PROFILING:g}× the budget of {budget_seconds:g} s (--jaxperf-budget)"
        )
    calls = calls_to_profile(one_call)
    # A B B A: a machine that slows down during the runs slows both alike.
    runs = [
        (op_seconds(pair.call_baseline, calls), op_seconds(pair.call_current, calls)),
        (op_seconds(pair.call_current, calls), op_seconds(pair.call_baseline, calls)),
    ]
    baseline_by = _by_description([runs[0][0], runs[1][1]], baseline)
    current_by = _by_description([runs[0][1], runs[1][0]], current)
    # The current program's name where both have the op (the later entry wins).
    names = {kernel.description: kernel.name for kernel in (*baseline.kernels, *current.kernels)}
    delta = {
        description: current_by.get(description, 0.0) - baseline_by.get(description, 0.0)
        for description in set(baseline_by) | set(current_by)
    }
    grown = sum(change for change in delta.values() if change > 0)
    ranked = sorted(delta, key=lambda description: -delta[description])[:OPS_LISTED]
    return [
        OpTimeRecord(
            op=names.get(description, description),
            description=description,
            baseline_seconds=baseline_by.get(description, 0.0),
            current_seconds=current_by.get(description, 0.0),
            share=delta[description] / grown if grown > 0 and delta[description] > 0 else None,
        )
        for description in ranked
    ]


def _by_description(runs: list[dict[str, float]], program: Inventory) -> dict[str, float]:
    """Seconds per call by kernel description, averaged over the runs (an op the inventory does not know,
    a backend's own thunk, keeps its name)."""
    totals: dict[str, float] = defaultdict(float)
    for run in runs:
        for name, seconds in run.items():
            kernel = program.kernel_named(name)
            if kernel is not None and kernel.container:
                continue  # its events span its body's, which are counted themselves
            totals[kernel.description if kernel else name] += seconds / len(runs)
    return dict(totals)


def _count(value: float) -> str:
    return f"{value:,.0f}"
