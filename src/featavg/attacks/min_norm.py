"""Minimum-norm attacks: each point's smallest found adversarial perturbation, hence a whole
robustness curve from one run (acc(eps) = fraction of points whose found norm exceeds eps).

* :func:`fmn`, Fast Minimum-Norm (Pintor, Roli, Brendel, Biggio, "Fast Minimum-norm
  Adversarial Attacks through Adaptive Norm Constraints", NeurIPS 2021), L2 and L-inf. Each
  step descends the margin m(x + delta) along its L2-normalised gradient (step alpha_k,
  cosine-annealed) and projects onto an adaptive ball of radius eps_k:
  adversarial -> eps_k = min(eps_{k-1} (1 - gamma_k), best norm so far); not adversarial
  and none found yet -> eps_k = ||delta|| + |m| / ||grad m||_* (the linear estimate of the
  distance to the boundary, ||.||_* the dual norm); else eps_k = eps_{k-1} (1 + gamma_k).
  gamma_k is cosine-annealed from 0.05 to 0.001 (the paper's values).
* :func:`ddn`, Decoupling Direction and Norm (Rony et al., "Decoupling Direction and Norm
  for Efficient Gradient-Based L2 Adversarial Attacks", CVPR 2019), L2 only. delta moves
  along the normalised gradient (step alpha_k, cosine-annealed) and is rescaled to norm
  eps_k, which shrinks by (1 - gamma) after an adversarial iterate and grows by (1 + gamma)
  otherwise.

Both track the smallest-norm iterate that is misclassified. Departures from the papers,
all for inputs that are not [0, 1] images (synthetic data, normalised images):

* Scale. The papers' step sizes (alpha = 1) and DDN's initial norm (1) are in [0, 1]-pixel
  units. Here alpha is relative: the step's L2 length is alpha_k * eps_k for L2 and
  alpha_k * eps_k * sqrt(D) (the L-inf ball's corner) for L-inf, and DDN starts from the
  linear estimate |m| / ||grad m||_2 of the distance at x (``init_norm`` restores a fixed one).
* Loss. Both descend a logit margin m whose sign is the objective's correctness (DDN uses
  cross-entropy in the paper; the margin's gradient does not vanish on confident points):
  CrossEntropy: m = z_y - max_{j != y} z_j; GroupCrossEntropy (a k-class model read out by
  class group): m = max_{j in G(y)} z_j - max_{j not in G(y)} z_j, the margin between the
  best class of the true group and the best of the others. (The smooth group margin
  logsumexp_{G(y)} z - logsumexp_{others} z is not used: its zero set is not the decision
  boundary, so its |m| / ||grad m|| is no distance estimate.) BinaryMargin: m = y f.
  Success is always the objective's ``correct`` being False.
* FMN's linear extrapolation (before any adversarial is found) aims past the estimated
  boundary by the factor 1 + gamma_k: on a locally linear model it otherwise lands exactly
  on the boundary, and rounding can keep it on the correct side step after step.
* The last iterate is evaluated too (one forward pass), not only those a gradient was
  taken at.
* A point whose margin gradient is exactly zero (e.g. dead ReLUs) stays where it is.

Cost: steps gradient evaluations per point correctly classified clean (points
misclassified clean get norm 0 and no attack), plus 2 forward-only passes per point.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from featavg.attacks.core import (
    AttackSettings,
    Forward,
    GradientCounter,
    ascent_direction,
    check_inputs,
    clean_predictions,
    eval_mode,
    feasible,
    lp_norm,
    project,
)
from featavg.attacks.objectives import (
    BinaryMargin,
    CrossEntropy,
    GroupCrossEntropy,
    Objective,
    check_model_output,
)
from featavg.progress import bar as progress_bar

# one chunk's attack: (forward, x (n, D), y (n,), tick) -> best adversarial (n, D), found (n,)
ChunkAttack = Callable[
    [Forward, torch.Tensor, torch.Tensor, Callable[[], None]],
    tuple[torch.Tensor, torch.Tensor],
]
DEFAULT_STEPS = 100  # minimum-norm steps when the settings name none


@dataclass(frozen=True)
class FMNSchedule:
    """FMN's step and radius schedules, cosine-annealed from init to final.

    alpha_init, alpha_final: step length, relative to the ball (see the module docstring).
    (Default: 1.0 and alpha_init / 100.) gamma_init, gamma_final: relative change of the
    ball radius per step. (Default: 0.05 and 0.001, the paper's)
    """

    alpha_init: float = 1.0
    alpha_final: float | None = None
    gamma_init: float = 0.05
    gamma_final: float = 0.001


@dataclass(frozen=True)
class DDNSchedule:
    """DDN's norm and step schedules.

    gamma: relative change of the norm per step, fixed. (Default: 0.05, the paper's)
    init_norm: the starting norm; None: the linear estimate |m| / ||grad m||_2 at x. (The
    paper: 1, in [0, 1]-pixel units.) (Default: None) alpha_init, alpha_final: step length
    relative to the current norm, cosine-annealed. (Default: 1.0, 0.01: the paper's)
    """

    gamma: float = 0.05
    init_norm: float | None = None
    alpha_init: float = 1.0
    alpha_final: float = 0.01


@dataclass
class MinNormResult:
    """Per-point smallest adversarial perturbations found.

    norms: (B,) float64 on the CPU, ||x_adv - x|| in the attack's norm; 0 for a point
    misclassified clean, inf where no adversarial input was found. x_adv: (B, \\*input_shape)
    the adversarial inputs (x itself where none was found). gradient_evaluations /
    forward_evaluations: passes per point (int). wall_s: seconds. method, norm: what made it.
    clean_correct: (B,) bool, whether the clean prediction is correct.
    """

    norms: torch.Tensor
    x_adv: torch.Tensor
    gradient_evaluations: int
    wall_s: float = 0.0
    forward_evaluations: int = 0
    method: str = ""
    norm: str = ""
    clean_correct: torch.Tensor | None = None


def margin(objective: Objective, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) logit margin, positive where the objective counts the prediction correct (see the
    module docstring): CrossEntropy z_y - max_{j != y} z_j; GroupCrossEntropy
    max_{G(y)} z - max_{not G(y)} z; BinaryMargin y f. Other objectives: TypeError."""
    if isinstance(objective, BinaryMargin):
        f = logits[:, 0] if logits.ndim == 2 else logits
        return y.to(logits.dtype) * f
    if isinstance(objective, GroupCrossEntropy):
        groups = objective.groups.to(logits.device)
        own = groups[None, :] == y[:, None]
    elif isinstance(objective, CrossEntropy):
        own = torch.zeros_like(logits, dtype=torch.bool)
        own.scatter_(1, y[:, None], True)
    else:
        raise TypeError(
            "min-norm attacks need a CrossEntropy, GroupCrossEntropy or BinaryMargin "
            f"objective, got {objective!r}"
        )
    best_own = logits.masked_fill(~own, -math.inf).amax(1)
    best_other = logits.masked_fill(own, -math.inf).amax(1)
    return best_own - best_other


def fmn(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: AttackSettings = AttackSettings(),
    schedule: FMNSchedule = FMNSchedule(),
) -> MinNormResult:
    r"""Fast Minimum-Norm attack (Pintor et al. 2021), L2 or L-inf; see the module docstring.

    Arguments:
        model: maps (N, \*input_shape) to logits; run in eval mode, never changed.
        x: (B, \*input_shape) clean inputs; y: (B,) labels in the form ``objective`` needs.
        settings (:class:`~featavg.attacks.core.AttackSettings`): read here:

            * norm: "l2" or "linf".
            * min_norm_steps: gradient steps per point. (Default: None, 100)
            * objective: what counts as correct and which margin is descended.
            * box: None or (lo, hi): x + delta is clamped into it (and the radius capped at
              the farthest point of the box); x must lie in it.
            * batch_size: points per chunk (Default: None, all at once). progress: a bar.
            * FMN draws nothing random: seed is not read.
        schedule: the step and radius schedules (:class:`FMNSchedule`, the paper's).

    Shape:
        - x: (B, \*input_shape); y: (B,)
        - returns :class:`MinNormResult`, norms (B,), x_adv (B, \*input_shape).
    """
    steps = DEFAULT_STEPS if settings.min_norm_steps is None else settings.min_norm_steps
    norm, objective, box = settings.norm, settings.objective, settings.box
    alpha_init, gamma_init, gamma_final = (
        schedule.alpha_init,
        schedule.gamma_init,
        schedule.gamma_final,
    )
    final = alpha_init / 100 if schedule.alpha_final is None else schedule.alpha_final

    def attack(
        forward: Forward, x0: torch.Tensor, y0: torch.Tensor, tick: Callable[[], None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dual = "l1" if norm == "linf" else "l2"
        scale = math.sqrt(x0.shape[1]) if norm == "linf" else 1.0
        worst = _worst_norm(x0, box, norm)
        tracker = _Best(x0)
        delta = torch.zeros_like(x0)
        radius = torch.full_like(x0[:, 0], math.inf)
        for k in range(steps):
            cosine = (1 + math.cos(math.pi * k / steps)) / 2
            alpha = final + (alpha_init - final) * cosine
            gamma = gamma_final + (gamma_init - gamma_final) * cosine
            m, grad, adv = _margin_and_grad(forward, x0, y0, delta, objective)
            with torch.no_grad():
                size = lp_norm(delta, norm)
                tracker.update(x0 + delta, size, adv)
                dist = m.abs() / lp_norm(grad, dual)
                radius = torch.where(
                    adv,
                    torch.minimum(radius * (1 - gamma), tracker.norm),
                    torch.where(tracker.found, radius * (1 + gamma), (size + dist) * (1 + gamma)),
                )
                radius = torch.minimum(radius, worst)
                # a zero gradient gives an infinite estimate: stay at the current size
                radius = torch.where(torch.isfinite(radius), radius, size)
                step = (alpha * scale) * radius[:, None] * ascent_direction(-grad, "l2")
                delta = feasible(x0, project(delta + step, radius, norm), box)
            tick()
        tracker.final(forward, x0, y0, delta, norm, objective)
        return tracker.adv, tracker.found

    return _run("fmn", attack, model, x, y, settings, steps)


def ddn(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: AttackSettings = AttackSettings(),
    schedule: DDNSchedule = DDNSchedule(),
) -> MinNormResult:
    r"""Decoupled Direction and Norm attack (Rony et al. 2019), L2; see the module docstring.

    Arguments as :func:`fmn`, except:
        settings.norm: "l2" only (DDN is an L2 attack).
        schedule: the norm and step schedules (:class:`DDNSchedule`, the paper's).
    """
    if settings.norm != "l2":
        raise ValueError(f"norm: DDN is an L2 attack, got {settings.norm!r}")
    steps = DEFAULT_STEPS if settings.min_norm_steps is None else settings.min_norm_steps
    objective, box = settings.objective, settings.box
    gamma, alpha_init, alpha_final = schedule.gamma, schedule.alpha_init, schedule.alpha_final

    def attack(
        forward: Forward, x0: torch.Tensor, y0: torch.Tensor, tick: Callable[[], None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        worst = _worst_norm(x0, box, "l2")
        tracker = _Best(x0)
        delta = torch.zeros_like(x0)
        radius = torch.ones_like(x0[:, 0])
        for k in range(steps):
            cosine = (1 + math.cos(math.pi * k / steps)) / 2
            alpha = alpha_final + (alpha_init - alpha_final) * cosine
            m, grad, adv = _margin_and_grad(forward, x0, y0, delta, objective)
            with torch.no_grad():
                tracker.update(x0 + delta, delta.norm(dim=1), adv)
                if k == 0:
                    estimate = m.abs() / grad.norm(dim=1)
                    if schedule.init_norm is not None:
                        estimate = torch.full_like(estimate, float(schedule.init_norm))
                    ok = torch.isfinite(estimate) & (estimate > 0)
                    radius = torch.where(ok, estimate, radius)
                radius = torch.where(adv, radius * (1 - gamma), radius * (1 + gamma))
                radius = torch.minimum(radius, worst)
                delta = delta + alpha * radius[:, None] * ascent_direction(-grad, "l2")
                length = delta.norm(dim=1).clamp_min(torch.finfo(delta.dtype).tiny)
                delta = feasible(x0, delta * (radius / length)[:, None], box)
            tick()
        tracker.final(forward, x0, y0, delta, "l2", objective)
        return tracker.adv, tracker.found

    return _run("ddn", attack, model, x, y, settings, steps)


class _Best:
    """The smallest-norm misclassified iterate of each row so far."""

    def __init__(self, x0: torch.Tensor):
        self.adv = x0.clone()
        self.norm = torch.full_like(x0[:, 0], math.inf)
        self.found = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)

    def update(self, candidate: torch.Tensor, size: torch.Tensor, adv: torch.Tensor) -> None:
        """Keep ``candidate`` rows (n, D) that are adversarial and smaller than the best."""
        better = adv & (size < self.norm)
        self.norm = torch.where(better, size, self.norm)
        self.adv[better] = candidate[better]
        self.found |= adv

    def final(
        self,
        forward: Forward,
        x0: torch.Tensor,
        y0: torch.Tensor,
        delta: torch.Tensor,
        norm: str,
        objective: Objective,
    ) -> None:
        """Evaluate the last iterate (forward only)."""
        with torch.no_grad():
            candidate = x0 + delta
            adv = ~objective.correct(forward(candidate), y0)
            self.update(candidate, lp_norm(delta, norm), adv)


def _margin_and_grad(
    forward: Forward,
    x0: torch.Tensor,
    y0: torch.Tensor,
    delta: torch.Tensor,
    objective: Objective,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Margin (n,), its gradient in delta (n, D) and adversarial flags (n,) at x0 + delta."""
    delta = delta.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = forward(x0 + delta)
        m = margin(objective, logits, y0)
        (grad,) = torch.autograd.grad(m.sum(), delta)
    with torch.no_grad():
        adv = ~objective.correct(logits, y0)
    return m.detach(), grad, adv


def _worst_norm(x0: torch.Tensor, box: tuple[float, float] | None, norm: str) -> torch.Tensor:
    """(n,) distance from x0 to the farthest point of the box (no larger radius is useful);
    inf without a box."""
    if box is None:
        return torch.full_like(x0[:, 0], math.inf)
    return lp_norm(torch.maximum(x0 - box[0], box[1] - x0), norm)


def _run(
    method: str,
    attack: ChunkAttack,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: AttackSettings,
    steps: int,
) -> MinNormResult:
    """Shared driver: clean pass, chunks of the points correct clean, the result."""
    check_inputs(x, settings)
    norm, objective = settings.norm, settings.objective
    if steps < 1:
        raise ValueError(f"steps: need >= 1, got {steps}")
    start_time = time.perf_counter()
    y = objective.prepare(y, x.device)
    n_points, input_shape = x.shape[0], tuple(x.shape[1:])
    x_flat = x.detach().reshape(n_points, -1)
    chunk = settings.chunk(n_points)
    counter = GradientCounter(model)
    forward = counter.flat(input_shape)

    x_adv = x_flat.clone()
    found = torch.zeros(n_points, dtype=torch.bool, device=x.device)
    with eval_mode(model):
        clean_logits = clean_predictions(forward, x_flat, chunk)
        check_model_output(clean_logits, objective)
        clean_correct = objective.correct(clean_logits, y)
        found |= ~clean_correct  # x itself is adversarial: norm 0
        todo = torch.nonzero(clean_correct).flatten().split(chunk)
        bar = progress_bar(total=len(todo) * steps, desc=method, enabled=settings.progress)

        def tick() -> None:
            bar.update(1)

        for idx in todo:
            adv, ok = attack(forward, x_flat[idx], y[idx], tick)
            x_adv[idx] = adv
            found[idx] = ok
        bar.close()
    diff = x_adv.to(torch.float64) - x_flat.to(torch.float64)
    norms = torch.where(found, lp_norm(diff, norm), math.inf).cpu()
    return MinNormResult(
        norms=norms,
        x_adv=x_adv.view(n_points, *input_shape),
        gradient_evaluations=counter.gradient_evaluations,
        wall_s=time.perf_counter() - start_time,
        forward_evaluations=counter.forward_evaluations,
        method=method,
        norm=norm,
        clean_correct=clean_correct.cpu(),
    )
