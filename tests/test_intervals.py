"""Intervals suited to the quantity: proportions stay in [0, 1], positive quantities above 0,
theory constants carry none, one seed has none; each kind against an independent reference."""

import math

import numpy as np
import pytest

from featavg.experiments.output import aggregate, band, kinds_of
from featavg.metrics.intervals import (
    COSINE,
    POSITIVE,
    PROPORTION,
    REAL,
    mean_interval,
    plural,
    seeds_note,
    t_quantile,
)


def wilson_by_roots(p, n, q):
    """Reference: the Wilson set {x : (p - x)^2 <= q^2 x (1 - x) / n} as the roots of
    (1 + q^2/n) x^2 - (2p + q^2/n) x + p^2 = 0."""
    roots = np.roots([1 + q * q / n, -(2 * p + q * q / n), p * p])
    return float(min(roots.real)), float(max(roots.real))


def test_accuracies_all_at_one_give_one():
    assert mean_interval([1.0, 1.0, 1.0, 1.0, 1.0], PROPORTION) == (1.0, 1.0, 1.0)
    s = aggregate({"acc": [1.0] * 5}, proportions=["acc"])
    assert s["acc"] == 1.0 and s["acc_ci95"] == [1.0, 1.0]


@pytest.mark.parametrize(
    "values",
    [
        [0.99, 1.0, 1.0],
        [1.0, 1.0, 1.0, 1.0, 0.587],  # one seed that failed to fit
        [0.5, 1.0],
        [1.0] * 9 + [0.5],
        [0.0, 0.01, 0.0],
        [0.2, 0.9, 0.4, 0.6],
    ],
)
def test_proportion_intervals_stay_in_the_unit_interval_and_hold_the_mean(values):
    mean, lo, hi = mean_interval(values, PROPORTION)
    assert 0.0 <= lo <= mean <= hi <= 1.0
    assert mean == pytest.approx(sum(values) / len(values))


def test_a_seed_that_failed_to_fit_no_longer_pushes_the_interval_past_one():
    values = [1.0, 1.0, 1.0, 1.0, 0.587]  # clean test accuracies at eps 40, before
    _, t_lo, t_hi = mean_interval(values, REAL)
    assert t_hi > 1.1  # the plain t interval that was reported: [0.688, 1.147]
    _, lo, hi = mean_interval(values, PROPORTION)
    assert 0.0 < lo < 0.9 and 0.99 < hi <= 1.0


def test_proportion_interval_is_wilson_with_the_effective_number_of_trials():
    values = [0.9, 0.95, 0.97, 0.92]
    mean, lo, hi = mean_interval(values, PROPORTION)
    se = np.std(values, ddof=1) / math.sqrt(4)
    n_eff = mean * (1 - mean) / se**2
    ref = wilson_by_roots(mean, n_eff, t_quantile(0.975, 3))
    assert (lo, hi) == pytest.approx(ref, rel=1e-9)


def test_proportion_interval_tends_to_t_for_a_small_spread():
    values = [0.5 + 1e-5 * v for v in (-1.0, 0.3, 0.8, -0.2, 0.1)]
    _, lo, hi = mean_interval(values, PROPORTION)
    _, t_lo, t_hi = mean_interval(values, REAL)
    assert lo == pytest.approx(t_lo, abs=1e-9) and hi == pytest.approx(t_hi, abs=1e-9)


def test_cosine_intervals_stay_in_minus_one_one():
    _, lo, hi = mean_interval([0.98, 0.995], COSINE)
    assert -1.0 <= lo and hi <= 1.0
    _, t_lo, t_hi = mean_interval([0.98, 0.995], REAL)
    assert t_hi > 1.0  # the t interval would not
    mean, lo, hi = mean_interval([-0.99, -1.0, -0.97], COSINE)
    assert -1.0 <= lo <= mean <= hi < 0
    # float32 round-off just past 1 is clamped; a real excursion is a mis-declared kind
    assert mean_interval([1.0000001, 1.0], COSINE) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="not a cosine"):
        mean_interval([1.2, 0.9], COSINE)


