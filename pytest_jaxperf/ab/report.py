"""What ``jaxperf ab`` found: each process's report, the rows and their verdicts, the table it prints."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..comparison import ONLY_IN_A, ONLY_IN_B
from ..units import percent
from ..verdicts import REGRESSED
from .stats import DEFAULT_THRESHOLD, RatioEstimate, ratio_of_medians, ratio_verdict

if TYPE_CHECKING:
    from collections.abc import Sequence

FAILED_ON_A = "failed on A"
FAILED_ON_B = "failed on B"
FAILED_ON_BOTH = "failed on both"
NOT_MEASURED = "not measured"
#: Verdicts that make ``jaxperf ab`` exit 1: the working tree is slower, or breaks a test that passes at base.
FAILING = (REGRESSED, FAILED_ON_B)


# --- what one process of one side reported ---------------------------------------------------------


@dataclass(frozen=True)
class SideRun:
    """One fresh pytest process at one side."""

    side: str
    round: int
    seconds: float
    exitstatus: int
    outcomes: dict[str, tuple[str, str]]
    """Test id → (passed / failed / error / skipped, first line of the failure)."""
    medians: dict[tuple[str, str], float]
    """(test id, measurement key) → median seconds per call."""
    output_tail: str = ""


@dataclass(frozen=True)
class Row:
    """One measurement (or one test, when it has none to compare) and its verdict."""

    nodeid: str
    key: str
    status: str
    reason: str = ""
    a_median: float | None = None
    b_median: float | None = None
    estimate: RatioEstimate | None = None


@dataclass
class AbReport:
    """Everything ``jaxperf ab`` found; ``rows`` is what it prints."""

    base: str
    base_commit: str
    dirty: list[str]
    rounds: int
    threshold: float
    runs: list[SideRun] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failing(self) -> bool:
        return any(row.status in FAILING for row in self.rows)

    @property
    def tests(self) -> int:
        return len({row.nodeid for row in self.rows})

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "base_commit": self.base_commit,
            "dirty": self.dirty,
            "rounds": self.rounds,
            "threshold": self.threshold,
            "seconds": self.seconds,
            "rows": [
                {
                    "nodeid": r.nodeid,
                    "key": r.key,
                    "status": r.status,
                    "reason": r.reason,
                    "a_median": r.a_median,
                    "b_median": r.b_median,
                    "ratio": r.estimate.ratio if r.estimate else None,
                    "ci_low": r.estimate.ci_low if r.estimate else None,
                    "ci_high": r.estimate.ci_high if r.estimate else None,
                }
                for r in self.rows
            ],
            "processes": [
                {"side": r.side, "round": r.round, "seconds": r.seconds, "exitstatus": r.exitstatus}
                for r in self.runs
            ],
        }


# --- the verdicts ------------------------------------------------------------------------------------


def summarize(runs: Sequence[SideRun], threshold: float = DEFAULT_THRESHOLD) -> list[Row]:
    """Rows from the processes of both sides: failures first by test, then each measurement's verdict."""
    a_runs = [r for r in runs if r.side == "A"]
    b_runs = [r for r in runs if r.side == "B"]
    rows: list[Row] = []
    tests = sorted({t for r in runs for t in r.outcomes})
    broken: set[str] = set()
    for test in tests:
        a_seen = [r.outcomes[test] for r in a_runs if test in r.outcomes]
        b_seen = [r.outcomes[test] for r in b_runs if test in r.outcomes]
        if not a_seen or not b_seen:
            status = ONLY_IN_B if not a_seen else ONLY_IN_A
            rows.append(Row(test, "", status, "the test exists (or was selected) on one side only"))
            broken.add(test)
            continue
        a_bad = [o for o in a_seen if o[0] in ("failed", "error")]
        b_bad = [o for o in b_seen if o[0] in ("failed", "error")]
        if a_bad or b_bad:
            status = FAILED_ON_BOTH if a_bad and b_bad else FAILED_ON_B if b_bad else FAILED_ON_A
            reasons = []
            for side, bad, seen in (("A", a_bad, a_seen), ("B", b_bad, b_seen)):
                if bad:
                    reasons.append(f"{side}: {bad[0][0]} in {len(bad)} of {len(seen)} run(s): {bad[0][1]}")
            rows.append(Row(test, "", status, "; ".join(reasons)))
            broken.add(test)
    keys = sorted({k for r in runs for k in r.medians if k[0] not in broken})
    for key in keys:
        pairs = _paired_medians(runs, key)
        if len(pairs) < 2:
            sides = {r.side for r in runs if key in r.medians}
            if len(sides) == 1:
                status = ONLY_IN_A if sides == {"A"} else ONLY_IN_B
                rows.append(Row(*key, status, "the measurement exists on one side only"))
            else:
                rows.append(Row(*key, NOT_MEASURED, f"measured in only {len(pairs)} complete round(s)"))
            continue
        a_medians, b_medians = [p[0] for p in pairs], [p[1] for p in pairs]
        estimate = ratio_of_medians(a_medians, b_medians)
        status = ratio_verdict(estimate, threshold)
        rows.append(
            Row(*key, status, _reason(estimate, threshold), statistics.median(a_medians),
                statistics.median(b_medians), estimate)
        )  # fmt: skip
    measured_tests = {k[0] for k in keys}
    for test in tests:
        if test not in broken and test not in measured_tests:
            skipped = all(r.outcomes.get(test, ("",))[0] == "skipped" for r in runs if test in r.outcomes)
            why = "skipped on both sides" if skipped else "passed, with no jaxperf measurement to compare"
            rows.append(Row(test, "", NOT_MEASURED, why))
    return rows


def _paired_medians(runs: Sequence[SideRun], key: tuple[str, str]) -> list[tuple[float, float]]:
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        if key in run.medians:
            by_round.setdefault(run.round, {})[run.side] = run.medians[key]
    return [(sides["A"], sides["B"]) for _, sides in sorted(by_round.items()) if len(sides) == 2]


def _reason(estimate: RatioEstimate, threshold: float) -> str:
    low, high = percent(estimate.ci_low - 1), percent(estimate.ci_high - 1)
    return (
        f"B/A time {percent(estimate.ratio - 1)} (90% CI {low}…{high}, "
        f"{estimate.rounds} rounds, threshold ±{threshold:.0%})"
    )


def report_rows(report: AbReport) -> list[tuple[str, ...]]:
    """The table ``jaxperf ab`` prints."""
    rows: list[tuple[str, ...]] = [("test", "measurement", "A ms", "B ms", "B/A time", "90% CI", "verdict")]
    for row in report.rows:
        estimate = row.estimate
        rows.append(
            (
                row.nodeid,
                row.key or "-",
                "-" if row.a_median is None else f"{row.a_median * 1e3:.4g}",
                "-" if row.b_median is None else f"{row.b_median * 1e3:.4g}",
                "-" if estimate is None else f"{estimate.ratio:.3f}",
                "-" if estimate is None else f"{estimate.ci_low:.3f}…{estimate.ci_high:.3f}",
                row.status,
            )
        )
    return rows
