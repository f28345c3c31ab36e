"""B's time against A's from the rounds' medians, and the verdict on it: pure functions."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..verdicts import IMPROVED, INCONCLUSIVE, PASS, REGRESSED

if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_THRESHOLD = 0.05
#: The interval printed; its lower end is the one-sided 95% bound that ``regressed`` needs.
CONFIDENCE = 0.90


@dataclass(frozen=True)
class RatioEstimate:
    """B's time relative to A's from rounds that ran back to back."""

    ratio: float
    """Geometric mean over rounds of median(B) / median(A): below 1, B is faster."""
    ci_low: float
    ci_high: float
    rounds: int


def ratio_of_medians(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> RatioEstimate:
    """B/A from the processes' medians: the ratio of their geometric means, and Welch's t interval on the
    log medians. The processes, not the samples, are the replicates: samples inside one process share its
    offset (memory layout, scheduling), which moves a median by 3–6 % from one process to the next.

    The interval is the two-sample one, not the paired one: measured on a 2-core runner, A's and B's offsets
    in one round are independent, so pairing buys nothing and would halve the degrees of freedom; the
    alternating order (A B, B A, …) still keeps a drift of the machine from favouring either side.
    """
    # Imported here, not at the top: scipy.stats takes most of a second to import, and a misused
    # ``jaxperf ab`` (a revision that does not exist, no git) fails before any interval is computed.
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"ratio_of_medians needs at least 2 rounds per side, got {len(a)} and {len(b)}")
    log_a, log_b = [math.log(x) for x in a], [math.log(y) for y in b]
    difference = statistics.fmean(log_b) - statistics.fmean(log_a)
    var_a, var_b = statistics.variance(log_a) / len(a), statistics.variance(log_b) / len(b)
    spread = math.sqrt(var_a + var_b)
    if spread == 0:
        return RatioEstimate(
            math.exp(difference), math.exp(difference), math.exp(difference), min(len(a), len(b))
        )
    # Welch–Satterthwaite degrees of freedom.
    freedom = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    t = float(stats.t.ppf(0.5 + confidence / 2, freedom))
    return RatioEstimate(
        math.exp(difference),
        math.exp(difference - t * spread),
        math.exp(difference + t * spread),
        min(len(a), len(b)),
    )


def ratio_verdict(estimate: RatioEstimate, threshold: float = DEFAULT_THRESHOLD) -> str:
    """The verdict on B/A: regressed, improved, inconclusive or pass.

    Regressed: the ratio beyond the threshold and the interval wholly above 1 (B slower with 95%
    confidence, one-sided). A change inside the threshold passes however sure it is; a large one whose
    interval still reaches 1 is inconclusive. The threshold is what keeps unchanged code from failing:
    on a 2-core runner the rounds' B/A moves by about 3.4% (sd), so 5 rounds put 5% at 3.3 standard errors."""
    if estimate.ratio - 1 > threshold:
        return REGRESSED if estimate.ci_low > 1 else INCONCLUSIVE
    if 1 / estimate.ratio - 1 > threshold:
        return IMPROVED if estimate.ci_high < 1 else INCONCLUSIVE
    return PASS
