"""Robustness curves of any ``nn.Module``: one entry point, eight methods.

For B points (Bc of them correctly classified clean), R radii (R+ of them > 0), PGD with S
steps and T restarts, and a minimum-norm attack of K steps, the cost in gradient evaluations
(one forward + backward pass on one point) is:

* "per-radius": the paper's protocol, :func:`~featavg.attacks.pgd.pgd` at every radius on
  every point: R * Bc * S for one restart (points fooled by an earlier restart skip the
  later ones), up to R * Bc * S * T. Its curve may be non-monotone (a point fooled at r can
  resist at r' > r), as in the paper.
* "incremental": :func:`~featavg.attacks.incremental.incremental_pgd`, the same attack per
  point and radius, but only at radii > 0 up to the point's first flip: S * T * (sum over
  radii r > 0 of the points standing at r) <= R+ * Bc * S * T. Same flip radii as
  "per-radius", its curve is the monotone closure of pgd's (never higher).
* "fmn" / "ddn": :func:`~featavg.attacks.min_norm.fmn` / :func:`~featavg.attacks.min_norm.ddn`
  give each point a norm nu; acc(eps) = fraction with nu > eps (a point fooled at exactly
  nu <= eps counts as fooled). Bc * K, whatever R.
* "fmn+pgd": FMN, then incremental PGD only at the radii below each point's FMN norm;
  flip radius = min(FMN norm, PGD's grid flip radius), so the curve is at most both. Bc * K
  plus at most the incremental cost.
* "fmn+apgd" (the default): FMN (K = 10 by default), then
  :func:`~featavg.attacks.descend.descend_pgd` with APGD (:mod:`~featavg.attacks.apgd`,
  the step-size rule of AutoAttack's first attack) of A = 20 steps at each grid radius:
  at the largest grid radius below each point's FMN norm nu, from FMN's perturbation
  rescaled into that ball, stopping at the first adversarial iterate, then the next smaller
  radius while it keeps flipping the point. Bc * K + (A + 1) * (one failed run per point +
  one run per grid radius descended, most of which stop after a step or two); ``restarts``
  adds random-start runs where the warm start fails. Measured on the quick MNIST models
  (benchmarks/bench_autoattack_gap.py, 200 points, 21 radii): at most 0.5 (binary model)
  and 1.5 points (10-class model read out by group) above AutoAttack's APGD-CE (+ APGD-T)
  at any radius, for 1/4.4 of the per-radius PGD-7 protocol's gradient evaluations; on
  the Fashion-MNIST stand-ins up to 3.0 (binary) and 4.5 points (10-class by group). A
  cheap upper bound that is nearly tight, not a certificate: check it with
  :func:`~featavg.attacks.autoattack.verify_autoattack`.
* "fmn+descend" / "ddn+descend": FMN / DDN (K = 10 by default), then
  :func:`~featavg.attacks.descend.descend_pgd`: PGD (warm-started from the found
  perturbation, stopping at its first adversarial iterate) at the largest grid radius below
  each point's norm nu, then the next smaller one while it keeps flipping the point. A
  point counts as fooled at r only when a perturbation of norm <= r was found (verified by a
  forward pass); below its last failed PGD run it keeps the minimum-norm attack's claim.
  Bc * K + S * (one failed run per point + one run per grid radius descended). On the
  quick MNIST models (benchmarks/bench_robustness_curve.py) it is below the per-radius
  curve at every radius for 1/8 of its gradient evaluations, but 2 to 5.5 points above
  AutoAttack at the largest radii: an upper bound on the robust accuracy.

Forward-only passes (clean predictions, final iterates) are reported apart
(``forward_evaluations``); every result carries ``gradient_evaluations`` and ``wall_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from featavg.attacks.core import (
    AttackSettings,
    CurveResult,
    GradientCounter,
    check_radii,
    eval_mode,
)
from featavg.attacks.descend import descend_pgd
from featavg.attacks.incremental import incremental_pgd
from featavg.attacks.min_norm import MinNormResult, ddn, fmn
from featavg.attacks.pgd import flip_radius_from_grid, pgd
from featavg.config import ConfigError

# a minimum-norm stage: (model, x, y, settings) -> per-point norms and adversarial inputs
MinNormStage = Callable[[nn.Module, torch.Tensor, torch.Tensor, AttackSettings], MinNormResult]
# a PGD stage on the grid: (model, x, y, radii, settings, minimum-norm result or None)
Refinement = Callable[
    [nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, AttackSettings, MinNormResult | None],
    CurveResult,
]
APGD_STEPS = 20  # APGD steps per run of "fmn+apgd"


def _per_radius(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    radii: torch.Tensor,
    settings: AttackSettings,
    found: MinNormResult | None,
) -> CurveResult:
    """The paper's protocol through :func:`pgd`, with its cost counted."""
    start_time = time.perf_counter()
    counter = GradientCounter(model)
    with eval_mode(model):
        result = pgd(counter, x, y, radii, settings)
    correct = result.correct.cpu()
    clean = None if result.clean_correct is None else result.clean_correct.cpu()
    return CurveResult(
        eps=result.eps.to("cpu", torch.float64),
        robust_accuracy=result.robust_accuracy.cpu(),
        flip_radius=result.flip_radius.to("cpu", torch.float64),
        gradient_evaluations=counter.gradient_evaluations,
        wall_s=time.perf_counter() - start_time,
        method="per-radius",
        norm=settings.norm,
        per_point_correct=correct,
        forward_evaluations=counter.forward_evaluations,
        clean_correct=clean,
    )


