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

Also here: :func:`descend_pgd`, which refines per-point flip radii found by a minimum-norm
attack downwards on the grid (PGD at the largest grid radius below each point's found norm,
then the next smaller one while it keeps flipping the point; warm-started, early exit); and,
shared by every curve method (:mod:`.min_norm`, :mod:`.robustness_curve`):
:class:`CurveResult` and the bookkeeping of the cost (:class:`GradientCounter`,
:func:`eval_mode`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from featavg.attacks.objectives import CrossEntropy, Objective, check_model_output
from featavg.attacks.pgd import (
    NORMS,
    RANDOM_STARTS,
    Norm,
    RandomStart,
    _attack_chunk,
    _feasible,
    ascent_direction,
    check_radii,
    project,
    start_directions,
    step_sizes,
)
from featavg.progress import bar as progress_bar


@dataclass
class CurveResult:
    """A robustness curve on B points at R radii, with its cost.

    eps: (R,) float64 radii, ascending. robust_accuracy: (R,) float64, the fraction of points
    still correct at each radius. flip_radius: (B,) float64, the smallest radius at which
    each point was shown to be fooled: a grid radius for the PGD methods, the norm of the
    found perturbation for the minimum-norm ones (which may lie beyond the grid); 0 for a
    point misclassified clean, inf where none was found. gradient_evaluations: forward +
    backward passes, one per point (int). wall_s: seconds. method, norm: what made it.
    per_point_correct: (R, B) bool. forward_evaluations: forward-only passes per point
    (clean predictions, final iterates).

    For every method but "per-radius", per_point_correct[i, b] = eps[i] < flip_radius[b],
    so the curve is monotone non-increasing. "per-radius" reports pgd's grid as it is
    (a point fooled at r may resist at r' > r).
    """

    eps: torch.Tensor
    robust_accuracy: torch.Tensor
    flip_radius: torch.Tensor
    gradient_evaluations: int
    wall_s: float
    method: str
    norm: str
    per_point_correct: torch.Tensor
    forward_evaluations: int = 0

    @classmethod
    def from_flip_radius(
        cls,
        eps: torch.Tensor,
        flip_radius: torch.Tensor,
        *,
        gradient_evaluations: int,
        forward_evaluations: int,
        wall_s: float,
        method: str,
        norm: str,
    ) -> CurveResult:
        """The monotone curve of per-point flip radii (B,) on the ascending grid ``eps``
        (R,): a point is robust at eps iff eps < flip radius (a tie counts as fooled)."""
        eps = eps.detach().to("cpu", torch.float64)
        flip = flip_radius.detach().to("cpu", torch.float64)
        correct = eps[:, None] < flip[None, :]
        return cls(
            eps=eps,
            robust_accuracy=correct.to(torch.float64).mean(1),
            flip_radius=flip,
            gradient_evaluations=int(gradient_evaluations),
            wall_s=float(wall_s),
            method=method,
            norm=norm,
            per_point_correct=correct,
            forward_evaluations=int(forward_evaluations),
        )


class GradientCounter(nn.Module):
    """Wraps a model and counts what attacks cost, per point: a call whose input requires
    grad (with grad enabled) is a gradient evaluation of each of its rows; any other call a
    forward-only one. Counting the calls themselves, not an analytic formula, keeps the
    reported cost honest whatever the bookkeeping skips.

    Created in eval mode (``training`` False) so that attacks that restore a training
    model's mode leave the wrapped model's modes to :func:`eval_mode`.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.training = False  # not .eval(): that would recurse into the model
        self.gradient_evaluations = 0
        self.forward_evaluations = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output on x (N, ...); counts N evaluations."""
        if torch.is_grad_enabled() and x.requires_grad:
            self.gradient_evaluations += x.shape[0]
        else:
            self.forward_evaluations += x.shape[0]
        out: torch.Tensor = self.model(x)
        return out


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the block with every submodule of ``model`` in eval mode (BatchNorm on running
    statistics, no dropout: attacks see a fixed function), then restore each submodule's own
    flag (a model with a frozen eval-mode backbone under a training head stays so)."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def check_attack_args(x: torch.Tensor, norm: str, box: tuple[float, float] | None) -> None:
    """Shared checks: floating x, a known norm, x inside the box."""
    if norm not in NORMS:
        raise ValueError(f"norm: must be one of {NORMS}, got {norm!r}")
    if not x.is_floating_point():
        raise ValueError("x: must be a floating-point tensor")
    if box is not None:
        lo, hi = float(box[0]), float(box[1])
        if not lo <= hi or bool((x < lo).any()) or bool((x > hi).any()):
            raise ValueError(f"box: x must lie in [lo, hi] = {box}")


def clean_predictions(
    forward: nn.Module, x_flat: torch.Tensor, input_shape: tuple[int, ...], chunk: int
) -> torch.Tensor:
    """Model outputs at the clean flat inputs (B, D), computed in chunks without grad."""
    with torch.no_grad():
        return torch.cat(
            [forward(xb.view(xb.shape[0], *input_shape)) for xb in x_flat.split(chunk)]
        )


def incremental_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float] | torch.Tensor,
    *,
    norm: Norm = "l2",
    steps: int = 7,
    step_size: float | None = None,
    rel_step: float = 0.25,
    restarts: int = 1,
    random_start: RandomStart = "sphere",
    objective: Objective = CrossEntropy(),
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = False,
    box: tuple[float, float] | None = None,
    known_flip: torch.Tensor | None = None,
) -> CurveResult:
    r"""The per-radius PGD curve (the paper's protocol), attacking each point only at the
    radii below the one where it first flips (see the module docstring).

    Arguments are those of :func:`featavg.attacks.pgd.pgd` (same defaults: L2, 7 steps of
    eps/4, start on the eps-sphere, no box), plus:

        known_flip: optional (B,) radii at which each point is already known to be fooled
            (e.g. the norms found by a minimum-norm attack): a point is not attacked at
            radii >= known_flip[b] and counts as fooled there. The result's flip radius is
            then min(known_flip, PGD's grid flip radius). (Default: None)

    Shape:
        - x: (B, \*input_shape); y: (B,); eps: (R,) radii >= 0 in any order
        - returns :class:`CurveResult` on the ascending grid, method "incremental".
    """
    check_attack_args(x, norm, box)
    if random_start not in RANDOM_STARTS:
        raise ValueError(f"random_start: must be one of {RANDOM_STARTS}, got {random_start!r}")
    if steps < 0 or restarts < 1:
        raise ValueError(f"need steps >= 0 and restarts >= 1, got {steps}, {restarts}")
    start_time = time.perf_counter()
    device, dtype = x.device, x.dtype
    radii = check_radii(eps, dtype, device).sort().values
    alphas = step_sizes(radii, step_size, rel_step)
    y = objective.prepare(y, device)
    n_points, input_shape = x.shape[0], tuple(x.shape[1:])
    dim = math.prod(input_shape)
    x_flat = x.detach().reshape(n_points, dim)
    chunk = n_points if batch_size is None else max(1, int(batch_size))
    limit = torch.full((n_points,), math.inf, dtype=torch.float64, device=device)
    if known_flip is not None:
        limit = known_flip.detach().to(device=device, dtype=torch.float64).flatten()
        if limit.numel() != n_points:
            raise ValueError(f"known_flip: expected {n_points} radii, got {limit.numel()}")

    counter = GradientCounter(model)

    def forward(flat: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = counter(flat.view(flat.shape[0], *input_shape))
        return out

    with eval_mode(model):
        clean_logits = clean_predictions(counter, x_flat, input_shape, chunk)
        check_model_output(clean_logits, objective)
        clean_correct = objective.correct(clean_logits, y)
        # grid flip radius found so far: 0 for clean mistakes, inf while standing
        flip = torch.where(clean_correct, math.inf, 0.0).to(torch.float64)
        first_starts: torch.Tensor | None = None  # restart 0's (B, D) draw, reused per radius
        bar = progress_bar(total=radii.numel(), desc="incremental pgd", enabled=progress)
        for i in range(radii.numel()):
            radius = float(radii[i])
            if radius > 0:  # at eps 0 the attack evaluates x itself: the clean prediction
                for restart in range(restarts):
                    if restart == 0:
                        if first_starts is None:
                            first_starts = _starts(n_points, dim, random_start, seed, 0, x)
                        starts = first_starts
                    else:  # regenerated rather than held: restarts * B * D could be large
                        starts = _starts(n_points, dim, random_start, seed, restart, x)
                    standing = torch.isinf(flip) & (limit > radius)
                    for idx in torch.nonzero(standing).flatten().split(chunk):
                        e = radii[i].expand(idx.numel())
                        a = alphas[i].expand(idx.numel())
                        _, logits = _attack_chunk(
                            forward,
                            x_flat[idx],
                            y[idx],
                            e,
                            a,
                            e[:, None] * starts[idx],
                            norm,
                            steps,
                            box,
                            objective,
                        )
                        fooled = ~objective.correct(logits, y[idx])
                        flip[idx[fooled]] = radius
            bar.update(1)
        bar.close()
    return CurveResult.from_flip_radius(
        radii,
        torch.minimum(flip, limit),
        gradient_evaluations=counter.gradient_evaluations,
        forward_evaluations=counter.forward_evaluations,
        wall_s=time.perf_counter() - start_time,
        method="incremental",
        norm=norm,
    )


def _starts(
    n_points: int, dim: int, kind: str, seed: int, restart: int, like: torch.Tensor
) -> torch.Tensor:
    """pgd's unit-scale starts of ``restart`` (B, D), in ``like``'s dtype and device."""
    return start_directions(n_points, dim, kind, seed, restart, like.dtype).to(like.device)


def descend_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float] | torch.Tensor,
    known_flip: torch.Tensor,
    x_known: torch.Tensor | None = None,
    *,
    norm: Norm = "l2",
    steps: int = 7,
    rel_step: float = 0.25,
    restarts: int = 1,
    objective: Objective = CrossEntropy(),
    seed: int = 0,
    batch_size: int | None = None,
    box: tuple[float, float] | None = None,
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
        norm, steps, rel_step, objective, seed, batch_size, box: PGD's, as in :func:`pgd`
            (a random start on the eps-sphere for L2, in the eps-box for L-inf).
        restarts: PGD runs per point and radius before the descent stops: the warm start,
            then pgd's random starts of restarts 1, 2, ... (a warm start from a poor
            minimum-norm result can sit in the wrong basin; a random one escapes it).
            (Default: 1)

    Cost: at most steps gradient evaluations per run; restarts failed runs per point correct
    clean with a grid radius > 0 below nu, plus one to restarts runs per grid radius it
    descends.

    Shape:
        - x: (B, \*input_shape); y: (B,); eps: (R,); known_flip: (B,)
        - returns :class:`CurveResult` (method "descend"), flip radius min(nu, PGD's).
    """
    check_attack_args(x, norm, box)
    if steps < 1 or restarts < 1:
        raise ValueError(f"need steps >= 1 and restarts >= 1, got {steps}, {restarts}")
    start_time = time.perf_counter()
    device, dtype = x.device, x.dtype
    radii = check_radii(eps, dtype, device).sort().values
    y = objective.prepare(y, device)
    n_points, input_shape = x.shape[0], tuple(x.shape[1:])
    dim = math.prod(input_shape)
    x_flat = x.detach().reshape(n_points, dim)
    chunk = n_points if batch_size is None else max(1, int(batch_size))
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

    def forward(flat: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = counter(flat.view(flat.shape[0], *input_shape))
        return out

    with eval_mode(model):
        clean_correct = objective.correct(clean_predictions(counter, x_flat, input_shape, chunk), y)
        flip = torch.where(clean_correct, nu, 0.0)
        # level: index of the largest grid radius < flip (-1: none)
        level = torch.searchsorted(radii.to(torch.float64), flip.contiguous()) - 1
        active = clean_correct & (level >= 0)
        while bool(active.any()):
            active &= radii[level.clamp_min(0)] > 0  # eps 0 is the clean prediction
            todo = active.clone()  # this round's points not yet fooled at their level
            for restart in range(restarts):
                if restart > 0 and restart not in random_units:
                    random_units[restart] = start_directions(
                        n_points, dim, kind, seed, restart, dtype
                    ).to(device)
                starts = unit if restart == 0 else random_units[restart]
                for idx in torch.nonzero(todo).flatten().split(chunk):
                    e = radii[level[idx]]
                    fooled, delta = pgd_until_fooled(
                        forward,
                        x_flat[idx],
                        y[idx],
                        e,
                        rel_step * e,
                        e[:, None] * starts[idx],
                        norm,
                        steps,
                        box,
                        objective,
                    )
                    won = idx[fooled]
                    flip[won] = e[fooled].to(torch.float64)
                    size = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(1)
                    unit[won] = delta[fooled] / size[fooled].clamp_min(1e-30)[:, None]
                    todo[won] = False
            level[active & ~todo] -= 1
            active &= ~todo  # a level no restart could flip ends the descent
            active &= level >= 0
    return CurveResult.from_flip_radius(
        radii,
        flip,
        gradient_evaluations=counter.gradient_evaluations,
        forward_evaluations=counter.forward_evaluations,
        wall_s=time.perf_counter() - start_time,
        method="descend",
        norm=norm,
    )


def pgd_until_fooled(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    alpha: torch.Tensor,
    delta: torch.Tensor,
    norm: str,
    steps: int,
    box: tuple[float, float] | None,
    objective: Objective,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD on flat inputs x (n, D), radius eps and step alpha per row (n,), from ``delta``
    (n, D), each row stopping at its first adversarial iterate (the start included).

    Returns fooled (n,) bool and the perturbations (n, D): the adversarial one where fooled
    (norm <= eps, inside the box, verified by the forward pass that flagged it), the final
    iterate elsewhere. Cost: one gradient evaluation per row and step until it is fooled,
    one forward-only pass for the rows standing after the last step."""
    delta = _feasible(x, project(delta, eps, norm), box)
    fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(steps):
        rows = torch.nonzero(~fooled).flatten()
        if rows.numel() == 0:
            break
        d = delta[rows].requires_grad_(True)
        with torch.enable_grad():
            logits = forward(x[rows] + d)
            loss = objective.loss(logits, y[rows])
            (grad,) = torch.autograd.grad(loss.sum(), d)
        with torch.no_grad():
            adv = ~objective.correct(logits.detach(), y[rows])
            fooled[rows[adv]] = True  # delta[rows[adv]] is the adversarial iterate: kept
            go = rows[~adv]
            e = eps[go]
            moved = delta[go] + alpha[go][:, None] * ascent_direction(grad[~adv], norm)
            delta[go] = _feasible(x[go], project(moved, e, norm), box)
    with torch.no_grad():
        rows = torch.nonzero(~fooled).flatten()
        if rows.numel():
            fooled[rows] = ~objective.correct(forward(x[rows] + delta[rows]), y[rows])
    return fooled, delta
