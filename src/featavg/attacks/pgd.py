"""Projected gradient descent (PGD) attacks on any ``nn.Module``, all radii in one batch.

PGD (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR
2018, arXiv 1706.06083) maximises a loss L(f(x + delta), y) over the ball ||delta|| <= eps:

    delta_0 = random start (projected onto the ball),
    delta_{t+1} = Proj_eps(delta_t + alpha * s(grad_delta L)),

with s(g) = g / ||g||_2 (L2) or sign(g) (L-inf). The featavg paper's protocol (Fig. 3,
authors' synthetic code): L2, 7 steps, alpha = eps / 4, random start uniform on the
eps-sphere, no box. Those are the defaults here.

Every radius of a robustness curve is attacked in ONE batched computation: x is replicated
R times into an (R*B, ...) batch carrying a per-sample radius and step size.

Seeding: restart r draws one unit-scale start u of shape (B, D) from the CPU generator
``featavg.seeding.generator(seed, f"attack/start/{r}")`` (in float64, then cast and moved to
x's device); the start at radius eps is eps * u, the same direction for every radius. So a
batched call equals per-radius calls with the same seed, results do not depend on the device,
and the curves use common random numbers across radii (smoother in eps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from featavg.attacks.core import (
    AttackSettings,
    Rows,
    check_inputs,
    check_radii,
    flat_inputs,
    pgd_steps,
    start_directions,
    step_sizes,
)
from featavg.attacks.objectives import check_model_output
from featavg.progress import bar as progress_bar

Payload = TypeVar("Payload")  # what an attack chunk hands to ``keep`` (see run_restarts)


@dataclass
class PGDResult:
    """Outcome of an attack on B points at R radii.

    eps: (R,) radii. x_adv: (R, B, *input_shape) adversarial inputs. correct: (R, B) bool,
    True where the point resisted every restart at that radius. logits: (R, B, ...) model
    outputs at x_adv (None when not recorded). clean_correct: (B,) bool, the clean
    prediction's correctness (None when not recorded).
    """

    eps: torch.Tensor
    x_adv: torch.Tensor
    correct: torch.Tensor
    logits: torch.Tensor | None = None
    clean_correct: torch.Tensor | None = None

    @property
    def robust_accuracy(self) -> torch.Tensor:
        """(R,) float: fraction of points still correctly classified at each radius."""
        return self.correct.to(torch.float64).mean(1)

    @property
    def flip_radius(self) -> torch.Tensor:
        """(B,) smallest grid radius at which each point is fooled (inf if never)."""
        return flip_radius_from_grid(self.eps, self.correct)


def flip_radius_from_grid(
    eps: torch.Tensor | Sequence[float], correct: torch.Tensor
) -> torch.Tensor:
    """(B,) per point, the smallest radius in ``eps`` (R,) at which ``correct`` (R, B) is
    False; inf if the point is correct at every radius. The grid need not be sorted. This is
    an upper bound on the true minimal flipping radius (PGD may miss closer points)."""
    eps = torch.as_tensor(eps, dtype=torch.float64, device=correct.device).flatten()
    if correct.shape[0] != eps.numel():
        raise ValueError(f"correct: expected {eps.numel()} rows, got {correct.shape[0]}")
    at = torch.where(correct, torch.full_like(eps[:, None], math.inf), eps[:, None])
    return at.min(0).values


def run_restarts(
    n_points: int,
    radii: torch.Tensor,
    clean_correct: torch.Tensor,
    settings: AttackSettings,
    attack: Callable[[int, torch.Tensor], tuple[torch.Tensor, Payload]],
    keep: Callable[[torch.Tensor, Payload, torch.Tensor], None],
    desc: str = "pgd",
) -> torch.Tensor:
    """Drive ``settings.restarts`` restarts over the flattened (R*B) batch; return
    correctness (R, B).

    Flat index i stands for radius i // B and point i % B. A point misclassified clean is
    fooled at every radius. Restart r attacks only the points not yet fooled, in chunks of
    ``settings.batch_size``: ``attack(r, idx) -> (correct (len(idx),), payload)``; then
    ``keep(idx_subset, payload, mask)`` stores the payload rows selected by ``mask`` for
    the points fooled now (first success) or, at the last restart, still standing.
    """
    restarts = settings.restarts
    total = radii.numel() * n_points
    fooled = (~clean_correct).repeat(radii.numel())
    chunk = settings.chunk(total)
    bar = progress_bar(total=restarts, desc=desc, enabled=settings.progress)
    for restart in range(restarts):
        last = restart == restarts - 1
        active = torch.nonzero(~fooled).flatten()
        for idx in active.split(chunk):
            ok, payload = attack(restart, idx)
            take = ~ok | last
            keep(idx[take], payload, take)
            fooled[idx[~ok]] = True
        bar.update(1)
    bar.close()
    return (~fooled).view(radii.numel(), n_points)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float] | torch.Tensor,
    settings: AttackSettings = AttackSettings(),
    *,
    init_delta: torch.Tensor | None = None,
) -> PGDResult:
    r"""PGD at every radius in ``eps`` at once (Madry et al. 2018).

    Distance measure: L2 (``norm="l2"``) or L-inf (``norm="linf"``).

    Arguments:
        model (nn.Module): maps (N, \*input_shape) to logits (N, C) (or a margin (N,) /
            (N, 1) for :class:`~featavg.attacks.objectives.BinaryMargin`). Run in eval mode
            (its mode is restored afterwards); its parameters are never changed and get no
            gradients.
        x: (B, \*input_shape) clean inputs. y: (B,) labels in the form ``objective`` needs.
        eps: R radii (sequence or 1-D tensor), 0 allowed (gives clean accuracy).
        settings (:class:`~featavg.attacks.core.AttackSettings`): the attack; read here:

            * norm: "l2" (step along g/||g||, project onto the ball) or "linf" (step along
              sign(g), clip to [-eps, eps]). (Default: "l2")
            * steps: gradient steps. (Default: 7, the paper)
            * step_size: step alpha for every radius; overrides ``rel_step``.
              (Default: None)
            * rel_step: alpha = rel_step * eps per radius. (Default: 0.25, the paper's
              eps/4)
            * restarts: a point is robust at a radius only if it is correct after every
              restart; x_adv keeps the first successful restart (else the last).
              (Default: 1)
            * random_start: "sphere" (uniform on the eps-sphere, the paper), "ball"
              (uniform in the ball), "box" (uniform in [-eps, eps]^D, for L-inf), "none".
              The start is projected onto the ball. (Default: "sphere")
            * box: None (no clamping, synthetic data) or (lo, hi), e.g. (0, 1) for images:
              x + delta is clamped into it after the start and after every step; x must
              lie in it. (Default: None)
            * objective: loss maximised and correctness. (Default: CrossEntropy())
            * seed: random starts come from CPU generators seeded by it (see the module
              docstring).
            * batch_size: chunk the (R*B) replicated batch to bound memory. (Default:
              None, one chunk)
            * progress: show a progress bar over restarts.
        init_delta: optional (R, B, \*input_shape) start of restart 0 instead of a random
            one (projected like a random start); later restarts draw random starts.

    Evaluated: the clean point (misclassified clean => fooled at every radius) and the
    final iterate of each restart.

    Shape:
        - x: (B, \*input_shape); y: (B,); eps: (R,)
        - returns :class:`PGDResult` with x_adv (R, B, \*input_shape), correct (R, B),
          logits (R, B, ...).
    """
    check_inputs(x, settings)
    objective = settings.objective
    device, dtype = x.device, x.dtype
    radii = check_radii(eps, dtype, device)
    alphas = step_sizes(radii, settings)
    y = objective.prepare(y, device)
    n_points = x.shape[0]
    x_flat, input_shape, dim = flat_inputs(x)
    if init_delta is not None:
        init_delta = init_delta.to(device=device, dtype=dtype)
        init_delta = init_delta.reshape(radii.numel() * n_points, dim)

    def forward(flat: torch.Tensor) -> torch.Tensor:
        return model(flat.view(flat.shape[0], *input_shape))

    was_training = getattr(model, "training", None)
    if was_training is not None:
        model.eval()
    try:
        with torch.no_grad():
            chunk = settings.chunk(n_points)
            clean_logits = torch.cat([forward(xb) for xb in x_flat.split(chunk)])
        check_model_output(clean_logits, objective)
        clean_correct = objective.correct(clean_logits, y)

        num_r = radii.numel()
        x_adv = x_flat.repeat(num_r, 1)
        logits_adv = clean_logits.repeat(num_r, *([1] * (clean_logits.ndim - 1)))
        starts: dict[int, torch.Tensor] = {}

        def attack(
            restart: int, idx: torch.Tensor
        ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
            if restart not in starts:
                starts.clear()  # one restart's (B, D) draw in memory at a time
                starts[restart] = start_directions(
                    n_points, dim, settings.random_start, settings.seed, restart, dtype
                ).to(device)
            point = idx % n_points
            e, a = radii[idx // n_points], alphas[idx // n_points]
            if restart == 0 and init_delta is not None:
                delta0 = init_delta[idx]
            else:
                delta0 = e[:, None] * starts[restart][point]
            rows = Rows(x_flat[point], y[point], e, a)
            adv, logits = pgd_steps(forward, rows, delta0, settings)
            return objective.correct(logits, y[point]), (adv, logits)

        def keep(
            rows: torch.Tensor, payload: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor
        ) -> None:
            adv, logits = payload
            x_adv[rows] = adv[mask]
            logits_adv[rows] = logits[mask]

        correct = run_restarts(n_points, radii, clean_correct, settings, attack, keep)
    finally:
        if was_training:
            model.train()
    return PGDResult(
        eps=radii,
        x_adv=x_adv.view(num_r, n_points, *input_shape),
        correct=correct,
        logits=logits_adv.view(num_r, n_points, *clean_logits.shape[1:]),
        clean_correct=clean_correct,
    )