def _incremental(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    radii: torch.Tensor,
    settings: AttackSettings,
    found: MinNormResult | None,
) -> CurveResult:
    """Incremental PGD, skipping each point from its minimum-norm radius on (if any)."""
    known = None if found is None else found.norms
    return incremental_pgd(model, x, y, radii, settings, known_flip=known)


def _descend(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    radii: torch.Tensor,
    settings: AttackSettings,
    found: MinNormResult | None,
) -> CurveResult:
    """PGD descending the grid from each point's minimum-norm radius, warm-started."""
    if found is None:
        raise ValueError("descend: needs a minimum-norm stage")
    return descend_pgd(model, x, y, radii, found.norms, found.x_adv, settings)


def _descend_apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    radii: torch.Tensor,
    settings: AttackSettings,
    found: MinNormResult | None,
) -> CurveResult:
    """APGD of :data:`APGD_STEPS` steps descending the grid from each point's minimum-norm
    radius, warm-started."""
    if found is None:
        raise ValueError("descend: needs a minimum-norm stage")
    return descend_pgd(model, x, y, radii, found.norms, found.x_adv, settings, APGD_STEPS)


def _ddn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: AttackSettings) -> MinNormResult:
    return ddn(model, x, y, s)


def _fmn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: AttackSettings) -> MinNormResult:
    return fmn(model, x, y, s)


@dataclass(frozen=True)
class CurveMethod:
    """A robustness-curve method: an optional minimum-norm stage (FMN / DDN), then an
    optional PGD refinement on the grid (per-radius, incremental or descend).

    min_norm: the minimum-norm attack, or None. refine: the PGD stage, or None (the curve is
    then the minimum-norm norms'). min_norm_steps: the minimum-norm steps when the settings
    name none. l2_only: refuses L-inf (DDN is an L2 attack). descends: the refinement
    descends the grid from each point's minimum-norm radius, stopping at the first radius
    where it fails (so it runs at a few radii, not all). refine_steps: the refinement's
    steps per run when fixed by the method, None for the settings' ``steps``.
    """

    min_norm: MinNormStage | None
    refine: Refinement | None
    min_norm_steps: int = 100
    l2_only: bool = False
    descends: bool = False
    refine_steps: int | None = None


CURVE_METHODS: dict[str, CurveMethod] = {
    "per-radius": CurveMethod(None, _per_radius),
    "incremental": CurveMethod(None, _incremental),
    "fmn": CurveMethod(_fmn, None),
    "ddn": CurveMethod(_ddn, None, l2_only=True),
    "fmn+pgd": CurveMethod(_fmn, _incremental),
    # FMN locates each point near its boundary; APGD checks the grid below it
    "fmn+apgd": CurveMethod(
        _fmn, _descend_apgd, min_norm_steps=10, descends=True, refine_steps=APGD_STEPS
    ),
    # a short run: the PGD descent corrects its overshoot
    "fmn+descend": CurveMethod(_fmn, _descend, min_norm_steps=10, descends=True),
    "ddn+descend": CurveMethod(_ddn, _descend, min_norm_steps=10, l2_only=True, descends=True),
}
METHODS: tuple[str, ...] = tuple(CURVE_METHODS)
DEFAULT_METHOD = "fmn+apgd"


