"""Log-log slopes of a robustness radius against k or d, and the 50% radius of a curve."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def crossing_radius(radii: Sequence[float], acc: Sequence[float], level: float = 0.5) -> float:
    """The radius where a robust-accuracy curve first falls below ``level``, linearly
    interpolated between grid points (a continuous radius50); inf if it never does."""
    r, a = np.asarray(radii, dtype=float), np.asarray(acc, dtype=float)
    below = np.nonzero(a < level)[0]
    if below.size == 0:
        return math.inf
    j = int(below[0])
    if j == 0:
        return float(r[0])
    a0, a1 = a[j - 1], a[j]
    return float(r[j - 1] + (a0 - level) / (a0 - a1) * (r[j] - r[j - 1]))


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x (nan if fewer than 2 finite points)."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    ok = np.isfinite(lx) & np.isfinite(ly)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(lx[ok], ly[ok], 1)[0])
