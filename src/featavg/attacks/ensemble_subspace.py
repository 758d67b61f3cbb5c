"""Exact subspace L2 PGD for many two-layer nets at once (one call per read-out, not per net).

:func:`featavg.attacks.subspace.subspace_pgd` runs the paper's PGD protocol for one net in
the (r + 1)-dimensional state (z, c) of its row space (see that module). Here S nets with
the same readout are attacked in one batched program: net s has its own basis Q_s and
B_s = W_s Q_s^T (padded with zero columns to a common rank), the state is (S, R, B, r + 1),
and every step is one batched product. With ``start_draw="subspace"`` in the single-net
version and the same per-net seeds, the two give identical results (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from featavg.attacks.objectives import CrossEntropy
from featavg.attacks.pgd import check_radii, step_sizes
from featavg.attacks.subspace import _subspace_start, row_space_basis
from featavg.models.two_layer import TwoLayerNet


def ensemble_subspace_pgd(
    nets: Sequence[TwoLayerNet],
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float] | torch.Tensor,
    *,
    seeds: Sequence[int],
    steps: int = 7,
    step_size: float | None = None,
    rel_step: float = 0.25,
    restarts: int = 1,
    random_start: str = "sphere",
    objective=CrossEntropy(),
    readout: torch.Tensor | None = None,
) -> torch.Tensor:
    """L2 PGD (Madry et al. 2018; paper protocol: 7 steps of eps/4, random start on the
    eps-sphere, no box) on S two-layer nets sharing one readout, exactly in their row spaces.

    Shapes: x (S, B, d), y (S, B), eps (R,); ``seeds`` (S,) the attack seed of each net
    (its random starts equal those of ``subspace_pgd(..., seed=seeds[s],
    start_draw="subspace")``). ``readout``: optional (C', C) map applied to the scores
    (e.g. the sum form). Returns correct (S, R, B) bool: still correct after the attack at
    that radius (a point misclassified clean is wrong at every radius).
    """
    if random_start not in ("sphere", "ball", "none"):
        raise ValueError(f"random_start: must be sphere, ball or none, got {random_start!r}")
    n_nets, n_points, dim = x.shape
    if len(nets) != n_nets or len(seeds) != n_nets:
        raise ValueError(f"nets/seeds: need {n_nets} of each, got {len(nets)}, {len(seeds)}")
    device, dtype = x.device, x.dtype
    radii = check_radii(eps, dtype, device)
    alphas = step_sizes(radii, step_size, rel_step)
    n_r = radii.numel()
    y = objective.prepare(y.reshape(-1), device).view(n_nets, n_points)
    scores_map = nets[0].readout.detach().to(device=device, dtype=dtype)
    extra_map = None if readout is None else readout.to(device=device, dtype=dtype)
    binary = nets[0].kind == "binary" and extra_map is None

    weights = torch.stack([n.linear.weight.detach() for n in nets]).to(device, dtype)
    bias = torch.stack([n.linear.bias.detach() for n in nets]).to(device, dtype)
    bases = [row_space_basis(w) for w in weights]  # float64 (r_s, d)
    rank = max(b.shape[0] for b in bases)
    w_in_basis = torch.zeros(n_nets, weights.shape[1], rank, dtype=dtype, device=device)
    for s, basis in enumerate(bases):
        w_in_basis[s, :, : basis.shape[0]] = (weights[s].double() @ basis.T.to(device)).to(dtype)

    def logits_at(pre):  # pre (..., M) -> (N, C)
        scores = torch.relu(pre.reshape(-1, pre.shape[-1])) @ scores_map.T
        if extra_map is not None:
            return scores @ extra_map.T
        return torch.cat([-scores / 2, scores / 2], dim=1) if binary else scores

    def pre_gradient(pre):
        """d loss / d preactivations (S, R * B, M), by hand (objective.loss_grad) or autograd."""
        flat = pre.reshape(-1, pre.shape[-1])
        if not hasattr(objective, "loss_grad"):
            with torch.enable_grad():
                flat = flat.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(objective.loss(logits_at(flat), y_rep).sum(), flat)
            return g.view(n_nets, -1, flat.shape[-1])
        dlogits = objective.loss_grad(logits_at(flat), y_rep)
        if extra_map is not None:
            dscores = dlogits @ extra_map
        elif binary:  # logits [-s/2, s/2]
            dscores = (dlogits[:, 1:] - dlogits[:, :1]) / 2
        else:
            dscores = dlogits
        return ((dscores @ scores_map) * (flat > 0)).view(n_nets, -1, flat.shape[-1])

    clean_pre = torch.baddbmm(bias[:, None, :], x, weights.transpose(1, 2))  # (S, B, M)
    y_rep = y[:, None, :].expand(n_nets, n_r, n_points).reshape(-1)
    clean_ok = objective.correct(logits_at(clean_pre), y.reshape(-1)).view(n_nets, 1, n_points)
    e = radii[None, :, None].expand(n_nets, n_r, n_points).reshape(-1)
    a = alphas[None, :, None].expand(n_nets, n_r, n_points).reshape(-1)
    correct = clean_ok.expand(n_nets, n_r, n_points).clone()
    for restart in range(restarts):
        z0 = torch.zeros(n_nets, n_points, rank, dtype=dtype, device=device)
        c0 = torch.zeros(n_nets, n_points, dtype=dtype, device=device)
        for s, basis in enumerate(bases):
            z, c, _ = _subspace_start(
                n_points, basis.to(device), random_start, seeds[s], restart, False
            )
            z0[s, :, : basis.shape[0]], c0[s] = z.to(dtype), c.to(dtype)
        # state: z (N, r) in the row space and c (N,) along the start's orthogonal part;
        # the gradient never has a c component, so c only changes by projection
        z = z0[:, None].expand(n_nets, n_r, n_points, rank).reshape(-1, rank) * e[:, None]
        c = c0[:, None].expand(n_nets, n_r, n_points).reshape(-1) * e
        z, c = _project(z, c, e)
        with torch.no_grad():
            for _ in range(steps):
                move = torch.bmm(z.view(n_nets, -1, rank), w_in_basis.transpose(1, 2))
                pre = clean_pre[:, None] + move.view(n_nets, n_r, n_points, -1)
                grad = torch.bmm(pre_gradient(pre), w_in_basis).view(-1, rank)
                norm = grad.norm(dim=1).clamp_min(torch.finfo(dtype).tiny)
                z, c = _project(z + grad * (a / norm)[:, None], c, e)
            move = torch.bmm(z.view(n_nets, -1, rank), w_in_basis.transpose(1, 2))
            pre = clean_pre[:, None] + move.view(n_nets, n_r, n_points, -1)
            ok = objective.correct(logits_at(pre), y_rep).view(n_nets, n_r, n_points)
        correct &= ok
    return correct


def _project(z: torch.Tensor, c: torch.Tensor, e: torch.Tensor):
    """Project (z, c) onto the L2 ball of radius e: ||delta||^2 = ||z||^2 + c^2."""
    length = (z.square().sum(1) + c.square()).sqrt()
    shrink = torch.where(length > e, e / length.clamp_min(torch.finfo(z.dtype).tiny), 1.0)
    return z * shrink[:, None], c * shrink
