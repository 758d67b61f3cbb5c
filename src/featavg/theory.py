"""Closed-form minimal L2 flipping radii of the idealised networks (the paper's Fig. 1).

Setting (Assumption 3.2): mutually orthogonal centers mu_1..mu_k with ||mu_j|| = sqrt(d),
J+ and J- a partition of the k clusters, the nets of :mod:`featavg.models.idealised`, and
the point x = mu_i at the center of a cluster i in J_y. Write e_j = mu_j / sqrt(d)
(orthonormal) and delta_j = <e_j, delta>; then ||delta||^2 >= sum_j delta_j^2 with equality
for delta in span{mu_j}, and the unit preactivations at x + delta are

    q_j = <mu_j, mu_i + delta> + b = d [j = i] + b + sqrt(d) delta_j.

"Radius" is min ||delta|| such that the decision at x + delta is wrong, ties counted as wrong
(so the minimum is attained). Every formula here is re-derived numerically in
tests/test_theory.py: by the exact solver of :mod:`featavg.attacks.two_layer.exact` at every
center and by constrained optimisation in the full d-dimensional input space.
"""

from __future__ import annotations

import math


def radius_feature_averaging(d: int, k: int) -> float:
    """f_FA at a cluster center: sqrt(d / k), for any split |J+| + |J-| = k.

    f_FA(x) = ReLU(<S+, x>) - ReLU(<S-, x>) with S_s = sum_{j in J_s} mu_j = |J_s| mean_s,
    ||S_s||^2 = |J_s| d and S+ orthogonal to S-. At mu_i (i in J+): <S+, mu_i> = d and
    <S-, mu_i> = 0. With a = <S+, delta>, c = <S-, delta> the flip needs
    relu(d + a) <= relu(c): either a <= -d (cost >= d / ||S+|| = sqrt(d / |J+|)) or
    c - a >= d, and by Cauchy-Schwarz
    d <= c - a <= ||delta|| sqrt(||S+||^2 + ||S-||^2) = ||delta|| sqrt(k d), so
    ||delta|| >= sqrt(d / k), attained by delta = (S- - S+) / k (then c = |J-| d / k >= 0).
    sqrt(d / k) <= sqrt(d / |J+|), so the averaged direction wins: an O(sqrt(d / k)) attack
    along sum_{J-} mu_j - sum_{J+} mu_j.
    """
    _check_dk(d, k)
    return math.sqrt(d / k)


def radius_decoupling_sum(d: int, n_opposite: int, bias: float = 0.0) -> float:
    """f_FD (sum form, bias b = ``bias``) at a center of class y; n_opposite = |J_{-y}|.

    Valid for -d < b <= 0 (b <= -d: the center already ties, radius 0). The own unit i has
    q_i = d + b, every other unit q_j = b <= 0 (off). Two ways to flip:

    * switch the own unit off, q_i <= 0: cost (d + b) / sqrt(d) (then f = 0, a tie);
    * activate n >= 1 opposing units S and keep q_i >= 0: need
      sum_{j in S} q_j >= q_i, i.e. sqrt(d) (sum_S delta_j - delta_i) >= d + |b| (n - 1);
      Cauchy-Schwarz over the n + 1 coordinates gives
      ||delta|| >= (d + |b| (n - 1)) / sqrt(d (n + 1)), attained by equal steps, which keep
      the units of S on and q_i >= 0 exactly when |b| <= d / 2. For |b| > d / 2 switching
      one opposing unit on alone costs |b| / sqrt(d) > sqrt(d) / 2 > (d + b) / sqrt(d).

    So r = min_{n = 0..n_opposite} (d + |b| (n - 1)) / sqrt(d (n + 1)) for -d/2 <= b <= 0
    (n = 0 is the switch-off) and r = (d + b) / sqrt(d) for b < -d/2. Special cases:
    b = 0: sqrt(d / (1 + |J_{-y}|)) (all opposing units pushed at once: shrinks like
    1 / sqrt(k)); b = -d/2: sqrt(d) / 2 (switching the own unit off already ties).
    """
    if n_opposite < 1:
        raise ValueError(f"n_opposite: need at least one opposing cluster, got {n_opposite}")
    b = _check_bias(d, bias)
    if b <= -d:
        return 0.0
    if b < -d / 2:
        return (d + b) / math.sqrt(d)
    return min((d - b * (n - 1)) / math.sqrt(d * (n + 1)) for n in range(n_opposite + 1))


def radius_decoupling_argmax(d: int, bias: float = 0.0) -> float:
    """Fine-grained f_FD read out by argmax (k-way, or the class group of the argmax).

    Valid for -d < b <= 0. At mu_i the outputs are relu(d + b) for i and relu(b) = 0 for
    the others. Flipping needs an output l (of another class / group) with
    relu(q_l) >= relu(q_i):

    * own unit off, q_i <= 0: every output is 0, a tie: cost (d + b) / sqrt(d);
    * q_l >= q_i >= 0: sqrt(d) (delta_l - delta_i) >= d, so ||delta|| >= sqrt(d / 2) (half
      the distance sqrt(2 d) between two centers), attained with q_l = b + d/2, which is
      >= 0 exactly when b >= -d/2 (for b < -d/2 the switch-off is cheaper anyway).

    So r = min(sqrt(d / 2), (d + b) / sqrt(d)): sqrt(d / 2) at b = 0, sqrt(d) / 2 at
    b = -d / 2, both Theta(sqrt(d)) and independent of k.
    """
    b = _check_bias(d, bias)
    if b <= -d:
        return 0.0
    return min(math.sqrt(d / 2), (d + b) / math.sqrt(d))


def radius_optimal(d: int) -> float:
    """Reference: sqrt(2 d) / 2, half the distance ||mu_i - mu_j|| = sqrt(2 d) between two
    opposite-class centers; no classifier can be robust beyond it at both centers."""
    _check_dk(d, 1)
    return math.sqrt(2 * d) / 2


def _check_dk(d: int, k: int) -> None:
    if d < 1 or k < 1:
        raise ValueError(f"need d >= 1 and k >= 1, got d={d}, k={k}")


def _check_bias(d: int, bias: float) -> float:
    _check_dk(d, 1)
    if bias > 0:
        raise ValueError(f"bias: the closed form assumes bias <= 0, got {bias}")
    return float(bias)
