"""Verdicts: a measurement against its baseline. Pure functions of data.

Two tiers. The deterministic tier compares what the compiler reports (compiles, FLOPs, bytes accessed,
memory): exact, so a small tolerance suffices and it holds even on a noisy runner. The timing tier compares
the ratio of medians, with a bootstrap confidence interval, against ``max(threshold, k × noise floor)``,
where the noise floor is the spread of medians across the processes that recorded the baseline: a run on
a shared machine moves by more than its own samples show, and only the spread across processes says by how
much.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .intervals import ratio_ci
from .noise import slower_beyond
from .records import CheckRecord, ReplayRecord, VerdictRecord
from .units import percent

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

PASS = "pass"
REGRESSED = "regressed"
IMPROVED = "improved"
INCONCLUSIVE = "inconclusive"
NEW = "new"
NOT_COMPARABLE = "not comparable"
#: The test around a measurement failed: what it measured is no result, neither judged nor recorded.
TEST_FAILED = "test failed"

DEFAULT_THRESHOLD = 0.10
#: The threshold of a check judged by replaying its baseline's program: the two programs share the
#: process and the machine's mood, so a much smaller change stands out of the noise.
REPLAY_THRESHOLD = 0.05

#: Which tier's figures gave a verdict its status.
DECIDED_BY_EXACT = "exact"
DECIDED_BY_REPLAY = "replay"
DECIDED_BY_CROSS_PROCESS = "cross-process"
#: How many noise floors a change must clear: the floor is a range over a few processes, not a bound.
NOISE_MULTIPLE = 3.0
#: Relative tolerance of the deterministic tier (FLOP counts move by a few ops with an XLA update).
DETERMINISTIC_TOLERANCE = 0.01

#: Deterministic metrics that must not grow, and how they read in a message.
GATED_METRICS = {
    "flops": "FLOPs",
    "bytes_accessed": "bytes accessed",
    "memory_bytes": "memory (arguments + outputs + temporaries)",
}
#: The gated figures that XLA's cost analysis reads from the program before it is optimized: an op XLA
#: removes (an optimization barrier) still counts there. Memory comes from the compiled program.
BEFORE_OPTIMIZATION = ("flops", "bytes_accessed")


@dataclass(frozen=True)
class Verdict:
    """The gate's word on one measurement."""

    status: str
    reason: str = ""
    ratio: float | None = None
    """Current median time / baseline median time."""
    ci_low: float | None = None
    ci_high: float | None = None
    limit: float | None = None
    deterministic: tuple[str, ...] = ()
    """Deterministic changes found (regressions or improvements), one line each."""
    regressed_exactly: bool = False
    """Whether a deterministic figure regressed: the program's doing, whatever the machine's speed."""
    decided_by: str = ""
    """``exact``, ``replay`` or ``cross-process``; empty where nothing was compared (new, not comparable)."""
    cross_process: str = ""
    """The cross-process tier's own status where another tier decided; ``not compared`` where it was not."""
    detectable: float | None = None
    """The smallest slowdown the deciding timing tier can call a regression (None: no timing compared)."""
    threshold: float | None = None
    recorded_elsewhere: str = ""

    def to_dict(self) -> VerdictRecord:
        record = VerdictRecord(
            status=self.status,
            reason=self.reason,
            ratio=self.ratio,
            ci_low=self.ci_low,
            ci_high=self.ci_high,
            limit=self.limit,
            deterministic=list(self.deterministic),
            regressed_exactly=self.regressed_exactly,
        )
        if self.decided_by:
            record["decided_by"] = self.decided_by
        if self.cross_process:
            record["cross_process"] = self.cross_process
        if self.threshold is not None:
            record["detectable"] = self.detectable
            record["threshold"] = self.threshold
        if self.recorded_elsewhere:
            record["recorded_elsewhere"] = self.recorded_elsewhere
        return record

    @property
    def fails(self) -> bool:
        return self.status == REGRESSED


