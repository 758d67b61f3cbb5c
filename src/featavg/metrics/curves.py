"""Statistics of robustness curves, each defined once.

A robust-accuracy curve is acc(eps) on a grid of radii (PGD: an upper bound on robustness;
certified: from exact per-point radii r*(x), acc(eps) = fraction with r*(x) > eps).

* :func:`radius50_grid`: the smallest GRID radius with acc < 1/2 (inf if none);
* :func:`crossing_radius`: the same crossing, linearly interpolated between grid points;
* :func:`median_radius`: the median of per-point radii, where a certified curve crosses 1/2;
* :func:`certified_accuracy`: the certified curve of per-point radii on a grid;
* :func:`loglog_slope`: the fitted exponent of a radius against k or d.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

Values = Sequence[float] | torch.Tensor | np.ndarray


def _as_array(values: Values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64)
    return np.asarray(values, dtype=np.float64).reshape(-1)


def radius50_grid(radii: Values, acc: Values) -> float:
    """The smallest radius on the grid ``radii`` (any order) at which the robust accuracy
    ``acc`` is below 0.5, as a float; ``math.inf`` if it never falls below 0.5 on the grid
    (so it sorts and plots as "beyond the grid" and survives JSON as Infinity)."""
    r, a = _as_array(radii), _as_array(acc)
    if r.shape != a.shape:
        raise ValueError(f"radii and acc: need one accuracy per radius, got {r.size}, {a.size}")
    below = r[a < 0.5]
    return float(below.min()) if below.size else math.inf


def crossing_radius(radii: Values, acc: Values, level: float = 0.5) -> float:
    """The radius where a robust-accuracy curve on an increasing grid first falls below
    ``level``, linearly interpolated between the grid points around it (a continuous
    :func:`radius50_grid`); the first radius if acc starts below ``level``; inf if it never
    falls below."""
    r, a = _as_array(radii), _as_array(acc)
    below = np.nonzero(a < level)[0]
    if below.size == 0:
        return math.inf
    j = int(below[0])
    if j == 0:
        return float(r[0])
    a0, a1 = a[j - 1], a[j]
    return float(r[j - 1] + (a0 - level) / (a0 - a1) * (r[j] - r[j - 1]))


def median_radius(radii: Values) -> float:
    """Median of per-point radii r*(x): the middle value, or the mean of the two middle
    values for an even count (as numpy.median and statistics.median); inf entries (points
    that cannot flip) allowed. For exact radii it is where certified accuracy crosses 1/2;
    inf when most points cannot flip."""
    r = _as_array(radii)
    if r.size == 0:
        raise ValueError("radii: need at least one radius")
    return float(np.median(r))


def certified_accuracy(radii: Values, grid: Values) -> torch.Tensor:
    """(R,) float64 fraction of points provably robust at each radius eps of ``grid``:
    r*(x) > eps (a tie flips), from per-point exact radii ``radii`` (B,)."""
    r = torch.as_tensor(radii, dtype=torch.float64).flatten().cpu()
    eps = torch.as_tensor(grid, dtype=torch.float64).flatten().cpu()
    return (r[None, :] > eps[:, None]).to(torch.float64).mean(1)


def loglog_slope(x: Values, y: Values) -> float:
    """Least-squares slope of log y against log x, over the points where both logs are
    finite (x, y > 0 and finite); nan if fewer than 2 such points."""
    xs, ys = _as_array(x), _as_array(y)
    ok = (xs > 0) & (ys > 0) & np.isfinite(xs) & np.isfinite(ys)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(xs[ok]), np.log(ys[ok]), 1)[0])
