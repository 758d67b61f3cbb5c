"""The robustness protocol the synthetic experiments share: four read-outs of a trained pair,
attacked with exact subspace PGD and (for small nets) the exact minimal L2 radius.

Read-outs of a :class:`~featavg.experiments.synthetic_common.TrainedPair`:

* ``binary``: the binary net, logistic-margin loss;
* ``multiclass``: plain k-way accuracy of the fine-grained net under k-way cross-entropy
  (the authors' synthetic curve for their 10-class net);
* ``derived_sum``: F = sum_{J+} f_j - sum_{J-} f_j, logistic-margin loss;
* ``derived_argmax``: class group of argmax_j f_j, loss -log sum_{j in group(y)} softmax_j.

Used by synthetic-robustness (the paper's Fig. 3 left) and synthetic-scaling (the same
protocol over k and d); not an experiment itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from featavg import theory
from featavg.attacks.core import AttackSettings
from featavg.attacks.objectives import BinaryMargin, CrossEntropy, GroupCrossEntropy, Objective
from featavg.attacks.two_layer.ensemble_subspace import ensemble_subspace_pgd
from featavg.attacks.two_layer.exact import ExactRadiusSolver, Readout
from featavg.config.checks import check_list
from featavg.experiments.synthetic_common import TrainedPair
from featavg.models import TwoLayerNet, sum_form_net

# a read-out's job: (nets, labels, PGD objective, PGD readout matrix, exact read-out)
Job = tuple[list[TwoLayerNet], torch.Tensor, Objective, torch.Tensor | None, Readout]

READOUTS = ("binary", "multiclass", "derived_sum", "derived_argmax")
READOUT_NAMES = {
    "binary": "binary net",
    "multiclass": "fine-grained net, k-way",
    "derived_sum": "derived binary, sum form",
    "derived_argmax": "derived binary, argmax form",
}

# The exact solver enumerates activation patterns: nets with more hidden units are skipped.
EXACT_MAX_UNITS = 16
# The paper's radius grid 0, 2, ..., 58 is for d = 3072 (it reaches ~1.05 sqrt(d), past
# the decoupled net's sqrt(d/2)); other d get the same grid scaled by sqrt(d / 3072).
PAPER_D = 3072
PAPER_RADII = tuple(float(r) for r in range(0, 60, 2))


class AttackConfig(BaseModel):
    """The robustness protocol (defaults: the authors' synthetic Fig. 3 left)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    radii: tuple[float, ...] | None = Field(
        None,
        description="L2 radii of the curve (>= 0, strictly increasing); None: the paper's "
        "0, 2, ..., 58 scaled by sqrt(d / 3072), so it follows the theory's sqrt(d) scale",
    )
    pgd_steps: int = Field(7, ge=1, description="PGD steps")
    rel_step: float = Field(0.25, gt=0, description="PGD step size / eps")
    random_start: Literal["sphere", "ball", "none"] = Field(
        "sphere", description="random start: on the eps-sphere (paper), in the ball, or none"
    )
    restarts: int = Field(1, ge=1, description="PGD restarts")
    exact: bool = Field(True, description="exact minimal radii (nets with <= 16 units)")

    @model_validator(mode="after")
    def _radius_grid(self) -> AttackConfig:
        check_list("radii", self.radii, low=0.0, min_len=1, increasing=True)
        return self


def attack_radii(cfg: AttackConfig, d: int) -> tuple[float, ...]:
    """The radius grid of a run at input dimension d (see :data:`PAPER_RADII`)."""
    return cfg.radii if cfg.radii is not None else scaled_paper_radii(d)


def scaled_paper_radii(d: int) -> tuple[float, ...]:
    """The paper's grid 0, 2, ..., 58 times sqrt(d / 3072): exactly the paper's at d = 3072."""
    return scale_to_d(PAPER_RADII, d)


def scale_to_d(radii: Sequence[float], d: int) -> tuple[float, ...]:
    """A radius grid set for the paper's d = 3072, times sqrt(d / 3072) (the theory's sqrt(d)
    scale); unchanged at d = 3072 (times exactly 1.0)."""
    scale = math.sqrt(d / PAPER_D)
    return tuple(float(r) * scale for r in radii)


def readout_units(readout: str, m: int, k: int, h: int) -> int:
    """Hidden units of the first layer a read-out attacks: 2m for the binary net, k h for
    the fine-grained net and the classifiers derived from it."""
    return 2 * m if readout == "binary" else k * h


def exact_readouts(cfg: AttackConfig, m: int, k: int, h: int) -> tuple[str, ...]:
    """The read-outs whose exact radii a run computes (all of them with ``cfg.exact`` when
    the net has at most :data:`EXACT_MAX_UNITS` hidden units)."""
    if not cfg.exact:
        return ()
    return tuple(r for r in READOUTS if readout_units(r, m, k, h) <= EXACT_MAX_UNITS)


