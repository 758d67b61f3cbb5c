"""AutoAttack's gradient attacks as a check on a robustness curve (optional extra).

AutoAttack (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML 2020, arXiv 2003.01690) is the reference attack of the
robustness literature; its APGD-CE (APGD, 100 iterations, on the cross-entropy) and APGD-T
(100 iterations per target class on the targeted DLR loss) are the two attacks that decide
almost every point. They come from the optional extra ``pyautoattack``
(``pip install 'featavg[autoattack]'``), imported only when used.

AutoAttack attacks the argmax of a model's logits inside the box [0, 1], in an L2 or L-inf
ball (:attr:`AutoAttackBudget.norm`). To attack any
read-out in any input space:

* Read-out to logits. :class:`~featavg.attacks.objectives.CrossEntropy`: the model's own;
  :class:`~featavg.attacks.objectives.BinaryMargin`: [-f/2, f/2];
  :class:`~featavg.attacks.objectives.GroupCrossEntropy` (a k-class model read out by class
  group): one logit per group, logsumexp_{j in J_g} z_j for APGD-CE (its cross-entropy is
  exactly the group cross-entropy) and max_{j in J_g} z_j for APGD-T (a targeted margin
  between group maxima, whose sign is the read-out's decision). APGD-T's DLR loss needs 4
  logits: fewer are padded with constant -1e4 logits, which never win the argmax and leave
  the cross-entropy and the margin unchanged.
* Input space to [0, 1]: u = (x - lo) / s with [lo, lo + s] the attack's box, or, without a
  box, an interval that holds every x +- the largest radius, so that AutoAttack's clamp
  never binds (the threat model stays the unclamped ball). Radii scale by 1 / s; APGD's step
  sizes are relative to the radius, so the attack is the same.
* Success is decided on the returned point by the objective (never by the wrapper's argmax),
  after rescaling a perturbation that rounding left a hair outside the ball.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from featavg.attacks.core import CurveResult, GradientCounter, check_radii, eval_mode
from featavg.attacks.objectives import BinaryMargin, GroupCrossEntropy, Objective
from featavg.config import ConfigError

PAD_LOGIT = -1e4  # a class that never wins: APGD-T's DLR loss needs >= 4 logits


@dataclass(frozen=True)
class AutoAttackBudget:
    """AutoAttack's L2 "standard" budget, or a trimmed one.

    n_iter: APGD iterations per run. (Default: 100) restarts: APGD-CE runs. (Default: 1)
    targets: APGD-T target classes (the highest-scoring others); None: all others, at most 9.
    targeted: run APGD-T after APGD-CE; None: when the model has more than two logits (a
    10-class model, also when read out by group), as AutoAttack does. seed: APGD's random
    starts. batch_size: points per APGD call (None: all at once). box: the attack space's
    box (lo, hi), None for none. norm: "l2" (AutoAttack's L2 version) or "linf".
    """

    n_iter: int = 100
    restarts: int = 1
    targets: int | None = None
    targeted: bool | None = None
    seed: int = 0
    batch_size: int | None = None
    box: tuple[float, float] | None = None
    norm: str = "l2"


@dataclass(frozen=True)
class AutoAttackCheck:
    """One radius of :func:`verify_autoattack`.

    eps: the radius. curve_accuracy: the curve's robust accuracy there. checked: points the
    curve calls robust there that AutoAttack attacked. broken: those it fooled (at this
    radius or, by inclusion, a smaller checked one). verified_accuracy: robust under both
    the curve's attack and AutoAttack's. gap: curve_accuracy - verified_accuracy (>= 0),
    how much the curve overstates robustness against AutoAttack. gradient_evaluations,
    wall_s: AutoAttack's cost at this radius.
    """

    eps: float
    curve_accuracy: float
    checked: int
    broken: int
    verified_accuracy: float
    gap: float
    gradient_evaluations: int
    wall_s: float


def load_pyautoattack() -> Any:
    """The ``pyautoattack.autopgd_base`` module, or a one-line ConfigError naming the extra."""
    try:
        from pyautoattack import autopgd_base
    except ImportError:
        raise ConfigError(
            "verify autoattack: needs the optional extra pyautoattack "
            "(pip install 'featavg[autoattack]')"
        ) from None
    return autopgd_base


class _UnitBoxLogits(nn.Module):
    """u in [0, 1]^D -> logits of the read-out at x = lo + s u (see the module docstring)."""

    def __init__(self, module: nn.Module, objective: Objective, frame: tuple[float, float]):
        super().__init__()
        self.module, self.objective, self.frame = module, objective, frame
        self.group_max, self.pad, self.dtype = False, 0, torch.float32

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """(N, *shape) float32 in [0, 1] -> (N, C) logits (padded to ``pad`` columns)."""
        lo, scale = self.frame
        z = self.module((lo + scale * u.to(torch.float64)).to(self.dtype))
        if isinstance(self.objective, BinaryMargin):
            f = z.reshape(z.shape[0])
            z = torch.stack([-f / 2, f / 2], 1)
        elif isinstance(self.objective, GroupCrossEntropy):
            groups = self.objective.groups.to(z.device)
            cols = [
                z[:, groups == g].amax(1) if self.group_max else z[:, groups == g].logsumexp(1)
                for g in torch.unique(groups).tolist()
            ]
            z = torch.stack(cols, 1)
        z = z.float()
        if z.shape[1] < self.pad:
            z = torch.cat([z, z.new_full((z.shape[0], self.pad - z.shape[1]), PAD_LOGIT)], 1)
        return z


def _frame(x: torch.Tensor, largest: float, box: tuple[float, float] | None) -> tuple[float, float]:
    """(lo, s) mapping [lo, lo + s] onto AutoAttack's [0, 1] (see the module docstring)."""
    if box is not None:
        return float(box[0]), max(float(box[1]) - float(box[0]), 1e-12)
    lo, hi = float(x.min()) - 1.01 * largest, float(x.max()) + 1.01 * largest
    return lo, max(hi - lo, 1e-12)


def _labels(objective: Objective, y: torch.Tensor) -> torch.Tensor:
    """The wrapper's class index of each label: (y + 1) / 2 for a margin, the group's rank
    among the groups for a group read-out, y itself otherwise."""
    if isinstance(objective, BinaryMargin):
        return ((y + 1) // 2).long()
    if isinstance(objective, GroupCrossEntropy):
        ids = torch.unique(objective.groups.to(y.device))
        return torch.searchsorted(ids, y.long())
    return y.long()


def autoattack_robust(
    module: nn.Module,
    objective: Objective,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    budget: AutoAttackBudget = AutoAttackBudget(),
) -> tuple[torch.Tensor, int]:
    r"""Whether each point resists AutoAttack's APGD-CE (then APGD-T on the survivors, see
    :class:`AutoAttackBudget`) in the ball of radius ``eps`` (``budget.norm``) of the attack
    space.

    Shape: x (B, \*input_shape), y (B,) in ``objective``'s form. Returns (robust (B,) bool,
    gradient evaluations used); a point misclassified clean is not robust."""
    if budget.norm not in ("l2", "linf"):
        raise ConfigError(f"AutoAttack norm: l2 or linf, got {budget.norm!r}")
    norm = "L2" if budget.norm == "l2" else "Linf"
    apgd = load_pyautoattack()
    counter = GradientCounter(module)
    frame = _frame(x, eps, budget.box)
    wrapper = _UnitBoxLogits(counter, objective, frame)
    wrapper.dtype = x.dtype
    labels = objective.prepare(y, x.device)
    with eval_mode(module), torch.random.fork_rng(devices=[]):  # APGD reseeds torch's RNG
        with torch.no_grad():
            clean_logits = counter(x)
        robust = objective.correct(clean_logits, labels)
        decision = _decision_classes(objective, clean_logits)
        targeted = (
            budget.targeted
            if budget.targeted is not None
            else clean_logits.ndim == 2 and clean_logits.shape[1] > 2
        )
        n_targets = min(budget.targets or 9, decision - 1)
        stages = ["ce"] + (["t"] if targeted and n_targets >= 1 else [])
        for stage in stages:
            wrapper.group_max, wrapper.pad = stage == "t", 4 if stage == "t" else 0
            todo = torch.nonzero(robust).flatten()
            chunk = todo.numel() if budget.batch_size is None else budget.batch_size
            for idx in todo.split(max(chunk, 1)):
                if stage == "ce":
                    attack = apgd.APGDAttack(
                        wrapper, n_iter=budget.n_iter, norm=norm, eps=eps / frame[1],
                        n_restarts=budget.restarts, seed=budget.seed, loss="ce",
                    )  # fmt: skip
                else:
                    attack = apgd.APGDAttack_targeted(
                        wrapper, n_iter=budget.n_iter, norm=norm, eps=eps / frame[1],
                        n_restarts=1, seed=budget.seed, n_target_classes=n_targets,
                    )  # fmt: skip
                u = ((x[idx].to(torch.float64) - frame[0]) / frame[1]).float()
                u_adv = attack.perturb(u, _labels(objective, labels[idx]))
                x_adv = frame[0] + frame[1] * u_adv.detach().to(torch.float64)
                robust[idx] = _verdict(
                    counter, objective, (x[idx], labels[idx]), x_adv, (eps, budget.norm)
                )
    return robust, counter.gradient_evaluations


def _decision_classes(objective: Objective, logits: torch.Tensor) -> int:
    """Classes of the decision: the groups of a group read-out, 2 for a margin, else the
    model's outputs."""
    if isinstance(objective, GroupCrossEntropy):
        return int(torch.unique(objective.groups).numel())
    if isinstance(objective, BinaryMargin) or logits.ndim == 1:
        return 2
    return int(logits.shape[1])


def _verdict(
    model: nn.Module,
    objective: Objective,
    points: tuple[torch.Tensor, torch.Tensor],
    x_adv: torch.Tensor,
    ball: tuple[float, str],
) -> torch.Tensor:
    """The objective's verdict (B,) at AutoAttack's points x_adv (float64, attack space) for
    the clean ``points`` (x, y), each perturbation rescaled into the eps-ball where rounding
    in AutoAttack's float32 [0, 1] frame left it a hair outside."""
    x, y = points
    delta = x_adv - x.to(torch.float64)
    eps, norm = ball
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        size = delta.flatten(1).norm(dim=1)
        shrink = torch.where(size > eps, eps / size.clamp_min(1e-300), torch.ones_like(size))
        delta = delta * shrink.view(-1, *([1] * (x.ndim - 1)))
    final = (x.to(torch.float64) + delta).to(x.dtype)
    with torch.no_grad():
        return objective.correct(model(final), y)


def verify_autoattack(
    module: nn.Module,
    objective: Objective,
    x: torch.Tensor,
    y: torch.Tensor,
    curve: CurveResult,
    eps: Sequence[float] | None = None,
    budget: AutoAttackBudget = AutoAttackBudget(),
) -> list[AutoAttackCheck]:
    r"""Check a robustness curve against AutoAttack: at each radius of ``eps`` (ascending;
    default: the curve's three largest radii > 0), attack with APGD-CE (+ APGD-T, see
    :class:`AutoAttackBudget`) the points the curve still calls robust there, and report how
    many of them AutoAttack fools.

    A point AutoAttack fools at a radius is fooled at every larger one (the perturbation lies
    inside the larger ball), so it is not attacked again and counts as broken there.

    Arguments:
        module, objective: the read-out attacked (the same the curve was made with).
        x: (B, \*input_shape) the points of the curve, in its attack space; y: (B,) labels.
        curve: the :class:`~featavg.attacks.core.CurveResult` to check.
        eps: radii of the curve's grid to check (None: its three largest > 0).
        budget: AutoAttack's budget and the attack space's box.

    Returns one :class:`AutoAttackCheck` per radius checked, ascending.
    """
    grid = curve.eps.to(torch.float64)
    if eps is None:
        chosen = grid[grid > 0][-3:].tolist()
    else:
        chosen = sorted(float(e) for e in check_radii(eps, torch.float64, torch.device("cpu")))
    rows = []
    for e in chosen:
        hit = torch.isclose(grid, torch.tensor(e, dtype=torch.float64), rtol=1e-6, atol=1e-12)
        if not bool(hit.any()):
            raise ConfigError(f"verify eps: {e:g} is not a radius of the curve")
        rows.append(int(torch.nonzero(hit)[0]))
    if curve.per_point_correct.shape[1] != x.shape[0]:
        raise ValueError(
            f"verify: the curve has {curve.per_point_correct.shape[1]} points, x has {x.shape[0]}"
        )
    broken = torch.zeros(x.shape[0], dtype=torch.bool)
    out = []
    for row in rows:
        start = time.perf_counter()
        standing = curve.per_point_correct[row].cpu()
        todo = torch.nonzero(standing & ~broken).flatten()
        grads = 0
        if todo.numel():
            dev = todo.to(x.device)
            robust, grads = autoattack_robust(
                module, objective, x[dev], y[dev], float(grid[row]), budget
            )
            broken[todo[~robust.cpu()]] = True
        n = x.shape[0]
        verified = int((standing & ~broken).sum())
        curve_acc = float(standing.to(torch.float64).mean())
        out.append(
            AutoAttackCheck(
                eps=float(grid[row]),
                curve_accuracy=curve_acc,
                checked=int(todo.numel()),
                broken=int((standing & broken).sum()),
                verified_accuracy=verified / n,
                gap=curve_acc - verified / n,
                gradient_evaluations=int(grads),
                wall_s=time.perf_counter() - start,
            )
        )
    return out


def autoattack_flip_radius(
    module: nn.Module,
    objective: Objective,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float],
    budget: AutoAttackBudget = AutoAttackBudget(),
) -> tuple[torch.Tensor, int]:
    r"""AutoAttack's own curve, as per-point flip radii on the grid ``eps``: the radii in
    ascending order, each attacking the points not fooled at a smaller one (a point fooled
    at r is fooled at every r' > r by the same perturbation); 0 for a point misclassified
    clean, inf where AutoAttack never succeeds. Returns (flip radius (B,) float64, gradient
    evaluations). Shape: x (B, \*input_shape), y (B,)."""
    radii = check_radii(eps, torch.float64, torch.device("cpu")).sort().values
    labels = objective.prepare(y, x.device)
    with torch.no_grad(), eval_mode(module):
        clean = objective.correct(module(x), labels).cpu()
    flip = torch.where(clean, math.inf, 0.0).to(torch.float64)
    grads = 0
    for r in radii.tolist():
        todo = torch.nonzero(torch.isinf(flip)).flatten()
        if r == 0 or todo.numel() == 0:
            continue
        dev = todo.to(x.device)
        robust, used = autoattack_robust(module, objective, x[dev], y[dev], r, budget)
        grads += used
        flip[todo[~robust.cpu()]] = r
    return flip, grads
