"""Means with 95% confidence intervals over seeds (Student t)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (scipy's ``stdtrit``)."""
    # imported here, not at module level: importing scipy costs ~0.2 s, and this module is
    # loaded by every command (experiments aggregate through it) while few need a quantile
    from scipy.special import stdtrit

    return float(stdtrit(df, p))


def mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, lo, hi): mean +- t_{0.975, S-1} * std / sqrt(S). One value gives lo = hi = mean.

    Non-finite values propagate (the interval becomes nan or inf) rather than being dropped.
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values: need at least one value")
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return mean, mean, mean
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    half = t_quantile(0.975, len(vals) - 1) * math.sqrt(var / len(vals))
    return mean, mean - half, mean + half
