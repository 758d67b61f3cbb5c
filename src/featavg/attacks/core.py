"""What every attack of :mod:`featavg.attacks` shares: its settings, its result types, the
bookkeeping of its cost and the PGD step it is built from.

* :class:`AttackSettings`: one frozen object of attack hyper-parameters (norm, steps, step
  size, restarts, random start, box, objective, seed, batch size, minimum-norm steps,
  progress) taken by :func:`~featavg.attacks.pgd.pgd`,
  :func:`~featavg.attacks.incremental.incremental_pgd`,
  :func:`~featavg.attacks.descend.descend_pgd`, :func:`~featavg.attacks.min_norm.fmn`,
  :func:`~featavg.attacks.min_norm.ddn`,
  :func:`~featavg.attacks.robustness_curve.robustness_curve` and the two-layer subspace PGD.
* :class:`CurveResult`, :class:`GradientCounter`, :func:`eval_mode`: a robustness curve and
  what it cost.
* The projected step: :func:`start_directions`, :func:`project`, :func:`ascent_direction`,
  :func:`feasible`, :func:`pgd_steps` (Madry et al. 2018: delta <- Proj(delta + alpha s(g))).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import nn

from featavg.attacks.objectives import CrossEntropy, Objective
from featavg.config import ConfigError
from featavg.seeding import generator

Norm = Literal["l2", "linf"]
RandomStart = Literal["sphere", "ball", "box", "none"]
NORMS = ("l2", "linf")
RANDOM_STARTS = ("sphere", "ball", "box", "none")
Forward = Callable[[torch.Tensor], torch.Tensor]  # flat inputs (n, D) -> model outputs
# attacks usually run in float32: a setting beyond its range turns into inf, and an inf step
# into NaN perturbations that count as fooling every point (the clean ones included)
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _check_float(name: str, value: float, minimum: float | None = None) -> None:
    """Refuse a float setting that is not finite, beyond float32's range or below
    ``minimum``, with a one-line ConfigError naming it."""
    v = float(value)
    if not math.isfinite(v) or abs(v) > FLOAT32_MAX:
        raise ConfigError(
            f"{name}: must be finite and within float32's range (|x| <= {FLOAT32_MAX:.3g}), "
            f"got {value!r}"
        )
    if minimum is not None and v < minimum:
        raise ConfigError(f"{name}: must be >= {minimum:g}, got {value!r}")


@dataclass(frozen=True)
class AttackSettings:
    """How to attack: the hyper-parameters every attack function takes as one object.

    Defaults are the featavg paper's PGD protocol (Fig. 3, authors' synthetic code): L2,
    7 steps of eps/4, one random start on the eps-sphere, no box.

    Attributes:
        norm: "l2" or "linf". (Default: "l2")
        steps: PGD gradient steps. (Default: 7)
        rel_step: PGD step alpha = rel_step * eps per radius, >= 0. (Default: 0.25, eps/4)
        step_size: an absolute step alpha >= 0 for every radius; overrides ``rel_step``.
            (Default: None)
        restarts: PGD runs per point and radius; a point is robust only if it resists
            every one. (Default: 1)
        random_start: "sphere" (uniform on the eps-sphere), "ball" (uniform in the ball),
            "box" (uniform in [-eps, eps]^D, for L-inf) or "none". (Default: "sphere")
        box: None (no clamping) or (lo, hi): x + delta is clamped into it; x must lie in
            it. (Default: None)

    Float settings (rel_step, step_size, box) must be finite and within float32's range
    (a ConfigError names the one that is not); so must the radii and the steps they give.
        objective: the loss maximised and what counts as correct.
            (Default: CrossEntropy())
        seed: the random starts come from CPU generators seeded by it. (Default: 0)
        batch_size: rows per chunk, to bound memory. (Default: None, one chunk)
        min_norm_steps: FMN / DDN steps. (Default: None: the curve method's own default,
            100 for a minimum-norm attack called alone)
        progress: show progress bars. (Default: False)
    """

    norm: Norm = "l2"
    steps: int = 7
    rel_step: float = 0.25
    step_size: float | None = None
    restarts: int = 1
    random_start: RandomStart = "sphere"
    box: tuple[float, float] | None = None
    objective: Objective = CrossEntropy()
    seed: int = 0
    batch_size: int | None = None
    min_norm_steps: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ConfigError(f"norm: must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.random_start not in RANDOM_STARTS:
            raise ConfigError(
                f"random_start: must be one of {', '.join(RANDOM_STARTS)}, "
                f"got {self.random_start!r}"
            )
        if self.steps < 0 or self.restarts < 1:
            raise ConfigError(
                f"steps, restarts: need steps >= 0 and restarts >= 1, "
                f"got {self.steps}, {self.restarts}"
            )
        if self.min_norm_steps is not None and self.min_norm_steps < 1:
            raise ConfigError(f"min_norm_steps: need >= 1, got {self.min_norm_steps}")
        _check_float("rel_step", self.rel_step, minimum=0.0)
        if self.step_size is not None:
            _check_float("step_size", self.step_size, minimum=0.0)
        if self.box is not None:
            if len(self.box) != 2:
                raise ConfigError(f"box: need (lo, hi), got {self.box!r}")
            _check_float("box", self.box[0])
            _check_float("box", self.box[1])

    def chunk(self, rows: int) -> int:
        """Rows per chunk: ``batch_size``, or all ``rows`` at once."""
        return rows if self.batch_size is None else max(1, int(self.batch_size))


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
    (clean predictions, final iterates). clean_correct: (B,) bool, the clean prediction's
    correctness (None where the method did not record it); at radius 0 the curve is it.

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
    clean_correct: torch.Tensor | None = None

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

    def add_cost(self, other: CurveResult | StageCost) -> None:
        """Add another stage's gradient / forward evaluations and seconds to this one's."""
        self.gradient_evaluations += other.gradient_evaluations
        self.forward_evaluations += other.forward_evaluations
        self.wall_s += other.wall_s


class StageCost(Protocol):
    """What :meth:`CurveResult.add_cost` reads of a stage."""

    gradient_evaluations: int
    forward_evaluations: int
    wall_s: float


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

    def flat(self, input_shape: tuple[int, ...]) -> Forward:
        """A forward on flat rows (n, D): reshaped to (n, \\*input_shape), counted."""

        def forward(flat: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self(flat.view(flat.shape[0], *input_shape))
            return out

        return forward


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


def check_inputs(x: torch.Tensor, settings: AttackSettings) -> None:
    """Shared checks: floating x inside the settings' box."""
    if not x.is_floating_point():
        raise ValueError("x: must be a floating-point tensor")
    box = settings.box
    if box is not None:
        lo, hi = float(box[0]), float(box[1])
        if not lo <= hi or bool((x < lo).any()) or bool((x > hi).any()):
            raise ValueError(f"box: x must lie in [lo, hi] = {box}")


