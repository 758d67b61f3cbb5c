"""Means with 95% confidence intervals over seeds (Student t)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, lo, hi): mean +- t_{0.975, S-1} * std / sqrt(S). One value gives lo = hi = mean.

    Non-finite values propagate (the interval becomes nan) rather than being dropped.
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values: need at least one value")
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return mean, mean, mean
    from scipy import stats  # lazy: scipy.stats costs ~0.5 s of import time

    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    half = stats.t.ppf(0.975, len(vals) - 1) * math.sqrt(var / len(vals))
    return mean, mean - half, mean + half