def exact_skipped_note(cfg: AttackConfig, m: int, k: int, h: int) -> str | None:
    """A sentence saying which read-outs get no exact radii and why (None: all get them)."""
    if not cfg.exact:
        return "exact radii not computed (attack.exact = false): PGD curves only"
    skipped = [r for r in READOUTS if r not in exact_readouts(cfg, m, k, h)]
    if not skipped:
        return None
    units = ", ".join(f"{READOUT_NAMES[r]} ({readout_units(r, m, k, h)} units)" for r in skipped)
    return (
        f"exact radii not computed for {units}: the exact solver handles nets with at most "
        f"{EXACT_MAX_UNITS} hidden units; PGD curves only for those read-outs"
    )


def attack_pair(
    pair: TrainedPair, cfg: AttackConfig, n_attack: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, list[torch.Tensor]]]:
    """PGD curves and exact radii of the four read-outs for every replicate of ``pair``.

    Returns curves: readout -> (S, R) robust accuracy (exact subspace PGD, all replicates
    and radii of a read-out in one batched call), and radii: readout -> list of S (B,)
    exact minimal radii (only for nets with at most EXACT_MAX_UNITS hidden units). The
    exact radii come first: PGD then skips the (point, radius) rows they certify robust,
    whose outcome no attack can change.
    """
    data, n = pair.data, n_attack or pair.data.x_test.shape[1]
    x, y, c = data.x_test[:, :n], data.y_test[:, :n], data.c_test[:, :n]
    signs = data.signs[0]  # J+ is part of the config: the same for every replicate
    groups, group_y = (signs > 0).long(), (y > 0).long()
    binary = [pair.binary.member(i) for i in range(len(pair.seeds))]
    multi = [pair.multiclass.member(i) for i in range(len(pair.seeds))]
    sums = [sum_form_net(net, signs) for net in multi]
    margin = torch.ones(1, 1, dtype=x.dtype, device=x.device)
    jobs: dict[str, Job] = {  # readout -> (nets, labels, PGD objective, PGD readout, exact)
        "binary": (binary, y, BinaryMargin(), margin, "margin"),
        "multiclass": (multi, c, CrossEntropy(), None, "argmax"),
        "derived_sum": (sums, y, BinaryMargin(), margin, "margin"),
        "derived_argmax": (multi, group_y, GroupCrossEntropy(groups), None, "group_argmax"),
    }
    exact_jobs = [
        name
        for name, (nets, *_) in jobs.items()
        if cfg.exact and nets[0].linear.weight.shape[0] <= EXACT_MAX_UNITS
    ]
    radii: dict[str, list[torch.Tensor]] = {name: [] for name in exact_jobs}
    if exact_jobs:
        x64 = x.to("cpu", torch.float64)  # the exact solver's dtype
        for i in range(len(pair.seeds)):
            # one row-space setup per first layer, shared by the read-outs built on it (the
            # sum form has the fine-grained net's first layer)
            solvers: dict[int, ExactRadiusSolver] = {}
            for name in exact_jobs:
                nets, labels, _, _, exact_readout = jobs[name]
                layer = multi[i] if name == "derived_sum" else nets[i]
                if id(layer) not in solvers:
                    solvers[id(layer)] = ExactRadiusSolver(
                        layer.linear.weight, layer.linear.bias, x64[i]
                    )
                result = solvers[id(layer)].radius(
                    nets[i].readout,
                    labels[i],
                    exact_readout,
                    groups=groups if exact_readout == "group_argmax" else None,
                )
                radii[name].append(result.radius)

    curves = {}
    for name, (nets, labels, objective, pgd_readout, _) in jobs.items():
        correct = ensemble_subspace_pgd(
            nets,
            x,
            labels,
            attack_radii(cfg, x.shape[-1]),
            seeds=pair.seeds,
            settings=AttackSettings(
                steps=cfg.pgd_steps,
                rel_step=cfg.rel_step,
                restarts=cfg.restarts,
                random_start=cfg.random_start,
                objective=objective,
            ),
            readout=pgd_readout,
            certified_radii=torch.stack(radii[name]) if name in radii else None,
        )
        curves[name] = correct.double().mean(-1).cpu()
    return curves, radii


def theory_radii(d: int, k: int) -> dict[str, float]:
    """Closed forms of :mod:`featavg.theory` at a cluster center (balanced J+/J-), as summary
    entries."""
    return {
        "theory_radius_feature_averaging": theory.radius_feature_averaging(d, k),
        "theory_radius_decoupling_sum_zero_bias": theory.radius_decoupling_sum(d, k - k // 2),
        "theory_radius_decoupling_sum_bias_minus_d_half": theory.radius_decoupling_sum(
            d, k - k // 2, bias=-d / 2
        ),
        "theory_radius_decoupling_argmax": theory.radius_decoupling_argmax(d),
        "theory_radius_optimal": theory.radius_optimal(d),
    }


# read-out -> (summary key of its closed form, formula, what the formula assumes)
READOUT_THEORY = {
    "binary": ("theory_radius_feature_averaging", "√(d/k)", "f_FA"),
    "multiclass": ("theory_radius_decoupling_argmax", "√(d/2)", "f_FD, k-way argmax"),
    "derived_sum": (
        "theory_radius_decoupling_sum_zero_bias",
        "√(d/(1+|J_−y|))",
        "f_FD sum form, bias 0 (√d/2 at bias −d/2)",
    ),
    "derived_argmax": ("theory_radius_decoupling_argmax", "√(d/2)", "f_FD, class group of argmax"),
}
