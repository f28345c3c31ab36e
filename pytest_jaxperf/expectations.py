"""Timing expectations judged on evidence: a figure with its 95% interval held to "at least so much".

The expectation is false only where the whole interval lies below it; where the interval straddles it (a
busy machine, a difference too small to tell in the budget), nothing is decided and a
:class:`~pytest_jaxperf.gating.JaxperfInconclusive` warning gives the figures. Pytest-free: a false
expectation raises :class:`~pytest_jaxperf.errors.CaseFailed`, for the fixture to turn into the outcome.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

from .core.timing import FALSE, INCONCLUSIVE_EVIDENCE, evidence
from .errors import CaseFailed
from .gating import JaxperfInconclusive

if TYPE_CHECKING:
    from .core.timing import Comparison


def hold_at_least(measured: tuple[float, float, float], expected: float, what: str, details: str = "") -> str:
    """``measured`` (value, low, high) against "at least ``expected``": ``holds``, ``inconclusive`` (warned)
    or CaseFailed; ValueError for an expectation or a figure that is no finite number."""
    value, low, high = measured
    if not all(math.isfinite(x) for x in (expected, value, low, high)):
        raise ValueError(f"{what}: expected {expected!r} and figures {measured!r} must be finite numbers")
    figures = f"{what}: {value:.3f} (95% CI {low:.3f}…{high:.3f}), expected at least {expected:g}"
    verdict = evidence(low, high, expected)
    if verdict == FALSE:
        raise CaseFailed(figures + (f"\n{details}" if details else ""))
    if verdict == INCONCLUSIVE_EVIDENCE:
        # The test's line: here ← Jaxperf.expect_* ← the test.
        warnings.warn(JaxperfInconclusive(f"inconclusive: {figures}"), stacklevel=3)
    return verdict


def speedup(comparison: Comparison) -> tuple[float, float, float]:
    """B's speed-up over A in a comparison (A's time / B's), with its interval."""
    return 1 / comparison.ratio, 1 / comparison.ci_high, 1 / comparison.ci_low
