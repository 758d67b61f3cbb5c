"""Exact L2 PGD for one two-layer net, run in the row space of the first layer.

For f(x) = A relu(W x + b) with W of shape (M, d), the output depends on x only through
W x. Let Q (r x d, r = rank W <= M) be an orthonormal basis of the row space of W. Write a
perturbation as

    delta = Q^T z + c u_perp,   z in R^r,  c >= 0,  u_perp a unit vector with Q u_perp = 0.

Then W (x + delta) = W x + (W Q^T) z, so

* the gradient of the loss w.r.t. delta is W^T dL/dp, which lies in the row space:
  it equals Q^T g_z with g_z = dL/dz, and ||grad|| = ||g_z||; an L2 step moves z only;
* ||delta||^2 = ||z||^2 + c^2, so projecting onto the eps-ball scales (z, c) together;
* the orthogonal part of the random start never changes direction, only its length c.

So PGD runs exactly on the (r + 1)-dimensional state (z, c): O(M r) per sample and step
instead of O(M d). With the same seed the start is drawn exactly as
:func:`featavg.attacks.pgd.pgd` draws it (a full d-dimensional draw once per restart, then
split into z0 = Q delta0 and c0 = ||delta0 - Q^T z0||), so both follow the same trajectory
up to rounding.

Only L2 without a box is exact: an L-inf step sign(grad) and box clamping both leave the row
space. :func:`row_space_basis` and :func:`subspace_start` are shared with the batched version,
:func:`featavg.attacks.two_layer.ensemble_subspace.ensemble_subspace_pgd`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from featavg.attacks.core import (
    AttackSettings,
    ascent_direction,
    check_radii,
    project,
    start_directions,
    step_sizes,
)
from featavg.attacks.objectives import check_model_output
from featavg.attacks.pgd import PGDResult, run_restarts
from featavg.models.two_layer import TwoLayerNet
from featavg.seeding import derive_seed

# what one attacked chunk hands to ``keep``: (state (z, c), logits, u_perp, point index)
_Chunk = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def row_space_basis(weight: torch.Tensor) -> torch.Tensor:
    """(r, d) orthonormal rows spanning the row space of ``weight`` (M, d), in float64.

    Computed by an SVD in float64; r counts the singular values above
    max(M, d) * eps_float64 * s_max, a conservative cut: keeping a spurious direction costs
    a little time, dropping a real one would make the attack inexact.
    """
    w = weight.detach().to(torch.float64)
    _, s, vh = torch.linalg.svd(w, full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        return vh[:0]
    tol = float(s[0]) * max(w.shape) * torch.finfo(torch.float64).eps
    return vh[: int((s > tol).sum())]


def subspace_pgd(
    net: TwoLayerNet,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float] | torch.Tensor,
    settings: AttackSettings = AttackSettings(),
    *,
    readout: torch.Tensor | None = None,
    start_draw: str = "full",
) -> PGDResult:
    r"""L2 PGD on a :class:`~featavg.models.two_layer.TwoLayerNet`, exactly, in the span of
    its first-layer rows plus one scalar (see the module docstring). Same protocol, seeding,
    settings and result as :func:`featavg.attacks.pgd.pgd` (Madry et al. 2018; paper
    defaults: L2, 7 steps, alpha = eps/4, random start on the eps-sphere, no box).

    Arguments (beyond those of ``pgd``):
        net: the network; read through ``net.linear.weight`` W (M, d), ``net.linear.bias``
            b (M,), ``net.readout`` A (C, M) and ``net.kind``. Logits are computed exactly
            as ``net.forward``: scores s = A relu(W x + b), and [-s/2, s/2] for binary nets.
        settings: as ``pgd``'s, but norm only "l2" and box only None (anything else raises
            ValueError).
        readout: optional (C', C) matrix L for a read-out that is a fixed linear map of the
            net's scores, e.g. the sum form F = sum_{J+} f_j - sum_{J-} f_j of a fine-grained
            net (L = the row of cluster signs, with BinaryMargin). Logits are then s L^T
            (the binary [-s/2, s/2] doubling is not applied).
        start_draw: "full" draws the d-dimensional start exactly as ``pgd`` does (same
            trajectory for the same seed; O(B d) per restart). "subspace" draws the same
            distribution in O(B r): for a Gaussian g in R^d, Q g ~ N(0, I_r) and
            ||g - Q^T Q g||^2 ~ chi^2_{d-r} independently, so (z0, c0) of the sphere start
            is (Q g, ||g_perp||) / ||g|| (times U^(1/d) for the ball). Not for "box" starts.

    Cost per step: O(R B M r) (plus O(B d) per restart for the random draw, O(B M d) once
    for W x, and O(R B r d) once to rebuild x_adv = x + Q^T z + c u_perp).

    Shape:
        - x: (B, d) (or (B, \*shape) with prod(shape) = d); y: (B,); eps: (R,)
        - returns :class:`~featavg.attacks.pgd.PGDResult`: x_adv (R, B, \*x.shape[1:]),
          correct (R, B), logits (R, B, C).
    """
    random_start, seed, objective = settings.random_start, settings.seed, settings.objective
    if settings.norm != "l2":
        raise ValueError(
            "subspace_pgd: only norm='l2' is exact in the row space (an L-inf step sign(g) "
            "leaves it); use featavg.attacks.pgd for L-inf"
        )
    if settings.box is not None:
        raise ValueError("subspace_pgd: box clamping leaves the row space; use pgd with a box")
    if start_draw not in ("full", "subspace") or (
        start_draw == "subspace" and random_start == "box"
    ):
        raise ValueError(
            f"start_draw: 'full' or 'subspace' (not with a box start), got {start_draw!r}"
        )
    device, dtype = x.device, x.dtype
    radii = check_radii(eps, dtype, device)
    alphas = step_sizes(radii, settings)
    y = objective.prepare(y, device)
    n_points, num_r = x.shape[0], radii.numel()
    x_flat = x.detach().reshape(n_points, -1)
    dim = x_flat.shape[1]

    weight = net.linear.weight.detach()
    if weight.shape[1] != dim:
        raise ValueError(f"x: dimension {dim} does not match the net's input {weight.shape[1]}")
    basis64 = row_space_basis(weight)  # Q (r, d)
    basis = basis64.to(device=device, dtype=dtype)
    w_in_basis = (weight.to(torch.float64) @ basis64.T.to(weight.device)).to(device, dtype)
    bias = net.linear.bias.detach().to(device=device, dtype=dtype)
    scores_map = net.readout.detach().to(device=device, dtype=dtype)
    extra_map = None if readout is None else readout.to(device=device, dtype=dtype)
    binary = net.kind == "binary" and extra_map is None

    def logits_at(pre: torch.Tensor) -> torch.Tensor:
        scores = torch.relu(pre) @ scores_map.T
        if extra_map is not None:
            return scores @ extra_map.T
        return torch.cat([-scores / 2, scores / 2], dim=1) if binary else scores

    clean_pre = x_flat @ weight.to(device=device, dtype=dtype).T + bias  # (B, M)
    clean_logits = logits_at(clean_pre)
    check_model_output(clean_logits, objective)
    clean_correct = objective.correct(clean_logits, y)

    # state (z, c) per flat row; clean-misclassified points keep the zero state
    rank = basis.shape[0]
    state_adv = torch.zeros(num_r * n_points, rank + 1, dtype=dtype, device=device)
    logits_adv = clean_logits.repeat(num_r, 1)
    x_adv = x_flat.repeat(num_r, 1)
    starts: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def start_of(
        restart: int, point: torch.Tensor, e: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z0, c0, u_perp) for the flat rows of the given points and radii."""
        if restart not in starts:
            starts.clear()
            if start_draw == "subspace":
                starts[restart] = subspace_start(n_points, basis, random_start, seed, restart)
            else:
                unit = start_directions(n_points, dim, random_start, seed, restart, dtype)
                starts[restart] = _split(unit.to(device), basis)
        z_unit, c_unit, perp = starts[restart]
        return e[:, None] * z_unit[point], e * c_unit[point], perp[point]

    def attack(restart: int, idx: torch.Tensor) -> tuple[torch.Tensor, _Chunk]:
        point = idx % n_points
        e, a = radii[idx // n_points], alphas[idx // n_points]
        z0, c0, perp = start_of(restart, point, e)
        state = project(torch.cat([z0, c0[:, None]], dim=1), e, "l2")
        base = clean_pre[point]
        for _ in range(settings.steps):
            z = state[:, :rank].detach().requires_grad_(True)
            with torch.enable_grad():
                loss = objective.loss(logits_at(base + z @ w_in_basis.T), y[point])
                (grad_z,) = torch.autograd.grad(loss.sum(), z)
            with torch.no_grad():
                # the gradient has no component along u_perp: c only moves by projection
                grad = torch.cat([grad_z, torch.zeros_like(grad_z[:, :1])], dim=1)
                state = project(state + a[:, None] * ascent_direction(grad, "l2"), e, "l2")
        with torch.no_grad():
            logits = logits_at(base + state[:, :rank] @ w_in_basis.T)
        return objective.correct(logits, y[point]), (state, logits, perp, point)

    def keep(rows: torch.Tensor, payload: _Chunk, mask: torch.Tensor) -> None:
        state, logits, perp, point = payload
        state_adv[rows] = state[mask]
        logits_adv[rows] = logits[mask]
        z, c = state[mask, :rank], state[mask, rank:]
        x_adv[rows] = x_flat[point[mask]] + z @ basis + c * perp[mask]

    with torch.no_grad():
        correct = run_restarts(
            n_points, radii, clean_correct, settings, attack, keep, desc="subspace pgd"
        )
    return PGDResult(
        eps=radii,
        x_adv=x_adv.view(num_r, n_points, *x.shape[1:]),
        correct=correct,
        logits=logits_adv.view(num_r, n_points, *clean_logits.shape[1:]),
    )


def _split(
    delta: torch.Tensor, basis: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """delta (n, d) -> z = Q delta (n, r), c = ||delta - Q^T z|| (n,), and the unit
    orthogonal direction u_perp (n, d) (0 where c = 0)."""
    z = delta @ basis.T
    perp = delta - z @ basis
    c = perp.norm(dim=1)
    unit = perp / c[:, None].clamp_min(torch.finfo(delta.dtype).tiny)
    return z, c, unit


def subspace_start(
    n: int, basis: torch.Tensor, kind: str, seed: int, restart: int, full: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z0, c0, u_perp) of ``n`` unit-scale random starts in the row space of ``basis`` Q
    (r, d) plus one orthogonal direction, drawn in O(n r) (``start_draw="subspace"`` of
    :func:`subspace_pgd`) from the stream ``attack/subspace-start/{restart}`` of ``seed``.

    u_perp (a uniformly random unit direction orthogonal to the row space, drawn last, so
    z0 and c0 do not depend on ``full``) is only drawn when ``full``; otherwise zeros of
    shape (n, 1) stand in for it."""
    rank, dim = basis.shape
    dtype, device = basis.dtype, basis.device
    if kind == "none":
        zeros = torch.zeros(n, dtype=dtype, device=device)
        return (
            torch.zeros(n, rank, dtype=dtype, device=device),
            zeros,
            torch.zeros_like(zeros[:, None]),
        )
    rng = np.random.default_rng(derive_seed(seed, f"attack/subspace-start/{restart}"))
    z_np = rng.standard_normal((n, rank))
    c_np = np.sqrt(rng.chisquare(dim - rank, size=n)) if dim > rank else np.zeros(n)
    norm = np.sqrt((z_np**2).sum(1) + c_np**2)
    scale = 1.0 / norm
    if kind == "ball":
        scale = scale * rng.uniform(size=n) ** (1.0 / dim)
    z = torch.as_tensor(z_np * scale[:, None], dtype=dtype, device=device)
    c = torch.as_tensor(c_np * scale, dtype=dtype, device=device)
    if not full:
        return z, c, torch.zeros(n, 1, dtype=dtype, device=device)
    g = torch.as_tensor(rng.standard_normal((n, dim)), dtype=dtype, device=device)
    perp = g - (g @ basis.T) @ basis
    return z, c, perp / perp.norm(dim=1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