def robustness_curve(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float] | torch.Tensor,
    *,
    method: str = DEFAULT_METHOD,
    settings: AttackSettings = AttackSettings(),
) -> CurveResult:
    r"""Robust accuracy of ``model`` on (x, y) at each radius of ``eps``, by ``method``
    (see the module docstring for what each does and costs).

    Arguments:
        model: maps (N, \*input_shape) to logits; run in eval mode (each submodule's mode
            is restored afterwards), never changed.
        x: (B, \*input_shape) clean inputs; y: (B,) labels in the form ``objective`` needs.
        eps: R radii >= 0, any order; the result is on the ascending grid.
        method: a key of :data:`CURVE_METHODS`: "per-radius", "incremental", "fmn", "ddn"
            (L2 only), "fmn+pgd", "fmn+apgd", "fmn+descend" or "ddn+descend" (L2 only).
            (Default: "fmn+apgd": 0.5 to 4.5 points above AutoAttack in our benchmarks, for
            about a quarter of the per-radius PGD-7 cost)
        settings (:class:`~featavg.attacks.core.AttackSettings`): the attack. norm: "l2" or
            "linf". objective: loss and correctness (e.g. GroupCrossEntropy for a 10-class
            model read out on a binary task). steps, rel_step (or step_size), restarts,
            random_start: the PGD stage, steps of rel_step * eps (the paper's 7 steps of
            eps/4, one start on the eps-sphere by default). min_norm_steps: FMN / DDN steps
            (None: the method's default, 10 for the "+descend" methods, whose PGD stage
            corrects a short run's overshoot, 100 otherwise). box: None or (lo, hi) to clamp
            x + delta into. seed: PGD's random starts. batch_size: points (per radius for
            PGD) per chunk. progress: progress bars. "fmn+apgd" reads neither steps nor
            rel_step: its APGD runs take :data:`APGD_STEPS` steps with their own step rule.

    Shape:
        - x: (B, \*input_shape); y: (B,)
        - returns :class:`~featavg.attacks.core.CurveResult`: eps (R,), robust_accuracy
          (R,), flip_radius (B,), per_point_correct (R, B).
    """
    spec = CURVE_METHODS.get(method)
    if spec is None:
        raise ConfigError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    norm = settings.norm
    if spec.l2_only and norm != "l2":
        name = method.split("+")[0]
        raise ConfigError(f"norm: method {name} is an L2 attack, got {norm!r} (use fmn for linf)")
    # the grid as the attacks see it: in x's dtype (a radius beyond its range is refused)
    radii = check_radii(eps, x.dtype, torch.device("cpu")).sort().values
    if settings.min_norm_steps is None:
        settings = replace(settings, min_norm_steps=spec.min_norm_steps)

    found = None if spec.min_norm is None else spec.min_norm(model, x, y, settings)
    if spec.refine is None:
        if found is None:
            raise ValueError(f"method: {method} has neither a minimum-norm nor a PGD stage")
        curve = CurveResult.from_flip_radius(
            radii,
            found.norms,
            gradient_evaluations=found.gradient_evaluations,
            forward_evaluations=found.forward_evaluations,
            wall_s=found.wall_s,
            method=method,
            norm=norm,
        )
        curve.clean_correct = found.clean_correct
        return _clean_at_radius_zero(curve)
    curve = spec.refine(model, x, y, radii, settings, found)
    if found is not None:
        curve.method = method
        curve.add_cost(found)
    return _clean_at_radius_zero(curve)


def _clean_at_radius_zero(curve: CurveResult) -> CurveResult:
    """Radius 0 is the clean prediction, by construction: whatever an attack did there (PGD
    at eps 0 still takes its steps; a non-finite gradient makes them NaN), the curve reports
    the clean correctness at eps 0. The per-radius flip radii follow the corrected grid."""
    if curve.clean_correct is None:
        raise ValueError(f"{curve.method}: the curve does not record the clean correctness")
    clean = curve.clean_correct.to("cpu", torch.bool)
    zero = curve.eps == 0
    if not bool(zero.any()) or torch.equal(
        curve.per_point_correct[zero], clean.expand(int(zero.sum()), -1)
    ):
        return curve
    correct = curve.per_point_correct.clone()
    correct[zero] = clean
    curve.per_point_correct = correct
    curve.robust_accuracy = correct.to(torch.float64).mean(1)
    curve.flip_radius = flip_radius_from_grid(curve.eps, correct)
    return curve