def check_radii(
    eps: Sequence[float] | torch.Tensor, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The radii as a 1-D tensor in ``dtype``; each must be finite and >= 0 there."""
    radii = torch.as_tensor(eps, dtype=torch.float64).flatten()
    if radii.numel() == 0 or not bool(torch.isfinite(radii).all()) or bool((radii < 0).any()):
        raise ConfigError(f"eps: need a non-empty list of finite radii >= 0, got {radii.tolist()}")
    cast = radii.to(dtype=dtype)
    if not bool(torch.isfinite(cast).all()):
        raise ConfigError(
            f"eps: radius {float(radii.max()):g} overflows the inputs' {dtype} "
            f"(largest finite: {torch.finfo(dtype).max:.3g})"
        )
    return cast.to(device=device)


def step_sizes(radii: torch.Tensor, settings: AttackSettings) -> torch.Tensor:
    """(R,) step size per radius: ``step_size`` if given, else ``rel_step * eps``; each
    must be finite in the radii's dtype (ConfigError naming rel_step / step_size)."""
    if settings.step_size is not None:
        alphas = torch.full_like(radii, float(settings.step_size))
        name = "step_size"
    else:
        alphas = radii * settings.rel_step
        name = "rel_step"
    if not bool(torch.isfinite(alphas).all()):
        raise ConfigError(f"{name}: the PGD step overflows the inputs' {radii.dtype}")
    return alphas


def clean_predictions(forward: Forward, x_flat: torch.Tensor, chunk: int) -> torch.Tensor:
    """Model outputs at the clean flat inputs (B, D), computed in chunks without grad."""
    with torch.no_grad():
        return torch.cat([forward(xb) for xb in x_flat.split(chunk)])


def start_directions(
    n: int, dim: int, kind: str, seed: int, restart: int, dtype: torch.dtype
) -> torch.Tensor:
    """Unit-scale random starts u of shape (n, dim) on the CPU; the start at radius eps is
    eps * u. Drawn in float64 from the stream ``attack/start/{restart}`` of ``seed``.

    sphere: uniform on the unit sphere (Gaussian direction, normalised);
    ball: uniform in the unit ball (direction times U^(1/dim), U ~ U(0, 1));
    box: uniform in [-1, 1]^dim; none: zeros.
    """
    if kind not in RANDOM_STARTS:
        raise ValueError(f"random_start: must be one of {RANDOM_STARTS}, got {kind!r}")
    if kind == "none":
        return torch.zeros(n, dim, dtype=dtype)
    g = generator(seed, f"attack/start/{restart}")
    if kind == "box":
        return (torch.rand(n, dim, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
    gauss = torch.randn(n, dim, generator=g, dtype=torch.float64)
    unit = gauss / gauss.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    if kind == "ball":
        radius = torch.rand(n, 1, generator=g, dtype=torch.float64) ** (1.0 / dim)
        unit = unit * radius
    return unit.to(dtype)


def project(delta: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """Project each row of ``delta`` (n, D) onto its ball ||.|| <= eps (n,). Safe at eps = 0."""
    e = eps[:, None]
    if norm == "linf":
        return torch.maximum(torch.minimum(delta, e), -e)
    length = delta.norm(dim=1, keepdim=True)
    shrink = e / length.clamp_min(torch.finfo(delta.dtype).tiny)
    return delta * torch.where(length > e, shrink, torch.ones_like(shrink))


def ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction per row: g / ||g||_2 (0 where g = 0) or sign(g). A
    non-finite entry of g (e.g. the NaN a sqrt of a switched-off ReLU unit gives) counts as
    0: it points nowhere, and a NaN step would make a NaN input that counts as fooled."""
    grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    if norm == "linf":
        return grad.sign()
    return grad / grad.norm(dim=1, keepdim=True).clamp_min(torch.finfo(grad.dtype).tiny)


def lp_norm(v: torch.Tensor, norm: str) -> torch.Tensor:
    """(n,) row norms of v (n, D): L2, or L-inf ("linf"), or L1 ("l1", the dual of L-inf)."""
    if norm == "linf":
        return v.abs().amax(1)
    if norm == "l1":
        return v.abs().sum(1)
    return v.norm(dim=1)


def feasible(x: torch.Tensor, delta: torch.Tensor, box: tuple[float, float] | None) -> torch.Tensor:
    """Clamp x + delta into the box. For x inside the box this only shrinks each |delta_i|,
    so the norm constraint stays satisfied."""
    if box is None:
        return delta
    return (x + delta).clamp(box[0], box[1]) - x


@dataclass(frozen=True)
class Rows:
    """A chunk of attacked rows: flat inputs x (n, D), labels y (n,), radius eps and step
    alpha per row (n,)."""

    x: torch.Tensor
    y: torch.Tensor
    eps: torch.Tensor
    alpha: torch.Tensor


def pgd_steps(
    forward: Forward, rows: Rows, delta: torch.Tensor, settings: AttackSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """One PGD run of ``settings.steps`` steps on ``rows`` from ``delta`` (n, D) (projected
    first). Returns the final adversarial inputs (n, D) and the model outputs there."""
    x, norm, box, objective = rows.x, settings.norm, settings.box, settings.objective
    delta = feasible(x, project(delta, rows.eps, norm), box)
    for _ in range(settings.steps):
        delta.requires_grad_(True)
        with torch.enable_grad():
            loss = objective.loss(forward(x + delta), rows.y)
            (grad,) = torch.autograd.grad(loss.sum(), delta)
        with torch.no_grad():
            delta = delta.detach() + rows.alpha[:, None] * ascent_direction(grad, norm)
            delta = feasible(x, project(delta, rows.eps, norm), box)
    with torch.no_grad():
        adv = x + delta
        return adv, forward(adv)


def flat_inputs(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...], int]:
    """x (B, \\*input_shape) as detached rows (B, D), with input_shape and D."""
    input_shape = tuple(x.shape[1:])
    dim = math.prod(input_shape)
    return x.detach().reshape(x.shape[0], dim), input_shape, dim