def _format_count(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"


def deterministic_changes(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    tolerance: float = DETERMINISTIC_TOLERANCE,
    *,
    reference: str = "baseline",
    same_program: bool = False,
) -> tuple[list[str], list[str], list[str]]:
    """(regressions, improvements, set aside) among compiles and GATED_METRICS; all exact figures. With
    ``same_program`` (the optimized programs are the same), the figures read before optimization are set
    aside, whichever way they moved."""
    regressions: list[str] = []
    improvements: list[str] = []
    set_aside: list[str] = []
    now, before = current.get("compiles"), baseline.get("compiles")
    if isinstance(now, int) and isinstance(before, int) and now != before:
        (regressions if now > before else improvements).append(f"compiles {now} vs {reference} {before}")
    for key, label in GATED_METRICS.items():
        now, before = (current.get("metrics") or {}).get(key), (baseline.get("metrics") or {}).get(key)
        if not isinstance(now, int | float) or not isinstance(before, int | float) or before <= 0:
            continue
        change = now / before - 1
        if abs(change) > tolerance:
            line = f"{label} {_format_count(now)} vs {reference} {_format_count(before)} ({percent(change)})"
            if same_program and key in BEFORE_OPTIMIZATION:
                set_aside.append(line)
            else:
                (regressions if change > 0 else improvements).append(line)
    return regressions, improvements, set_aside


def timing_verdict(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    ratio_ci: tuple[float, float],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    reference: str = "baseline",
) -> Verdict:
    """Timing tier: ``current`` and ``baseline`` hold ``median`` (s per call) and ``items_per_call``."""
    noise = float(baseline.get("noise_floor") or 0.0)
    limit = max(threshold, NOISE_MULTIPLE * noise)
    ratio = current["median"] / baseline["median"]
    low, high = ratio_ci
    reason = _timing_reason(current, baseline, ratio, low, high, limit, reference)
    if slower_beyond(low, limit):
        status = REGRESSED
    elif high - 1 < -limit / (1 + limit):
        # Faster beyond the same limit expressed the other way: 1/(1+limit) of the baseline time.
        status = IMPROVED
    elif high - 1 <= limit and low - 1 >= -limit / (1 + limit):
        status = PASS
    else:
        status = INCONCLUSIVE
    return Verdict(status, reason, ratio, low, high, limit)


def _timing_reason(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    ratio: float,
    low: float,
    high: float,
    limit: float,
    reference: str,
) -> str:
    items = int(current.get("items_per_call") or 1)
    if items > 1:
        # Throughput reads the other way round: a slowdown is a drop.
        now, before = items / current["median"], items / baseline["median"]
        return (
            f"throughput {now:.4g} items/s vs {reference} {before:.4g} ({percent(1 / ratio - 1)}, "
            f"95% CI {percent(1 / high - 1)}…{percent(1 / low - 1)}, "
            f"limit {percent(-limit / (1 + limit))})"
        )
    return (
        f"median {current['median'] * 1e3:.4g} ms vs {reference} {baseline['median'] * 1e3:.4g} ms "
        f"({percent(ratio - 1)}, 95% CI {percent(low - 1)}…{percent(high - 1)}, limit {percent(limit)})"
    )


@dataclass(frozen=True)
class ReplayFigures:
    """What the verdict needs of a replay: the current / baseline program time ratio and its interval."""

    ratio: float
    ci_low: float
    ci_high: float
    blocks: int
    same_program: bool

    @classmethod
    def from_record(cls, record: ReplayRecord) -> ReplayFigures:
        """The figures of a measured replay's record (one with a ``ratio``)."""
        return cls(
            record["ratio"], record["ci_low"], record["ci_high"], record["blocks"], record["same_program"]
        )


@dataclass(frozen=True)
class Comparability:
    """Which tiers a baseline recorded elsewhere may still be compared in (see ``baseline.portability``)."""

    times: bool = True
    """The cross-process tier: absolute times, only on the very machine and software."""
    exact: bool = True
    """The exact tier: compiles, FLOPs, bytes and memory, the same for one jax and XLA on any CPU model."""
    why_not: str = ""


def replay_status(figures: ReplayFigures, threshold: float) -> str:
    """The replay tier's status. Two identical optimized programs cannot differ: their ratio is noise,
    and they pass. Otherwise regressed when the ratio is more than half the threshold above 1 and its 95%
    interval excludes 1 (the replay samples until its interval is within a quarter of the threshold, so a
    slowdown of the threshold's size is caught); pass when the interval rules out a change of the
    threshold's size; the same rule the other way for improved; inconclusive otherwise."""
    if figures.same_program:
        return PASS
    slower = figures.ratio - 1 > threshold / 2 and figures.ci_low > 1
    faster = 1 / figures.ratio - 1 > threshold / 2 and figures.ci_high < 1
    if slower:
        return REGRESSED
    if faster:
        return IMPROVED
    if figures.ci_high - 1 <= threshold and 1 / figures.ci_low - 1 <= threshold:
        return PASS
    return INCONCLUSIVE


def _replay_reason(figures: ReplayFigures, threshold: float) -> str:
    reason = (
        f"replay {percent(figures.ratio - 1)} against the baseline's own program in this process "
        f"(95% CI {percent(figures.ci_low - 1)}…{percent(figures.ci_high - 1)}, {figures.blocks} blocks, "
        f"threshold {percent(threshold)})"
    )
    if figures.same_program:
        reason += " — the same optimized program as the baseline: the replay ratio measures only noise"
    return reason


def verdict(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    current_samples: Sequence[float],
    baseline_samples: Sequence[float],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    reference: str = "baseline",
    replay: ReplayFigures | None = None,
    replay_threshold: float = REPLAY_THRESHOLD,
    comparability: Comparability | None = None,
) -> Verdict:
    """Every tier that can compare: a deterministic regression fails whatever the timing says; else the
    replay decides where there is one, else the cross-process timing."""
    comparable = comparability or Comparability()
    judged = _judged(current, baseline, current_samples, baseline_samples, threshold, reference, replay,
                     replay_threshold, comparable)  # fmt: skip
    detectable: float | None = replay_threshold if replay is not None else judged.limit
    given = replay_threshold if replay is not None else threshold
    return dataclasses.replace(
        judged, detectable=detectable, threshold=given, recorded_elsewhere=comparable.why_not
    )


def _judged(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    current_samples: Sequence[float],
    baseline_samples: Sequence[float],
    threshold: float,
    reference: str,
    replay: ReplayFigures | None,
    replay_threshold: float,
    comparable: Comparability,
) -> Verdict:
    same_program = replay is not None and replay.same_program
    # Where the replay found the optimized programs the same, what only the program before XLA's
    # optimizations shows is not the program's doing; compiles and memory (of the check's own compiled
    # program, its donations included, which the replayed export does not carry) still are.
    regressions, improvements, moved = (
        deterministic_changes(current, baseline, reference=reference, same_program=same_program)
        if comparable.exact
        else ([], [], [])
    )
    unoptimized = ""
    if moved:
        unoptimized = (
            f" — {'; '.join(moved)} before XLA optimized the program, which came out the baseline's: "
            "not a change of the program"
        )
    timing: Verdict | None = None
    if comparable.times and baseline_samples and current_samples and baseline.get("median"):
        sizes = (baseline.get("sample_count"), current.get("sample_count"))
        interval = ratio_ci(baseline_samples, current_samples, sizes=sizes)
        timing = timing_verdict(current, baseline, interval, threshold=threshold, reference=reference)
    cross_reason = (
        timing.reason
        if timing
        else (
            f"absolute times not compared ({comparable.why_not})"
            if comparable.why_not
            else "no timing to compare"
        )
    )
    cross_fields = (timing.ratio, timing.ci_low, timing.ci_high, timing.limit) if timing else (None,) * 4
    if regressions:
        measured = f"{_replay_reason(replay, replay_threshold)}; cross-process: " if replay else ""
        return Verdict(
            REGRESSED,
            "; ".join(regressions) + f" — {measured}{cross_reason}",
            *cross_fields,
            tuple(regressions + improvements),
            regressed_exactly=True,
            decided_by=DECIDED_BY_EXACT,
            cross_process=timing.status if timing else NOT_COMPARED,
        )
    if replay is not None:
        status = replay_status(replay, replay_threshold)
        reason = f"{_replay_reason(replay, replay_threshold)}; cross-process: {cross_reason}{unoptimized}"
        if replay.same_program and timing is not None and timing.status == REGRESSED:
            reason += (
                " — the program is the baseline's, so that slowdown comes from outside it "
                "(Python around the call, the inputs' placement, or the machine)"
            )
        return Verdict(
            status,
            reason,
            *cross_fields,
            tuple(improvements),
            decided_by=DECIDED_BY_REPLAY,
            cross_process=timing.status if timing else NOT_COMPARED,
        )
    if timing is None and not comparable.exact:
        # Another jax and nothing replayed: no tier compared anything, and a pass would say otherwise.
        return Verdict(NOT_COMPARABLE, f"baseline {comparable.why_not}: exact figures and absolute times not "
                       "compared, and no stored program was replayed")  # fmt: skip
    if timing is None:
        return Verdict(PASS, cross_reason, deterministic=tuple(improvements), decided_by=DECIDED_BY_EXACT)
    return Verdict(
        timing.status, timing.reason, *cross_fields, tuple(improvements), decided_by=DECIDED_BY_CROSS_PROCESS
    )


#: A tier that was not compared (a baseline recorded on another CPU model has no comparable times).
NOT_COMPARED = "not compared"


def of_failed_test(record: CheckRecord, *, recording: bool) -> CheckRecord:
    """``record`` marked as measured by a test that failed: its verdict says so, whatever it was, but for
    a regression outside a recording, which is what failed the test (no verdict fails a test while
    baselines are recorded)."""
    if not recording and record.verdict is not None and record.verdict["status"] == REGRESSED:
        return record
    was = f" (its measurement alone: {record.verdict['status']})" if record.verdict else ""
    verdict: VerdictRecord = {
        "status": TEST_FAILED,
        "reason": f"the test failed{was}: a failed test's measurements are no result, and never a baseline",
        "ratio": None,
        "ci_low": None,
        "ci_high": None,
        "limit": None,
        "deterministic": [],
        "regressed_exactly": False,
    }
    return dataclasses.replace(record, verdict=verdict)
