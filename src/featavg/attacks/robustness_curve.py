"""Robustness curves of any ``nn.Module``: one entry point, seven methods.

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
* "fmn+descend" (the default) / "ddn+descend": FMN / DDN (K = 10 by default), then
  :func:`~featavg.attacks.incremental.descend_pgd`: PGD (warm-started from the found
  perturbation, stopping at its first adversarial iterate) at the largest grid radius below
  each point's norm nu, then the next smaller one while it keeps flipping the point. A
  point counts as fooled at r only when a perturbation of norm <= r was found (verified by a
  forward pass); below its last failed PGD run it keeps the minimum-norm attack's claim.
  Bc * K + S * (one failed run per point + one run per grid radius descended). On the
  quick MNIST models (benchmarks/bench_robustness_curve.py) it is below the per-radius
  curve at every radius for 1/8 of its gradient evaluations.

Forward-only passes (clean predictions, final iterates) are reported apart
(``forward_evaluations``); every result carries ``gradient_evaluations`` and ``wall_s``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import nn

from featavg.attacks.incremental import (
    CurveResult,
    GradientCounter,
    descend_pgd,
    eval_mode,
    incremental_pgd,
)
from featavg.attacks.min_norm import ddn, fmn
from featavg.attacks.objectives import CrossEntropy, Objective
from featavg.attacks.pgd import NORMS, Norm, RandomStart, pgd
from featavg.config import ConfigError

Method = Literal["per-radius", "incremental", "fmn", "ddn", "fmn+pgd", "fmn+descend", "ddn+descend"]
METHODS: tuple[str, ...] = get_args(Method)


def robustness_curve(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float] | torch.Tensor,
    *,
    method: Method = "fmn+descend",
    norm: Norm = "l2",
    objective: Objective = CrossEntropy(),
    steps: int = 7,
    rel_step: float = 0.25,
    restarts: int = 1,
    random_start: RandomStart = "sphere",
    min_norm_steps: int | None = None,
    box: tuple[float, float] | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = False,
) -> CurveResult:
    r"""Robust accuracy of ``model`` on (x, y) at each radius of ``eps``, by ``method``
    (see the module docstring for what each does and costs).

    Arguments:
        model: maps (N, \*input_shape) to logits; run in eval mode (each submodule's mode
            is restored afterwards), never changed.
        x: (B, \*input_shape) clean inputs; y: (B,) labels in the form ``objective`` needs.
        eps: R radii >= 0, any order; the result is on the ascending grid.
        method: "per-radius", "incremental", "fmn", "ddn" (L2 only), "fmn+pgd",
            "fmn+descend" or "ddn+descend" (L2 only). (Default: "fmn+descend", the cheapest
            that is at least as strong as the paper's protocol in our benchmark)
        norm: "l2" or "linf".
        objective: loss and correctness (e.g. GroupCrossEntropy for a 10-class model read
            out on a binary task). (Default: CrossEntropy())
        steps, rel_step, restarts, random_start: the PGD attack (per-radius, incremental,
            fmn+pgd): steps of rel_step * eps. (Defaults: the paper's 7 steps of eps/4, one
            start on the eps-sphere)
        min_norm_steps: FMN / DDN steps. (Default: None: 10 for the "+descend" methods, whose
            PGD stage corrects a short run's overshoot, 100 otherwise)
        box: None or (lo, hi) to clamp x + delta into. seed: PGD's random starts.
        batch_size: points (per radius for PGD) per chunk. progress: progress bars.

    Shape:
        - x: (B, \*input_shape); y: (B,)
        - returns :class:`~featavg.attacks.incremental.CurveResult`: eps (R,),
          robust_accuracy (R,), flip_radius (B,), per_point_correct (R, B).
    """
    if method not in METHODS:
        raise ConfigError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    if norm not in NORMS:
        raise ConfigError(f"norm: must be one of {', '.join(NORMS)}, got {norm!r}")
    if method.startswith("ddn") and norm != "l2":
        raise ConfigError(f"norm: method ddn is an L2 attack, got {norm!r} (use fmn for linf)")
    radii = torch.as_tensor(eps, dtype=torch.float64).flatten()
    if radii.numel() == 0 or not bool(torch.isfinite(radii).all()) or bool((radii < 0).any()):
        raise ConfigError(f"eps: need a non-empty list of finite radii >= 0, got {radii.tolist()}")
    radii = radii.sort().values.to(x.dtype)  # the grid as the attacks see it

    if method == "per-radius":
        return _per_radius(
            model,
            x,
            y,
            radii,
            norm,
            objective,
            steps,
            rel_step,
            restarts,
            random_start,
            box,
            seed,
            batch_size,
            progress,
        )
    if min_norm_steps is None:
        min_norm_steps = 10 if method.endswith("+descend") else 100
    known_flip: torch.Tensor | None = None
    if method != "incremental":
        if method.startswith("ddn"):
            found = ddn(
                model,
                x,
                y,
                steps=min_norm_steps,
                objective=objective,
                box=box,
                seed=seed,
                batch_size=batch_size,
                progress=progress,
            )
        else:
            found = fmn(
                model,
                x,
                y,
                norm=norm,
                steps=min_norm_steps,
                objective=objective,
                box=box,
                seed=seed,
                batch_size=batch_size,
                progress=progress,
            )
        if method.endswith("+descend"):
            refined = descend_pgd(
                model,
                x,
                y,
                radii,
                found.norms,
                found.x_adv,
                norm=norm,
                steps=steps,
                rel_step=rel_step,
                restarts=restarts,
                objective=objective,
                seed=seed,
                batch_size=batch_size,
                box=box,
            )
            refined.method = method
            refined.gradient_evaluations += found.gradient_evaluations
            refined.forward_evaluations += found.forward_evaluations
            refined.wall_s += found.wall_s
            return refined
        if method != "fmn+pgd":
            return CurveResult.from_flip_radius(
                radii,
                found.norms,
                gradient_evaluations=found.gradient_evaluations,
                forward_evaluations=found.forward_evaluations,
                wall_s=found.wall_s,
                method=method,
                norm=norm,
            )
        known_flip = found.norms
    curve = incremental_pgd(
        model,
        x,
        y,
        radii,
        norm=norm,
        steps=steps,
        rel_step=rel_step,
        restarts=restarts,
        random_start=random_start,
        objective=objective,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
        box=box,
        known_flip=known_flip,
    )
    if method == "fmn+pgd":
        curve.method = method
        curve.gradient_evaluations += found.gradient_evaluations
        curve.forward_evaluations += found.forward_evaluations
        curve.wall_s += found.wall_s
    return curve


def _per_radius(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    radii: torch.Tensor,
    norm: Norm,
    objective: Objective,
    steps: int,
    rel_step: float,
    restarts: int,
    random_start: RandomStart,
    box: tuple[float, float] | None,
    seed: int,
    batch_size: int | None,
    progress: bool,
) -> CurveResult:
    """The paper's protocol through :func:`pgd`, with its cost counted."""
    start_time = time.perf_counter()
    counter = GradientCounter(model)
    with eval_mode(model):
        result = pgd(
            counter,
            x,
            y,
            radii,
            norm=norm,
            steps=steps,
            rel_step=rel_step,
            restarts=restarts,
            random_start=random_start,
            box=box,
            objective=objective,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
        )
    correct = result.correct.cpu()
    return CurveResult(
        eps=result.eps.to("cpu", torch.float64),
        robust_accuracy=result.robust_accuracy.cpu(),
        flip_radius=result.flip_radius.to("cpu", torch.float64),
        gradient_evaluations=counter.gradient_evaluations,
        wall_s=time.perf_counter() - start_time,
        method="per-radius",
        norm=norm,
        per_point_correct=correct,
        forward_evaluations=counter.forward_evaluations,
    )
