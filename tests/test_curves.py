"""featavg.metrics.curves against independent references: numpy / statistics medians, an
np.interp crossing, scipy's linregress slope and a brute-force certified curve."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch
from scipy import stats

from featavg.metrics.curves import (
    certified_accuracy,
    crossing_radius,
    loglog_slope,
    median_radius,
    radius50_grid,
)

RNG = np.random.default_rng(0)


def interp_crossing(radii, acc, level=0.5):
    """Reference: the first grid interval where acc drops below level, crossed by np.interp
    on that interval (acc falls there, so -acc is increasing)."""
    acc = list(acc)
    for j, a in enumerate(acc):
        if a < level:
            if j == 0:
                return float(radii[0])
            seg_a, seg_r = [-acc[j - 1], -a], [radii[j - 1], radii[j]]
            return float(np.interp(-level, seg_a, seg_r))
    return math.inf


# ------------------------------------------------------------------ radius50_grid


def test_radius50_grid_is_the_smallest_grid_radius_below_half():
    eps = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert radius50_grid(eps, [1.0, 0.6, 0.5, 0.2]) == 3.0  # 0.5 is not below 0.5
    assert radius50_grid(eps, [1.0, 0.9, 0.8, 0.7]) == math.inf
    assert radius50_grid([2.0, 0.0, 1.0], [0.1, 1.0, 0.4]) == 1.0  # unsorted grid
    assert radius50_grid([0.0, 1.0], torch.tensor([0.3, 0.1], dtype=torch.float64)) == 0.0
    assert isinstance(radius50_grid([0.0, 1.0], [1.0, 0.0]), float)
    with pytest.raises(ValueError, match="one accuracy per radius"):
        radius50_grid([0.0, 1.0], [1.0])


def test_radius50_grid_against_a_brute_force_minimum():
    for _ in range(50):
        radii = RNG.permutation(np.linspace(0, 10, 11))
        acc = RNG.uniform(size=11)
        below = [r for r, a in zip(radii, acc, strict=True) if a < 0.5]
        assert radius50_grid(radii.tolist(), acc.tolist()) == (min(below) if below else math.inf)


# ------------------------------------------------------------------ crossing_radius


def test_crossing_radius_interpolates():
    assert crossing_radius([0, 1, 2, 3], [1.0, 0.9, 0.3, 0.0]) == pytest.approx(1 + 0.4 / 0.6)
    assert crossing_radius([0, 1], [1.0, 0.6]) == math.inf
    assert crossing_radius([0, 1], [0.2, 0.0]) == 0


@pytest.mark.parametrize("level", [0.5, 0.25, 0.9])
def test_crossing_radius_matches_np_interp(level):
    for _ in range(50):
        radii = np.sort(RNG.uniform(0, 30, size=8))
        acc = np.sort(RNG.uniform(size=8))[::-1]  # a falling curve
        got = crossing_radius(radii.tolist(), acc.tolist(), level)
        want = interp_crossing(radii, acc, level)
        assert got == pytest.approx(want, rel=1e-12) if math.isfinite(want) else got == want
        # the crossing is bracketed by the grid value
        assert got <= radius50_grid(radii, acc) or level != 0.5


# ------------------------------------------------------------------ median_radius


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 100, 101])
def test_median_radius_matches_numpy_and_statistics(n):
    values = RNG.exponential(3.0, size=n)
    values[RNG.uniform(size=n) < 0.2] = math.inf  # points that cannot flip
    want = statistics.median(values.tolist())
    assert median_radius(torch.from_numpy(values)) == want
    assert median_radius(values.tolist()) == want
    assert median_radius(values) == float(np.median(values))


def test_median_radius_averages_the_two_middle_values():
    assert median_radius(torch.tensor([1.0, 4.0, 2.0, 3.0])) == 2.5  # torch's .median() is 2
    assert median_radius(torch.tensor([0.0, 1.0, 2.0, math.inf], dtype=torch.float64)) == 1.5
    assert median_radius([1.0, math.inf]) == math.inf
    assert median_radius([1.0, 3.0, 2.0]) == 2.0
    with pytest.raises(ValueError, match="at least one"):
        median_radius([])


# ------------------------------------------------------------------ certified_accuracy


def test_certified_accuracy():
    radii = torch.tensor([0.0, 1.0, 2.0, math.inf], dtype=torch.float64)
    acc = certified_accuracy(radii, [0.0, 1.0, 1.5, 100.0])
    assert acc.dtype == torch.float64
    assert acc.tolist() == [0.75, 0.5, 0.5, 0.25]  # robust at eps iff radius > eps (ties flip)
    radii = RNG.exponential(2.0, size=37)
    grid = np.linspace(0, 6, 13)
    want = [sum(r > e for r in radii) / len(radii) for e in grid]
    assert certified_accuracy(radii.tolist(), grid).tolist() == pytest.approx(want, abs=1e-15)


def test_median_radius_is_where_certified_accuracy_crosses_half():
    radii = RNG.exponential(2.0, size=101)  # odd count: the median is a radius
    med = median_radius(radii)
    below, at = certified_accuracy(radii, [med - 1e-9, med]).tolist()
    assert below > 0.5 > at


# ------------------------------------------------------------------ loglog_slope


def test_loglog_slope_matches_scipy_linregress():
    for _ in range(20):
        x = RNG.uniform(1, 100, size=6)
        y = 2.0 * x ** RNG.uniform(-1, 1) * RNG.lognormal(0, 0.1, size=6)
        want = stats.linregress(np.log(x), np.log(y)).slope
        assert loglog_slope(x.tolist(), y.tolist()) == pytest.approx(want, rel=1e-10)


def test_loglog_slope_plain_lists_and_non_finite_points():
    xs = [2, 4, 8, 16]
    assert loglog_slope(xs, [3 * x**-0.5 for x in xs]) == pytest.approx(-0.5)
    # points with y = inf (beyond the grid), 0 or nan are left out of the fit
    ys = [3 * x**-0.5 for x in xs] + [math.inf, 0.0, math.nan]
    assert loglog_slope(xs + [32, 64, 128], ys) == pytest.approx(-0.5)
    assert math.isnan(loglog_slope([2], [1.0]))
    assert math.isnan(loglog_slope([2, 4], [1.0, math.inf]))
