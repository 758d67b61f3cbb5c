"""The analytic attack of the paper: move along the negative averaged feature direction.

A feature-averaging binary net has every unit of class s aligned with
mean_s = (1/|J_s|) sum_{j in J_s} mu_j. For a point of class y the adversary therefore moves
along

    u(y) = (sum_{j in J_{-y}} mu_j - sum_{j in J_y} mu_j) / || ... ||,

which switches the own-class units off and the other-class units on at once; for the
idealised net f_FA a perturbation of norm sqrt(d/k) along u flips a cluster center
(:mod:`featavg.theory`). :func:`line_search_flip_radius` finds, per point, the smallest
step along any given direction that flips the decision.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from featavg.models.two_layer import TwoLayerNet

# flipped_at(t) -> (B,) bool: is the decision at x + t u wrong, per point
FlipTest = Callable[[torch.Tensor], torch.Tensor]


def averaged_direction(centers: torch.Tensor, signs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unit vectors u(y_i) of shape (B, d) for labels y (B,) in {-1, +1}.

    centers (k, d) = mu_1..mu_k; signs (k,) the class of each cluster.
    """
    pos = centers[signs > 0].sum(0)
    neg = centers[signs < 0].sum(0)
    u = torch.where(y[:, None] > 0, neg - pos, pos - neg)
    return u / u.norm(dim=1, keepdim=True)


def margin_flip_on_ray(
    net: TwoLayerNet, x: torch.Tensor, y: torch.Tensor, direction: torch.Tensor
) -> FlipTest:
    """flipped_at(t) for a binary two-layer net along x + t u, in O(B M) per evaluation.

    Along the ray the preactivations are affine in t: p(t) = (W x + b) + t (W u), so they
    are computed once and every evaluation of y f(x + t u) <= 0 is cheap.
    """
    weight, bias = net.linear.weight.detach(), net.linear.bias.detach()
    p0, slope = x @ weight.T + bias, direction @ weight.T
    readout = net.readout.detach()[0]

    def flipped_at(t: torch.Tensor) -> torch.Tensor:
        return y * (torch.relu(p0 + t[:, None] * slope) @ readout) <= 0

    return flipped_at


def module_flip_on_ray(
    flipped: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, direction: torch.Tensor
) -> FlipTest:
    """flipped_at(t) for any decision ``flipped(inputs (B, d)) -> (B,) bool`` along x + t u."""
    return lambda t: flipped(x + t[:, None] * direction)


@torch.no_grad()
def line_search_flip_radius(
    flipped_at: FlipTest,
    n_points: int,
    max_radius: float,
    grid: int = 128,
    iters: int = 40,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Smallest t in [0, max_radius] with flipped_at(t) per point; inf where none.

    flipped_at: maps per-point distances t (n_points,) to a (n_points,) bool tensor (True =
    the decision at x + t u is wrong); build it with :func:`margin_flip_on_ray` (two-layer
    nets, O(B M) per call) or :func:`module_flip_on_ray` (any model). A coarse grid of
    ``grid`` steps brackets the first flip, then ``iters`` bisection steps refine it to
    max_radius / grid / 2^iters. A flip region narrower than one grid step can be missed
    (the radius is then an upper bound along this ray); for the averaged direction the flip
    region of a feature-averaging net is a half-line.
    """
    ts = torch.linspace(0.0, max_radius, grid + 1, dtype=dtype, device=device)
    first = torch.full((n_points,), grid + 1, dtype=torch.long, device=device)
    for g in range(grid + 1):
        hit = flipped_at(ts[g].expand(n_points)) & (first > grid)
        first[hit] = g
    radius = torch.full((n_points,), float("inf"), dtype=dtype, device=device)
    radius[first == 0] = 0.0
    inner = (first > 0) & (first <= grid)
    lo = ts[(first - 1).clamp(0, grid)]
    hi = ts[first.clamp(0, grid)]
    for _ in range(iters):  # all points bisect together; settled ones are masked out
        mid = (lo + hi) / 2
        bad = flipped_at(mid)
        hi = torch.where(bad, mid, hi)
        lo = torch.where(bad, lo, mid)
    radius[inner] = hi[inner]
    return radius
