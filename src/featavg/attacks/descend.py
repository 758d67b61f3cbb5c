"""Refining a minimum-norm attack's per-point radii downwards on the grid with PGD.

A minimum-norm attack (:mod:`.min_norm`) gives each point a perturbation of norm nu that
flips it; a short run overshoots. :func:`descend_pgd` runs PGD (Madry et al. 2018) or APGD
(Croce & Hein 2020, :mod:`.apgd`) at the largest grid radius below nu, then at the next
smaller one while it keeps flipping the point (warm-started from the last perturbation
found, stopping at its first adversarial iterate).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from featavg.attacks.apgd import apgd_until_fooled
from featavg.attacks.core import (
    AttackSettings,
    CurveResult,
    Forward,
    GradientCounter,
    Rows,
    ascent_direction,
    check_inputs,
    check_radii,
    clean_predictions,
    eval_mode,
    feasible,
    flat_inputs,
    project,
    start_directions,
    step_sizes,
)


def descend_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float] | torch.Tensor,
    known_flip: torch.Tensor,
    x_known: torch.Tensor | None = None,
    settings: AttackSettings = AttackSettings(),
    apgd_steps: int = 0,
) -> CurveResult:
    r"""Refine per-point flip radii nu (e.g. a minimum-norm attack's) on the grid below them:
    PGD at the largest grid radius r_j < nu; if it flips the point, r_j is its new flip radius
    and PGD tries r_{j-1}, and so on down, until an attack fails (or radius 0 is reached).

    Only points are counted fooled at r for which a perturbation of norm <= r was found and
    verified by a forward pass; a failed attack never makes a point robust at smaller radii
    by inference: below its last failure a point keeps the claim that ``known_flip`` made
    (nothing smaller was found). Points with nu = inf start at the largest grid radius.

    Each PGD run starts from the last adversarial perturbation known for the point (x_known
    - x for the first run, the one PGD just found for later ones) rescaled to the radius
    (a warm start: it lies just across the boundary, scaled into the smaller ball), or from
    pgd's random start ``attack/start/0`` where none is known; and it stops at the first
    adversarial iterate (early exit: every iterate's logits are computed for its gradient
    anyway, so the check is free and the perturbation verified).

    Arguments:
        model: maps (N, \*input_shape) to logits; run in eval mode, never changed.
        x: (B, \*input_shape) clean inputs; y: (B,) labels in ``objective``'s form.
        eps: R radii >= 0 in any order; the result is on the ascending grid.
        known_flip: (B,) radii nu at which each point is already known to be fooled
            (inf: none).
        x_known: (B, \*input_shape) adversarial inputs of norm nu (warm starts), or None.
        settings (:class:`~featavg.attacks.core.AttackSettings`): PGD's norm, steps (>= 1),
            step (rel_step * eps, or step_size), objective, seed, batch_size and box, as in
            :func:`~featavg.attacks.pgd.pgd` (a random start on the eps-sphere for L2, in the
            eps-box for L-inf; ``random_start`` is not read), and

            * restarts: PGD runs per point and radius before the descent stops: the warm
              start, then pgd's random starts of restarts 1, 2, ... (a warm start from a
              poor minimum-norm result can sit in the wrong basin; a random one escapes it).
              (Default: 1)
        apgd_steps: 0 (default): each run is PGD of ``settings.steps`` steps of rel_step *
            eps; > 0: each run is APGD of that many steps (:func:`.apgd.apgd_until_fooled`:
            momentum, a step of 2 eps halved where the loss stalls; ``settings.steps`` and
            ``rel_step`` are not read).

    Cost: at most steps (APGD: apgd_steps + 1) gradient evaluations per run; restarts failed
    runs per point correct clean with a grid radius > 0 below nu, plus one to restarts runs
    per grid radius it descends.

    Shape:
        - x: (B, \*input_shape); y: (B,); eps: (R,); known_flip: (B,)
        - returns :class:`~featavg.attacks.core.CurveResult` (method "descend"), flip radius
          min(nu, PGD's).
    """
    check_inputs(x, settings)
    if (settings.steps if apgd_steps == 0 else apgd_steps) < 1:
        raise ValueError(f"steps: descend_pgd needs >= 1, got {settings.steps}, {apgd_steps}")
    norm, objective, seed = settings.norm, settings.objective, settings.seed
    start_time = time.perf_counter()
    device, dtype = x.device, x.dtype
    radii = check_radii(eps, dtype, device).sort().values
    if not apgd_steps:
        step_sizes(radii, settings)  # refuse a step that overflows before any attack
    y = objective.prepare(y, device)
    n_points = x.shape[0]
    x_flat, input_shape, dim = flat_inputs(x)
    chunk = settings.chunk(n_points)
    nu = known_flip.detach().to(device=device, dtype=torch.float64).flatten()
    if nu.numel() != n_points:
        raise ValueError(f"known_flip: expected {n_points} radii, got {nu.numel()}")
    # the warm start per point, at unit scale (delta / ||delta||); zero rows: random start
    kind = "sphere" if norm == "l2" else "box"
    unit = start_directions(n_points, dim, kind, seed, 0, dtype).to(device)
    if x_known is not None:
        known = (x_known.detach().reshape(n_points, dim) - x_flat).to(dtype)
        size = known.norm(dim=1) if norm == "l2" else known.abs().amax(1)
        ok = torch.isfinite(nu) & (size > 0)
        unit = torch.where(ok[:, None], known / size.clamp_min(1e-30)[:, None], unit)
    random_units: dict[int, torch.Tensor] = {}  # restart k >= 1: pgd's starts of restart k
    counter = GradientCounter(model)
    forward = counter.flat(input_shape)

    with eval_mode(model):
        clean_correct = objective.correct(clean_predictions(forward, x_flat, chunk), y)
        flip = torch.where(clean_correct, nu, 0.0)
        # level: index of the largest grid radius < flip (-1: none)
        level = torch.searchsorted(radii.to(torch.float64), flip.contiguous()) - 1
        active = clean_correct & (level >= 0)
        while bool(active.any()):
            active &= radii[level.clamp_min(0)] > 0  # eps 0 is the clean prediction
            todo = active.clone()  # this round's points not yet fooled at their level
            for restart in range(settings.restarts):
                if restart > 0 and restart not in random_units:
                    random_units[restart] = start_directions(
                        n_points, dim, kind, seed, restart, dtype
                    ).to(device)
                starts = unit if restart == 0 else random_units[restart]
                for idx in torch.nonzero(todo).flatten().split(chunk):
                    e = radii[level[idx]]
                    alpha = step_sizes(e, settings) if not apgd_steps else 2 * e
                    rows = Rows(x_flat[idx], y[idx], e, alpha)
                    if apgd_steps:
                        fooled, delta = apgd_until_fooled(
                            forward, rows, e[:, None] * starts[idx], settings, apgd_steps
                        )
                    else:
                        fooled, delta = pgd_until_fooled(
                            forward, rows, e[:, None] * starts[idx], settings
                        )
                    won = idx[fooled]
                    flip[won] = e[fooled].to(torch.float64)
                    size = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(1)
                    unit[won] = delta[fooled] / size[fooled].clamp_min(1e-30)[:, None]
                    todo[won] = False
            level[active & ~todo] -= 1
            active &= ~todo  # a level no restart could flip ends the descent
            active &= level >= 0
    curve = CurveResult.from_flip_radius(
        radii,
        flip,
        gradient_evaluations=counter.gradient_evaluations,
        forward_evaluations=counter.forward_evaluations,
        wall_s=time.perf_counter() - start_time,
        method="descend",
        norm=norm,
    )
    curve.clean_correct = clean_correct.cpu()
    return curve


def pgd_until_fooled(
    forward: Forward, rows: Rows, delta: torch.Tensor, settings: AttackSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD on ``rows`` (flat inputs x (n, D), radius eps and step alpha per row (n,)) from
    ``delta`` (n, D), each row stopping at its first adversarial iterate (the start
    included); ``settings.steps`` steps at most, in ``settings.norm``, inside its box.

    Returns fooled (n,) bool and the perturbations (n, D): the adversarial one where fooled
    (norm <= eps, inside the box, verified by the forward pass that flagged it), the final
    iterate elsewhere. Cost: one gradient evaluation per row and step until it is fooled,
    one forward-only pass for the rows standing after the last step."""
    x, y, eps, alpha = rows.x, rows.y, rows.eps, rows.alpha
    norm, box, objective = settings.norm, settings.box, settings.objective
    delta = feasible(x, project(delta, eps, norm), box)
    fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(settings.steps):
        live = torch.nonzero(~fooled).flatten()
        if live.numel() == 0:
            break
        d = delta[live].requires_grad_(True)
        with torch.enable_grad():
            logits = forward(x[live] + d)
            loss = objective.loss(logits, y[live])
            (grad,) = torch.autograd.grad(loss.sum(), d)
        with torch.no_grad():
            adv = ~objective.correct(logits.detach(), y[live])
            fooled[live[adv]] = True  # delta[live[adv]] is the adversarial iterate: kept
            go = live[~adv]
            e = eps[go]
            moved = delta[go] + alpha[go][:, None] * ascent_direction(grad[~adv], norm)
            delta[go] = feasible(x[go], project(moved, e, norm), box)
    with torch.no_grad():
        live = torch.nonzero(~fooled).flatten()
        if live.numel():
            fooled[live] = ~objective.correct(forward(x[live] + delta[live]), y[live])
    return fooled, delta
