"""Incremental per-radius PGD: the paper's robustness-curve protocol at a fraction of the cost.

The paper's protocol (:func:`featavg.attacks.pgd.pgd`) attacks every point at every radius:
R * B * steps * restarts gradient evaluations. But a point fooled at radius r is fooled at
every radius r' > r: its perturbation lies inside the larger ball. So :func:`incremental_pgd`
attacks the radii in increasing order, each time only the points still standing; a point
fooled at r drops out and counts as fooled at every larger radius. Per point and radius it
runs exactly the attack ``pgd`` runs (same start eps * u from the stream
``attack/start/{restart}``, same steps), so

* its flip radius (the smallest grid radius at which the point is fooled) equals pgd's;
* its curve is the monotone closure of pgd's: a point counts as robust at r only if pgd
  keeps it correct at every grid radius <= r. It is never above pgd's curve, and equal to
  it wherever pgd's own curve is monotone for every point.

Radius 0 is never attacked (PGD at eps 0 evaluates x itself): it costs nothing and is the
clean accuracy. Cost: steps * restarts * sum over radii r > 0 of the points standing at r,
at most R * B * steps * restarts and usually far less (points near the boundary leave early;
points misclassified clean are never attacked).

The refinement of a minimum-norm attack's radii on the grid, :func:`descend_pgd`, lives in
:mod:`.descend`; the shared types (:class:`~featavg.attacks.core.CurveResult`,
:class:`~featavg.attacks.core.GradientCounter`) in :mod:`.core`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
from torch import nn

from featavg.attacks.core import (
    AttackSettings,
    CurveResult,
    GradientCounter,
    Rows,
    check_inputs,
    check_radii,
    clean_predictions,
    eval_mode,
    flat_inputs,
    pgd_steps,
    start_directions,
    step_sizes,
)
from featavg.attacks.objectives import check_model_output
from featavg.progress import bar as progress_bar


def incremental_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float] | torch.Tensor,
    settings: AttackSettings = AttackSettings(),
    *,
    known_flip: torch.Tensor | None = None,
) -> CurveResult:
    r"""The per-radius PGD curve (the paper's protocol), attacking each point only at the
    radii below the one where it first flips (see the module docstring).

    Arguments are those of :func:`featavg.attacks.pgd.pgd` (same ``settings`` and defaults:
    L2, 7 steps of eps/4, start on the eps-sphere, no box), plus:

        known_flip: optional (B,) radii at which each point is already known to be fooled
            (e.g. the norms found by a minimum-norm attack): a point is not attacked at
            radii >= known_flip[b] and counts as fooled there. The result's flip radius is
            then min(known_flip, PGD's grid flip radius). (Default: None)

    Shape:
        - x: (B, \*input_shape); y: (B,); eps: (R,) radii >= 0 in any order
        - returns :class:`~featavg.attacks.core.CurveResult` on the ascending grid, method
          "incremental".
    """
    check_inputs(x, settings)
    objective = settings.objective
    start_time = time.perf_counter()
    device, dtype = x.device, x.dtype
    radii = check_radii(eps, dtype, device).sort().values
    alphas = step_sizes(radii, settings)
    y = objective.prepare(y, device)
    n_points = x.shape[0]
    x_flat, input_shape, dim = flat_inputs(x)
    chunk = settings.chunk(n_points)
    limit = torch.full((n_points,), math.inf, dtype=torch.float64, device=device)
    if known_flip is not None:
        limit = known_flip.detach().to(device=device, dtype=torch.float64).flatten()
        if limit.numel() != n_points:
            raise ValueError(f"known_flip: expected {n_points} radii, got {limit.numel()}")

    counter = GradientCounter(model)
    forward = counter.flat(input_shape)

    def starts_of(restart: int) -> torch.Tensor:
        """pgd's unit-scale starts of ``restart`` (B, D), on x's device."""
        kind, seed = settings.random_start, settings.seed
        return start_directions(n_points, dim, kind, seed, restart, dtype).to(device)

    with eval_mode(model):
        clean_logits = clean_predictions(forward, x_flat, chunk)
        check_model_output(clean_logits, objective)
        clean_correct = objective.correct(clean_logits, y)
        # grid flip radius found so far: 0 for clean mistakes, inf while standing
        flip = torch.where(clean_correct, math.inf, 0.0).to(torch.float64)
        first_starts: torch.Tensor | None = None  # restart 0's (B, D) draw, reused per radius
        bar = progress_bar(total=radii.numel(), desc="incremental pgd", enabled=settings.progress)
        for i in range(radii.numel()):
            radius = float(radii[i])
            if radius > 0:  # at eps 0 the attack evaluates x itself: the clean prediction
                for restart in range(settings.restarts):
                    if restart == 0:
                        if first_starts is None:
                            first_starts = starts_of(0)
                        starts = first_starts
                    else:  # regenerated rather than held: restarts * B * D could be large
                        starts = starts_of(restart)
                    standing = torch.isinf(flip) & (limit > radius)
                    for idx in torch.nonzero(standing).flatten().split(chunk):
                        e = radii[i].expand(idx.numel())
                        rows = Rows(x_flat[idx], y[idx], e, alphas[i].expand(idx.numel()))
                        _, logits = pgd_steps(forward, rows, e[:, None] * starts[idx], settings)
                        fooled = ~objective.correct(logits, y[idx])
                        flip[idx[fooled]] = radius
            bar.update(1)
        bar.close()
    curve = CurveResult.from_flip_radius(
        radii,
        torch.minimum(flip, limit),
        gradient_evaluations=counter.gradient_evaluations,
        forward_evaluations=counter.forward_evaluations,
        wall_s=time.perf_counter() - start_time,
        method="incremental",
        norm=settings.norm,
    )
    curve.clean_correct = clean_correct.cpu()
    return curve