@pytest.mark.parametrize("values", [[5.0, 10.0], [0.01, 3.0, 0.02], [0.0, 2.0], [17.5, 18.0, 20.0]])
def test_positive_intervals_stay_above_zero(values):
    mean, lo, hi = mean_interval(values, POSITIVE)
    assert 0.0 < lo <= mean <= hi
    # delta method on the log scale: symmetric around log(mean) with half-width q se / mean
    se = np.std(values, ddof=1) / math.sqrt(len(values))
    half = t_quantile(0.975, len(values) - 1) * se / mean
    assert math.log(hi / mean) == pytest.approx(half) == pytest.approx(math.log(mean / lo))
    assert mean_interval([0.0, 0.0], POSITIVE) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="not a positive"):
        mean_interval([-1.0, 2.0], POSITIVE)


def test_positive_interval_is_t_for_radii_that_vary_little():
    values = [20.0, 20.2, 19.9, 20.1]
    _, lo, hi = mean_interval(values, POSITIVE)
    _, t_lo, t_hi = mean_interval(values, REAL)
    assert lo == pytest.approx(t_lo, rel=1e-4) and hi == pytest.approx(t_hi, rel=1e-4)


def test_non_finite_values_propagate():
    mean, lo, hi = mean_interval([1.0, math.nan], PROPORTION)
    assert math.isnan(mean) and math.isnan(lo) and math.isnan(hi)


def test_aggregate_theory_constants_one_seed_and_kinds():
    per_seed = {
        "acc": [0.9, 1.0, 1.0],
        "radius": [4.0, 6.0, 5.0],
        "slope": [-0.4, -0.6, -0.5],
        "theory_radius": [5.0, 5.0, 5.0],
    }
    s = aggregate(per_seed, proportions=["acc"], positive=["radius"], real=["slope"])
    assert s["theory_radius"] == 5.0
    assert "theory_radius_ci95" not in s and "theory_radius" not in s["per_seed"]
    assert s["acc_ci95"][1] <= 1.0 and s["radius_ci95"][0] > 0 and s["slope_ci95"][0] < -0.5
    assert set(s["per_seed"]) == {"acc", "radius", "slope"}
    one = aggregate({"acc": [0.7], "theory_x": [1.0]}, proportions=["acc"])
    assert one == {"acc": 0.7, "theory_x": 1.0, "per_seed": {"acc": [0.7]}}
    with pytest.raises(ValueError, match="theory constant differs"):
        aggregate({"theory_x": [1.0, 2.0]})


def test_every_key_needs_exactly_one_declared_kind():
    with pytest.raises(ValueError, match="'loss'.*matched: none"):
        aggregate({"loss": [0.1, 0.2]})
    with pytest.raises(ValueError, match="matched: proportion, positive"):
        kinds_of(["test_acc"], proportions=["*acc*"], positive=["test_*"])
    with pytest.raises(TypeError, match="collection"):
        kinds_of(["a"], real="a")  # a string is not a list of patterns
    kinds = kinds_of(
        ["test_acc_binary", "cos_diag", "radius50_eps0", "slope_k"],
        proportions=["*_acc_*"],
        cosines=["cos_*"],
        positive=["radius*"],
        real=["slope_*"],
    )
    assert kinds == {
        "test_acc_binary": PROPORTION,
        "cos_diag": COSINE,
        "radius50_eps0": POSITIVE,
        "slope_k": REAL,
    }
    with pytest.raises(ValueError, match="'acc'.*not a proportion"):
        aggregate({"acc": [1.5, 0.5]}, proportions=["acc"])


def test_band_follows_the_kind():
    mean, lo, hi = band([[1.0, 1.0, 1.0], [0.99, 1.0, 1.0], [0.2, 0.3, 0.4]], PROPORTION)
    assert list(mean) == pytest.approx([1.0, 0.99666667, 0.3])
    assert (hi <= 1.0).all() and (lo >= 0.0).all() and lo[0] == hi[0] == 1.0
    _, lo, hi = band([[3.0], [4.0]], POSITIVE)  # one seed: no band
    assert list(lo) == list(hi) == [3.0, 4.0]


def test_seed_wording():
    assert plural(1, "seed") == "1 seed" and plural(3, "seed") == "3 seeds"
    assert seeds_note(1) == "1 seed (no interval)"
    assert seeds_note(5) == "mean and 95% interval over 5 seeds"
