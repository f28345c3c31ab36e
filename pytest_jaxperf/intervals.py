"""Confidence intervals of medians and of their ratios: the statistics the timing and the gate share.

Pure functions of samples (numpy only): the timing engine stops sampling on :func:`median_ci`, and the
gate judges a change on :func:`ratio_ci`.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence


def median_ci(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median, from binomial order statistics."""
    ordered = sorted(samples)
    n = len(ordered)
    if n < 6:
        return ordered[0], ordered[-1]
    z = 1.959963984540054 if confidence == 0.95 else _z(confidence)
    half = z * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half))
    high = min(n - 1, math.ceil(n / 2 + half))
    return ordered[low], ordered[high]


def _z(confidence: float) -> float:

    return NormalDist().inv_cdf(0.5 + confidence / 2)


def ratio_ci(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    sizes: tuple[int | None, int | None] = (None, None),
) -> tuple[float, float]:
    """Bootstrap confidence interval of median(b) / median(a); the seed keeps verdicts reproducible.

    ``a`` and ``b`` may be sketches (evenly spaced order statistics) of larger samples: ``sizes`` gives
    the real sample counts, and each resample draws that many values (capped at 2000) from the sketch,
    so a 41-point sketch of 10,000 samples is not mistaken for a sample of 41.
    """
    rng = np.random.default_rng(seed)
    sa, sb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na = min(2000, sizes[0] or len(sa))
    nb = min(2000, sizes[1] or len(sb))
    medians_a = np.median(sa[rng.integers(0, len(sa), (resamples, na))], axis=1)
    medians_b = np.median(sb[rng.integers(0, len(sb), (resamples, nb))], axis=1)
    ratios = medians_b / medians_a
    tail = (1 - confidence) / 2
    return float(np.quantile(ratios, tail)), float(np.quantile(ratios, 1 - tail))
