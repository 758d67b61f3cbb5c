"""Pooled verdicts over seeds (featavg.metrics.pooled) against plain numpy computations on
planted per-seed, per-point correctness."""

import numpy as np
import pytest

from featavg.metrics.pooled import (
    BINARY_MORE,
    NO_DIFFERENCE,
    TENCLASS_MORE,
    pooled_gap,
    verdict_of,
)


def planted(gaps, points=200, radii=3, seed=0):
    """(binary, tenclass) correctness (S, R, B): at radius r the binary model is right on
    half the points, the 10-class model on half + gaps[s][r] of them (a paired shift)."""
    rng = np.random.default_rng(seed)
    s_count = len(gaps)
    binary = np.zeros((s_count, radii, points), dtype=bool)
    tenclass = np.zeros_like(binary)
    for s in range(s_count):
        for r in range(radii):
            order = rng.permutation(points)
            binary[s, r, order[: points // 2]] = True
            shift = round(gaps[s][r] * points)
            tenclass[s, r, order[: points // 2 + shift]] = True
    return binary, tenclass


def reference_crossed_bootstrap(binary, tenclass, replicates, seed):
    """The scheme of the module docstring, written out: resample seeds and points."""
    d = tenclass.astype(float) - binary.astype(float)
    s_count, _, points = d.shape
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(replicates):
        si = rng.integers(0, s_count, s_count)
        bi = rng.integers(0, points, points)
        stats.append(d[si][:, :, bi].mean(axis=(0, 2)))
    stats = np.array(stats)
    return np.percentile(stats, 2.5, axis=0), np.percentile(stats, 97.5, axis=0)


def test_means_signs_and_noise_band_equal_plain_numpy():
    gaps = [[0.0, 0.10, 0.20], [0.0, 0.05, 0.25], [0.0, -0.05, 0.15], [0.0, 0.10, 0.20]]
    binary, tenclass = planted(gaps)
    got = pooled_gap(binary, tenclass)
    d = tenclass.astype(float) - binary.astype(float)
    per_seed = d.mean(axis=2)
    np.testing.assert_allclose(got.per_seed, per_seed)
    np.testing.assert_allclose(got.per_seed, np.array(gaps), atol=1e-12)  # as planted
    np.testing.assert_allclose(got.mean, per_seed.mean(axis=0))
    assert got.positive.tolist() == [0, 3, 4] and got.negative.tolist() == [0, 1, 0]
    two_se = np.mean([2 * d[s].std(axis=1, ddof=1) / np.sqrt(200) for s in range(4)], axis=0)
    np.testing.assert_allclose(got.two_se, two_se)
    assert got.seeds == 4


def test_interval_matches_an_independent_crossed_bootstrap():
    gaps = [[0.02, 0.10, 0.20], [0.0, 0.05, 0.25], [-0.03, -0.05, 0.15], [0.01, 0.12, 0.22]]
    binary, tenclass = planted(gaps, seed=3)
    got = pooled_gap(binary, tenclass, replicates=20000)
    lo, hi = reference_crossed_bootstrap(binary, tenclass, 20000, seed=11)
    # two Monte Carlo estimates of the same percentiles: within a few thousandths
    np.testing.assert_allclose(got.lo, lo, atol=0.006)
    np.testing.assert_allclose(got.hi, hi, atol=0.006)
    assert np.all(got.lo <= got.mean) and np.all(got.mean <= got.hi)


def test_one_flipped_seed_means_no_difference_shown():
    # four seeds say the 10-class model is far more robust at radius 2, one says the
    # opposite just as strongly: the pooled interval straddles 0
    gaps = [[0.2, 0.2, 0.2]] * 4 + [[0.2, 0.2, -0.45]]
    binary, tenclass = planted(gaps, seed=5)
    got = pooled_gap(binary, tenclass)
    assert got.verdict[:2] == [TENCLASS_MORE, TENCLASS_MORE]
    assert got.verdict[2] == NO_DIFFERENCE and got.lo[2] < 0 < got.hi[2]
    assert got.positive[2] == 4 and got.negative[2] == 1


def test_the_interval_counts_the_seeds_spread_not_only_the_points():
    # seeds that disagree widen the interval beyond the within-run noise band
    agree = pooled_gap(*planted([[0.1, 0.1, 0.1]] * 5, seed=1))
    spread = pooled_gap(*planted([[0.1, -0.1, 0.3]] * 2 + [[0.1, 0.3, -0.1]] * 3, seed=1))
    assert (spread.hi - spread.lo)[1:].min() > 1.5 * (agree.hi - agree.lo)[1:].max()


def test_a_single_seed_resamples_only_the_points():
    binary, tenclass = planted([[0.0, 0.1, -0.2]], points=400, seed=2)
    got = pooled_gap(binary, tenclass)
    d = tenclass[0].astype(float) - binary[0].astype(float)
    se = d.std(axis=1, ddof=1) / np.sqrt(400)
    # the percentile bootstrap of a mean of 400 paired differences ~ mean +- 1.96 SE
    np.testing.assert_allclose(got.lo, d.mean(axis=1) - 1.96 * se, atol=0.012)
    np.testing.assert_allclose(got.hi, d.mean(axis=1) + 1.96 * se, atol=0.012)
    assert got.verdict == [NO_DIFFERENCE, TENCLASS_MORE, BINARY_MORE]


def test_equal_models_give_a_point_interval_and_no_difference():
    binary = np.ones((3, 2, 50), dtype=bool)
    got = pooled_gap(binary, binary.copy())
    assert got.lo.tolist() == [0.0, 0.0] == got.hi.tolist()
    assert got.verdict == [NO_DIFFERENCE, NO_DIFFERENCE]


def test_verdict_and_shape_checks():
    assert verdict_of(0.01, 0.2) == TENCLASS_MORE
    assert verdict_of(-0.2, -0.01) == BINARY_MORE
    assert verdict_of(-0.01, 0.2) == NO_DIFFERENCE
    with pytest.raises(ValueError, match="need two"):
        pooled_gap(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)))


@pytest.mark.parametrize(
    ("grid", "quoted"),
    [
        (np.linspace(0, 2, 21), ["0.5", "1", "1.5", "2"]),  # the L2 grid
        (np.linspace(0, 0.1, 21), ["0.025", "0.05", "0.075", "0.1"]),  # the L-inf grid
        (np.array([0.0, 0.3]), ["0.3"]),  # one radius > 0: quoted once
    ],
)
def test_the_terminal_quotes_the_verdict_at_fractions_of_any_grid(grid, quoted):
    """Once the lines quoted only radii equal to 0.5, 1, 1.5, 2: an L-infinity run (grid up
    to 0.1) printed a header and nothing under it."""
    from featavg.experiments.image_seeds import verdict_lines

    rows = [
        {"radius": float(r), "difference": 0.01, "lo": -0.01, "hi": 0.03, "positive": 3,
         "seeds": 5, "verdict": NO_DIFFERENCE}
        for r in np.round(grid, 10)
    ]  # fmt: skip
    lines = verdict_lines({"more_robust": rows})
    shown = [line.split()[1].rstrip(":") for line in lines if line.startswith("  radius ")]
    assert shown == quoted
