"""A verdict over training runs: is the 10-class model more robust than the binary one?

A trained network is one draw from a distribution over initialisations, data orders and
training subsets, so one run cannot answer the question: a second seed can flip it. Here
each of S seeds trains both models and both are attacked on the SAME B test points, so
per seed s, radius r and point b the paired difference

    d[s, r, b] = correct_10class(s, r, b) - correct_binary(s, r, b)      (in {-1, 0, 1})

is known, and the gap of seed s at radius r is g[s, r] = mean_b d[s, r, b] (10-class read
out as the group of its argmax, minus binary; positive: the 10-class model is the more
robust). :func:`pooled_gap` gives, per radius:

* each seed's gap, their mean ḡ[r] = mean_s g[s, r] and the sign count (positive in k of S);
* a 95% interval for the mean gap that accounts for BOTH sources of noise: the training
  runs (seeds) and the attacked points. The points are shared by the seeds, so their noise
  does not average away over seeds; a t interval over seeds would miss it, and the paired
  standard error over points of one run misses the seeds'. The interval is a two-way
  (crossed) percentile bootstrap: each replicate resamples the seeds and, independently,
  the points (the same points for every seed drawn), and takes the mean of d over both.
  It is computed by ``scipy.stats.bootstrap`` with the seed indices and the point indices
  as two independent samples (``paired=False``, percentile method, 4000 replicates, a
  fixed random state, so the interval is reproducible);
* the verdict: "10-class more robust" where the interval lies above 0, "binary more
  robust" where it lies below, else "no difference shown";
* beside it, secondary, the within-run paired 2 SE of each seed (2 std_b d / sqrt(B)),
  averaged over seeds: test-point noise only, the band a single run reports.

With one seed the seed sample cannot be resampled: the interval is the points' alone, and
the verdict ignores training randomness (the caller must say so).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

TENCLASS_MORE, BINARY_MORE, NO_DIFFERENCE = (
    "10-class more robust",
    "binary more robust",
    "no difference shown",
)
REPLICATES = 4000
LEVEL = 0.95


@dataclass(frozen=True)
class PooledGap:
    """The pooled comparison on R radii from S seeds and B shared points (module docstring).

    per_seed (S, R): each seed's gap; mean, lo, hi (R,): the mean gap and its 95% interval;
    positive, negative (R,): how many seeds have a gap above / below 0; verdict: one of
    :data:`TENCLASS_MORE`, :data:`BINARY_MORE`, :data:`NO_DIFFERENCE` per radius; two_se
    (R,): the mean over seeds of the within-run paired 2 SE (test-point noise only)."""

    per_seed: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    verdict: list[str]
    two_se: np.ndarray

    @property
    def seeds(self) -> int:
        """S, the number of training runs pooled."""
        return int(self.per_seed.shape[0])


def verdict_of(lo: float, hi: float) -> str:
    """The verdict of an interval [lo, hi] for the mean gap."""
    if lo > 0:
        return TENCLASS_MORE
    if hi < 0:
        return BINARY_MORE
    return NO_DIFFERENCE


def paired_differences(binary: np.ndarray, tenclass: np.ndarray) -> np.ndarray:
    """d (S, R, B) float64 from two (S, R, B) boolean (or 0/1) correctness arrays measured
    on the same points; a ValueError when their shapes differ."""
    b, t = np.asarray(binary), np.asarray(tenclass)
    if b.shape != t.shape or b.ndim != 3:
        raise ValueError(f"paired correctness: need two (S, R, B) arrays, got {b.shape}, {t.shape}")
    return t.astype(np.float64) - b.astype(np.float64)


def _interval(d: np.ndarray, seed: int, replicates: int) -> tuple[np.ndarray, np.ndarray]:
    """The crossed bootstrap's percentile interval of mean_{s,b} d[s, :, b] (R,)."""
    from scipy import stats

    s_count, _, b_count = d.shape
    rng = np.random.default_rng(seed)
    if s_count == 1:  # one training run: only the points can be resampled

        def over_points(bi: np.ndarray) -> np.ndarray:
            return np.asarray(d[0][:, np.asarray(bi)].mean(axis=1))

        samples: tuple[np.ndarray, ...] = (np.arange(b_count),)
        statistic = over_points
    else:

        def over_both(si: np.ndarray, bi: np.ndarray) -> np.ndarray:
            return np.asarray(d[np.asarray(si)][:, :, np.asarray(bi)].mean(axis=(0, 2)))

        samples = (np.arange(s_count), np.arange(b_count))
        statistic = over_both  # type: ignore[assignment]
    with warnings.catch_warnings():  # constant data (e.g. radius 0, equal clean accuracy)
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            samples,
            statistic,
            paired=False,
            vectorized=False,
            n_resamples=replicates,
            confidence_level=LEVEL,
            method="percentile",
            random_state=rng,
        )
    lo = np.asarray(res.confidence_interval.low, dtype=np.float64)
    hi = np.asarray(res.confidence_interval.high, dtype=np.float64)
    mean = d.mean(axis=(0, 2))
    # a degenerate bootstrap (every replicate equal) reports nan: the interval is the point
    lo = np.where(np.isfinite(lo), np.minimum(lo, mean), mean)
    hi = np.where(np.isfinite(hi), np.maximum(hi, mean), mean)
    return lo, hi


def pooled_gap(
    binary: np.ndarray,
    tenclass: np.ndarray,
    *,
    seed: int = 0,
    replicates: int = REPLICATES,
) -> PooledGap:
    """The pooled comparison of the module docstring from per-seed, per-radius, per-point
    correctness ``binary`` and ``tenclass`` (S, R, B) on the same points; ``seed``: the
    bootstrap's random state (the interval is reproducible)."""
    d = paired_differences(binary, tenclass)
    per_seed = d.mean(axis=2)
    mean = per_seed.mean(axis=0)
    lo, hi = _interval(d, seed, replicates)
    points = d.shape[2]
    two_se = (
        (2 * d.std(axis=2, ddof=1) / np.sqrt(points)).mean(axis=0)
        if points > 1
        else np.full(mean.shape, np.inf)
    )
    return PooledGap(
        per_seed=per_seed,
        mean=mean,
        lo=lo,
        hi=hi,
        positive=(per_seed > 0).sum(axis=0),
        negative=(per_seed < 0).sum(axis=0),
        verdict=[verdict_of(a, b) for a, b in zip(lo.tolist(), hi.tolist(), strict=True)],
        two_se=two_se,
    )
