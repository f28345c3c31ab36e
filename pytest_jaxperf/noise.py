"""How much a machine moves a timing: the noise floor, from the medians of processes that measured the same
check, and a run's drift, when its timed checks moved together against their baselines. Pure functions of
figures."""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .units import percent

if TYPE_CHECKING:
    from collections.abc import Sequence


def slower_beyond(ci_low: float, limit: float) -> bool:
    """The timing tier's regression: the time ratio's interval lies wholly above ``1 + limit``."""
    return ci_low - 1 > limit


def noise_floor(medians: Sequence[float]) -> float:
    """The spread of medians measured in separate processes, as three processes would show it.

    With three medians it is their range over their median. The range of more of them is wider by
    chance alone (six normal draws span 1.5 times what three do), so a baseline extended with another
    recording would read as noisier the more processes it holds; the range is scaled by the expected
    range of three draws over that of ``n``, which keeps one meaning for every count.
    """
    finite = sorted(m for m in medians if m > 0 and math.isfinite(m))
    if len(finite) < 2:
        return 0.0
    middle = (
        finite[len(finite) // 2]
        if len(finite) % 2
        else (finite[len(finite) // 2 - 1] + finite[len(finite) // 2]) / 2
    )
    return (finite[-1] - finite[0]) / middle * expected_range(3) / expected_range(len(finite))


@functools.cache
def expected_range(n: int) -> float:
    """The expected range of ``n`` standard normal draws (``d2`` of quality control: 1.128 for 2, 1.693
    for 3), by integrating ``1 − Φ(x)ⁿ − (1 − Φ(x))ⁿ`` over x."""
    step, total = 0.01, 0.0
    for i in range(-1000, 1001):
        below = 0.5 * (1 + math.erf(i * step / math.sqrt(2)))
        total += 1 - below**n - (1 - below) ** n
    return total * step


def noise_floor_of_run(floors: Sequence[float]) -> float:
    """The machine's noise floor in one recording: the median of its measurements' own floors."""
    measured = [f for f in floors if f > 0]
    return statistics.median(measured) if len(measured) >= 3 else 0.0


#: Fewest timed checks in a run for their median to speak for the machine rather than for one model.
DRIFT_MIN_CHECKS = 8
#: A median change of the run's checks at least this large is reported as the machine's drift.
DRIFT_REPORTED = 0.05


@dataclass(frozen=True)
class TimedCheck:
    """What :func:`run_drift` needs of one timing verdict."""

    name: str
    ratio: float
    """Current median time / baseline median time."""
    ci_low: float
    limit: float


@dataclass(frozen=True)
class RunDrift:
    """How a run's timed checks moved together against their baselines.

    A baseline is recorded at one time; a shared machine can run everything slower hours later (measured:
    every suite model 12–20% slower three hours on, the code unchanged). The noise floor, from processes
    recorded together, does not cover that, so the gate then flags unchanged models. Most checks moving
    alike points at the machine, not at each model; this is reported beside the verdicts, which it does not
    change: a change that slows every model at once reads the same.
    """

    checks: int
    median_ratio: float
    quartiles: tuple[float, float]
    slower: int
    """Checks whose time interval clears their limit against their baseline (timing regressions)."""
    standing_out: tuple[str, ...]
    """Of those, the checks whose interval clears their limit even against the run's median."""

    def describe(self) -> str:
        low, high = self.quartiles
        direction = "slower" if self.median_ratio > 1 else "faster"
        if self.checks < DRIFT_MIN_CHECKS:
            return (
                f"all {self.checks} timed checks ran {direction} than their baselines (median "
                f"{percent(self.median_ratio - 1)} in time): too few to tell a machine {direction} than when "
                "they were recorded from every model changed at once; the replay's verdicts (a stored "
                "program timed beside the current one) are not moved by the machine"
            )
        return (
            f"the median of {self.checks} timed checks ran {abs(self.median_ratio - 1):.1%} {direction} than "
            f"its baseline (middle half {percent(low - 1)}…{percent(high - 1)} in time): the machine looks "
            f"{direction} than when the baselines were recorded, or every model changed at once"
        )


def run_drift(checks: Sequence[TimedCheck]) -> RunDrift | None:
    """The run's common drift, when there are enough timed checks and their median moved noticeably."""
    ratios = sorted(c.ratio for c in checks if c.ratio > 0 and math.isfinite(c.ratio))
    if len(ratios) < 2:
        return None
    if len(ratios) < DRIFT_MIN_CHECKS:
        # Too few for their median to speak for the machine: said only when every one moved the same way.
        slower_all = all(r >= 1 + DRIFT_REPORTED for r in ratios)
        faster_all = all(1 / r >= 1 + DRIFT_REPORTED for r in ratios)
        if not (slower_all or faster_all):
            return None
    median = statistics.median(ratios)
    if abs(median - 1) < DRIFT_REPORTED and abs(1 / median - 1) < DRIFT_REPORTED:
        return None
    quartiles = statistics.quantiles(ratios, n=4)
    slower = [c for c in checks if slower_beyond(c.ci_low, c.limit)]
    standing_out = tuple(c.name for c in slower if slower_beyond(c.ci_low / median, c.limit))
    return RunDrift(len(ratios), median, (quartiles[0], quartiles[2]), len(slower), standing_out)
