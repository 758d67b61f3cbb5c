"""Exact subspace L2 PGD for many two-layer nets at once (one call per read-out, not per net).

:func:`featavg.attacks.two_layer.subspace.subspace_pgd` runs the paper's PGD protocol for one net in
the (r + 1)-dimensional state (z, c) of its row space (see that module). Here S nets with
the same readout are attacked in one batched program: net s has its own basis Q_s and
B_s = W_s Q_s^T (padded with zero columns to a common rank), the state is (S, R, B, r + 1),
and every step is one batched product. With ``start_draw="subspace"`` in the single-net
version and the same per-net seeds, the two give identical results (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from featavg.attacks.core import AttackSettings, check_radii, step_sizes
from featavg.attacks.two_layer.subspace import row_space_basis, subspace_start
from featavg.models.two_layer import TwoLayerNet

# rows whose exact radius exceeds eps by this relative margin are certified, not attacked
CERTIFIED_MARGIN = 1e-3


def ensemble_subspace_pgd(
    nets: Sequence[TwoLayerNet],
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float] | torch.Tensor,
    *,
    seeds: Sequence[int],
    settings: AttackSettings = AttackSettings(),
    readout: torch.Tensor | None = None,
    certified_radii: torch.Tensor | None = None,
) -> torch.Tensor:
    """L2 PGD (Madry et al. 2018; paper protocol: 7 steps of eps/4, random start on the
    eps-sphere, no box) on S two-layer nets sharing one readout, exactly in their row spaces.

    Shapes: x (S, B, d), y (S, B), eps (R,); ``seeds`` (S,) the attack seed of each net
    (its random starts equal those of ``subspace_pgd(..., seed=seeds[s],
    start_draw="subspace")``); ``settings``: the attack's steps, step (rel_step or
    step_size), restarts, random_start ("sphere", "ball" or "none") and objective, as for
    ``subspace_pgd`` (norm "l2" and no box; its seed is not read: ``seeds`` are).
    ``readout``: optional (C', C) map applied to the scores (e.g. the sum form). Returns
    correct (S, R, B) bool: still correct after the attack at that radius (a point
    misclassified clean is wrong at every radius).

    ``certified_radii`` (S, B), optional: exact minimal L2 radii of the same read-out
    (:mod:`featavg.attacks.two_layer.exact`). A point whose radius exceeds eps cannot be flipped by
    any perturbation of norm <= eps, so its PGD outcome at eps is known: correct. Those
    rows are not attacked (the other rows, and the result, are unchanged); a relative
    margin of :data:`CERTIFIED_MARGIN` keeps float32 rounding at the boundary out of it.
    """
    random_start, objective = settings.random_start, settings.objective
    if settings.norm != "l2" or settings.box is not None:
        raise ValueError("ensemble_subspace_pgd: only norm='l2' without a box is exact")
    if random_start not in ("sphere", "ball", "none"):
        raise ValueError(f"random_start: must be sphere, ball or none, got {random_start!r}")
    n_nets, n_points, dim = x.shape
    if len(nets) != n_nets or len(seeds) != n_nets:
        raise ValueError(f"nets/seeds: need {n_nets} of each, got {len(nets)}, {len(seeds)}")
    device, dtype = x.device, x.dtype
    radii = check_radii(eps, dtype, device)
    alphas = step_sizes(radii, settings)
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

    def logits_at(pre: torch.Tensor) -> torch.Tensor:  # pre (..., M) -> (N, C)
        scores = torch.relu(pre.reshape(-1, pre.shape[-1])) @ scores_map.T
        if extra_map is not None:
            return scores @ extra_map.T
        return torch.cat([-scores / 2, scores / 2], dim=1) if binary else scores

    def pre_gradient(pre: torch.Tensor) -> torch.Tensor:
        """d loss / d preactivations (S, N, M) of the N attacked rows of each net, by hand
        from objective.loss_grad."""
        flat = pre.reshape(-1, pre.shape[-1])
        dlogits = objective.loss_grad(logits_at(flat), y_rep)
        if extra_map is not None:
            dscores = dlogits @ extra_map
        elif binary:  # logits [-s/2, s/2]
            dscores = (dlogits[:, 1:] - dlogits[:, :1]) / 2
        else:
            dscores = dlogits
        return ((dscores @ scores_map) * (flat > 0)).view(n_nets, -1, flat.shape[-1])

    clean_pre = torch.baddbmm(bias[:, None, :], x, weights.transpose(1, 2))  # (S, B, M)
    clean_ok = objective.correct(logits_at(clean_pre), y.reshape(-1)).view(n_nets, 1, n_points)
    correct = clean_ok.expand(n_nets, n_r, n_points).clone()
    # the rows (radius, point) of each net still to attack, as flat indices r * B + b,
    # padded to a common count with copies of a real row (their results are discarded)
    todo = correct.clone()
    if certified_radii is not None:
        cert = certified_radii.to(device=device, dtype=torch.float64)
        todo &= ~(cert[:, None, :] > radii.double()[None, :, None] * (1 + CERTIFIED_MARGIN))
    todo = todo.view(n_nets, -1)
    counts = todo.sum(1)
    width = int(counts.max())
    if width == 0:
        return correct
    order = torch.argsort((~todo).to(torch.uint8), dim=1, stable=True)[:, :width]
    valid = torch.arange(width, device=device)[None, :] < counts[:, None]
    rows = torch.where(valid, order, order[:, :1])  # (S, N)
    point, r_idx = rows % n_points, rows // n_points
    pre0 = clean_pre.gather(1, point[..., None].expand(-1, -1, clean_pre.shape[-1]))
    y_rep = y.gather(1, point).reshape(-1)
    e, a = radii[r_idx].reshape(-1), alphas[r_idx].reshape(-1)
    flat_rows = (rows + torch.arange(n_nets, device=device)[:, None] * (n_r * n_points))[valid]
    for restart in range(settings.restarts):
        z0 = torch.zeros(n_nets, n_points, rank, dtype=dtype, device=device)
        c0 = torch.zeros(n_nets, n_points, dtype=dtype, device=device)
        for s, basis in enumerate(bases):
            z, c, _ = subspace_start(
                n_points, basis.to(device), random_start, seeds[s], restart, False
            )
            z0[s, :, : basis.shape[0]], c0[s] = z.to(dtype), c.to(dtype)
        # state: z (N, r) in the row space and c (N,) along the start's orthogonal part;
        # the gradient never has a c component, so c only changes by projection
        z = z0.gather(1, point[..., None].expand(-1, -1, rank)).view(-1, rank) * e[:, None]
        c = c0.gather(1, point).view(-1) * e
        z, c = _project(z, c, e)
        with torch.no_grad():
            for _ in range(settings.steps):
                pre = torch.baddbmm(pre0, z.view(n_nets, -1, rank), w_in_basis.transpose(1, 2))
                grad = torch.bmm(pre_gradient(pre), w_in_basis).view(-1, rank)
                norm = grad.norm(dim=1).clamp_min(torch.finfo(dtype).tiny)
                z, c = _project(z + grad * (a / norm)[:, None], c, e)
            pre = torch.baddbmm(pre0, z.view(n_nets, -1, rank), w_in_basis.transpose(1, 2))
            ok = objective.correct(logits_at(pre), y_rep).view(n_nets, -1)
        correct.view(-1)[flat_rows] &= ok[valid]
    return correct


def _project(
    z: torch.Tensor, c: torch.Tensor, e: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project (z, c) onto the L2 ball of radius e: ||delta||^2 = ||z||^2 + c^2."""
    length = (z.square().sum(1) + c.square()).sqrt()
    shrink = torch.where(length > e, e / length.clamp_min(torch.finfo(z.dtype).tiny), 1.0)
    return z * shrink[:, None], c * shrink
