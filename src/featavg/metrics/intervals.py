"""Means over seeds with 95% intervals suited to the quantity.

A per-seed quantity has a :class:`Kind`, declared by whoever produces it (never guessed
from its name), and its interval is built on the scale where that kind lives. With S seeds,
mean x̄, sample standard deviation s, standard error se = s / √S and q = t_{0.975, S-1}
(Student t, as the seeds are few):

* ``REAL`` (slopes, biases): x̄ ± q se, the plain t interval.
* ``POSITIVE`` (losses, radii, ratios, step counts; values >= 0): t on the log scale by the
  delta method, x̄ exp(±q se / x̄) (se / x̄ is the standard error of log x̄). Never negative,
  always contains x̄, and equal to the t interval to first order when the spread is small
  beside the mean (radii vary by a few percent across seeds); a wide spread gives the
  asymmetric interval a positive quantity should have. All zeros give [0, 0].
* ``PROPORTION`` (accuracies, fractions; in [0, 1]) and ``COSINE`` (in [-1, 1], mapped
  affinely to [0, 1]): the Wilson score interval {p : (p̂ - p)^2 <= q^2 p (1 - p) / n}
  with the effective number of trials n = p̂ (1 - p̂) / se^2 and q from t (the survey
  statisticians' effective-sample-size Wilson interval, Korn & Graubard 1998). Why not
  Wilson on the pooled test-set counts: the seeds differ in data and initialisation and
  their spread (e.g. one seed that fails to fit) dwarfs the binomial noise of a test set,
  so a pooled interval would be far too narrow; the effective n carries the seeds' own
  spread. Why not t on the logit scale of every seed: values at exactly 0 or 1 (an
  accuracy of 1.0 is common here) have no logit and need an arbitrary offset. The Wilson
  set lies in [0, 1] by construction, always contains p̂, reduces to the t interval
  when the spread is small, and needs no special case at the bounds: values all equal
  (e.g. every seed at 1.0) have se = 0 and give [p̂, p̂].

Every kind gives [x̄, x̄] for values without spread and for a single value (callers omit
the interval then: one seed has none); non-finite values propagate (nan or inf bounds).
Values outside a kind's range raise ``ValueError`` (a mis-declared kind), except float
round-off of 1e-6 of the range, which is clamped (a cosine of 1.0000001).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """What a per-seed quantity is: its name and the range its values lie in."""

    name: str
    lower: float | None = None
    upper: float | None = None


REAL = Kind("real")
POSITIVE = Kind("positive", 0.0)
PROPORTION = Kind("proportion", 0.0, 1.0)
COSINE = Kind("cosine", -1.0, 1.0)
KINDS = (REAL, POSITIVE, PROPORTION, COSINE)

# round-off tolerated outside a kind's range, as a fraction of the range (or of 1)
_ROUNDOFF = 1e-6


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (scipy's ``stdtrit``)."""
    # imported here, not at module level: importing scipy costs ~0.2 s, and this module is
    # loaded by every command (experiments aggregate through it) while few need a quantile
    from scipy.special import stdtrit

    return float(stdtrit(df, p))


def _mean_se(vals: list[float]) -> tuple[float, float]:
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return mean, math.sqrt(var / len(vals))


def mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, lo, hi) of the plain t interval, mean +- t_{0.975, S-1} * std / sqrt(S) (the
    ``REAL`` kind). One value gives lo = hi = mean; non-finite values propagate."""
    return mean_interval(values, REAL)


def _checked(vals: list[float], kind: Kind) -> list[float]:
    """The values clamped into the kind's range when outside it by round-off only."""
    lo, hi = kind.lower, kind.upper
    tol = _ROUNDOFF * ((hi - lo) if lo is not None and hi is not None else 1.0)
    out = []
    for v in vals:
        if lo is not None and v < lo:
            if v < lo - tol:
                raise ValueError(f"value {v:g} below {lo:g}: not a {kind.name} quantity")
            v = lo
        if hi is not None and v > hi:
            if v > hi + tol:
                raise ValueError(f"value {v:g} above {hi:g}: not a {kind.name} quantity")
            v = hi
        out.append(v)
    return out


def wilson(p: float, n: float, q: float) -> tuple[float, float]:
    """The Wilson score interval {p' : (p - p')^2 <= q^2 p'(1 - p') / n} for a proportion
    p with n trials (n may be an effective, non-integer count) and quantile q."""
    q2n = q * q / n
    center = (p + q2n / 2) / (1 + q2n)
    half = q / (1 + q2n) * math.sqrt(p * (1 - p) / n + q2n / (4 * n))
    return max(center - half, 0.0), min(center + half, 1.0)


def mean_interval(values: Sequence[float], kind: Kind) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of ``values`` (one per seed) and its 95% interval for a
    quantity of this ``kind`` (module docstring)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values: need at least one value")
    if not all(math.isfinite(v) for v in vals):
        mean = sum(vals) / len(vals)
        return mean, math.nan, math.nan
    vals = _checked(vals, kind)
    if len(vals) == 1 or min(vals) == max(vals):
        mean = sum(vals) / len(vals)
        return mean, mean, mean
    mean, se = _mean_se(vals)
    q = t_quantile(0.975, len(vals) - 1)
    if kind.lower is None:
        return mean, mean - q * se, mean + q * se
    if kind.upper is None:  # positive: the delta-method interval on the log scale
        lo = kind.lower
        if mean == lo:
            return mean, mean, mean
        factor = math.exp(q * se / (mean - lo))
        return mean, lo + (mean - lo) / factor, lo + (mean - lo) * factor
    width = kind.upper - kind.lower
    p, se_p = (mean - kind.lower) / width, se / width
    p_lo, p_hi = wilson(p, p * (1 - p) / se_p**2, q)
    return mean, kind.lower + width * p_lo, kind.lower + width * p_hi


def plural(count: int, noun: str) -> str:
    """'1 seed', '3 seeds': a count with its noun in singular or plural."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def seeds_note(seeds: int) -> str:
    """What a band drawn over ``seeds`` replicates shows: 'mean and 95% interval over 5
    seeds', or '1 seed (no interval)'."""
    if seeds == 1:
        return "1 seed (no interval)"
    return f"mean and 95% interval over {plural(seeds, 'seed')}"
