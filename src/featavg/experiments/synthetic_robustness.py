"""Paper Fig. 3 left: robust accuracy vs L2 radius, binary vs fine-grained supervision.

For every replicate both nets of :mod:`synthetic_common` are attacked on the test set with
the authors' protocol (L2 PGD, 7 steps of eps/4, random start on the eps-sphere, no box,
radii 0, 2, .., 58), run exactly in the span of the first-layer rows
(:func:`featavg.attacks.subspace.subspace_pgd`), all radii in one batch. Four read-outs:

* ``binary``: the binary net, logistic-margin loss;
* ``multiclass``: plain k-way accuracy of the fine-grained net under k-way cross-entropy
  (the authors' synthetic curve for the 10-class net);
* ``derived_sum``: F = sum_{J+} f_j - sum_{J-} f_j, logistic-margin loss;
* ``derived_argmax``: class group of argmax_j f_j, loss -log sum_{j in group(y)} softmax_j.

Beside PGD (an upper bound on robustness) the exact minimal L2 radius of every point gives
certified curves (:mod:`featavg.attacks.exact`), and the analytic attack along the negative
averaged feature direction gives the binary net's flip radius along that one direction.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from featavg import theory
from featavg.attacks.analytic import (
    averaged_direction,
    line_search_flip_radius,
    margin_flip_on_ray,
)
from featavg.attacks.ensemble_subspace import ensemble_subspace_pgd
from featavg.attacks.exact import ExactRadiusSolver, certified_accuracy
from featavg.attacks.objectives import BinaryMargin, CrossEntropy, GroupCrossEntropy
from featavg.attacks.pgd import radius50
from featavg.experiments.base import ExperimentOutput, aggregate, band
from featavg.experiments.synthetic_common import SyntheticRunConfig, TrainedPair, train_pair
from featavg.models import sum_form_net
from featavg.plots.robustness import robustness_curves

READOUTS = ("binary", "multiclass", "derived_sum", "derived_argmax")
EXACT_MAX_UNITS = 16


class AttackConfig(BaseModel):
    """The robustness protocol (defaults: the authors' synthetic Fig. 3 left)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    radii: tuple[float, ...] = Field(
        tuple(float(r) for r in range(0, 60, 2)), description="L2 radii of the curve"
    )
    pgd_steps: int = Field(7, ge=1, description="PGD steps")
    rel_step: float = Field(0.25, gt=0, description="PGD step size / eps")
    random_start: Literal["sphere", "ball", "none"] = Field(
        "sphere", description="random start: on the eps-sphere (paper), in the ball, or none"
    )
    restarts: int = Field(1, ge=1, description="PGD restarts")
    exact: bool = Field(True, description="exact minimal radii (nets with <= 16 units)")


class SyntheticRobustnessConfig(SyntheticRunConfig):
    """Config of ``synthetic-robustness``."""

    attack: AttackConfig = AttackConfig()
    n_attack: int | None = Field(None, ge=1, description="attack the first n test points")


def attack_pair(pair: TrainedPair, cfg: AttackConfig, n_attack: int | None = None):
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
    jobs = {  # readout -> (nets, labels, PGD objective, PGD readout, exact readout)
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
    radii = {name: [] for name in exact_jobs}
    x64 = x.to("cpu", torch.float64) if exact_jobs else None  # the exact solver's dtype
    for i in range(len(pair.seeds)):
        # one row-space setup per first layer, shared by the read-outs built on it (the
        # sum form has the fine-grained net's first layer)
        solvers = {}
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
            cfg.radii,
            seeds=pair.seeds,
            steps=cfg.pgd_steps,
            rel_step=cfg.rel_step,
            restarts=cfg.restarts,
            random_start=cfg.random_start,
            objective=objective,
            readout=pgd_readout,
            certified_radii=torch.stack(radii[name]) if name in radii else None,
        )
        curves[name] = correct.double().mean(-1).cpu()
    return curves, radii


def _analytic_radius(bnet, x, y, centers, signs, max_radius):
    u = averaged_direction(centers, signs, y)
    flipped_at = margin_flip_on_ray(bnet, x, y, u)
    return line_search_flip_radius(flipped_at, len(x), max_radius, dtype=x.dtype, device=x.device)


def theory_radii(d: int, k: int) -> dict[str, float]:
    """Closed forms of SPEC §2 at a cluster center (balanced J+/J-)."""
    return {
        "theory_radius_feature_averaging": theory.radius_feature_averaging(d, k),
        "theory_radius_decoupling_sum_zero_bias": theory.radius_decoupling_sum(d, k - k // 2),
        "theory_radius_decoupling_sum_bias_minus_d_half": theory.radius_decoupling_sum(
            d, k - k // 2, bias=-d / 2
        ),
        "theory_radius_decoupling_argmax": theory.radius_decoupling_argmax(d),
        "theory_radius_optimal": theory.radius_optimal(d),
    }


def _band(per_seed: list[torch.Tensor]):
    """(mean, lo, hi) over seeds at every radius of a list of (R,) curves."""
    return band(torch.stack(per_seed).T.tolist())


def run(cfg: SyntheticRobustnessConfig, device: torch.device, progress: bool = False):
    """Train, attack every replicate with PGD / exact / analytic attacks, summarise."""
    pair = train_pair(cfg, device, progress, record_alignment=False)
    data, n_att = pair.data, cfg.n_attack or cfg.data.n_test
    radii_grid = cfg.attack.radii
    curves, exact_radii = attack_pair(pair, cfg.attack, n_att)
    pgd_curves = {name: list(curves[name]) for name in READOUTS}
    exact_radii = {name: exact_radii.get(name, []) for name in READOUTS}
    analytic = []
    for i in range(len(pair.seeds)):
        x, y = data.x_test[i, :n_att], data.y_test[i, :n_att]
        analytic.append(
            _analytic_radius(
                pair.binary.member(i),
                x,
                y,
                data.centers[i],
                data.signs[i],
                4 * math.sqrt(cfg.data.d),
            ).cpu()
        )

    per_seed: dict[str, list[float]] = {}
    exact_curves = {}
    for name in READOUTS:
        per_seed[f"radius50_{name}"] = [radius50(radii_grid, a) for a in pgd_curves[name]]
        per_seed[f"clean_acc_{name}"] = [
            float(a[0]) if radii_grid[0] == 0 else math.nan for a in pgd_curves[name]
        ]
        if exact_radii[name]:
            cert = [certified_accuracy(r, radii_grid) for r in exact_radii[name]]
            exact_curves[name] = cert
            per_seed[f"exact_median_radius_{name}"] = [float(r.median()) for r in exact_radii[name]]
            per_seed[f"radius50_exact_{name}"] = [radius50(radii_grid, a) for a in cert]
    per_seed["analytic_median_radius_binary"] = [float(r.median()) for r in analytic]
    for net, ens in (("binary", pair.binary), ("multiclass", pair.multiclass)):
        per_seed[f"bias_mean_{net}"] = ens.bias.mean(1).tolist()
        per_seed[f"bias_min_{net}"] = ens.bias.amin(1).tolist()
        per_seed[f"bias_max_{net}"] = ens.bias.amax(1).tolist()
    numbers = aggregate(per_seed)
    d, k = cfg.data.d, cfg.data.k
    numbers.update(theory_radii(d, k))
    numbers["curves"] = {
        "radii": list(radii_grid),
        "pgd": {n: _band(v)[0].tolist() for n, v in pgd_curves.items()},
        "exact": {n: _band(v)[0].tolist() for n, v in exact_curves.items()},
    }
    rows = []
    for name in READOUTS:
        pm, plo, phi = _band(pgd_curves[name])
        em = _band(exact_curves[name]) if name in exact_curves else None
        for j, eps in enumerate(radii_grid):
            row = {
                "readout": name,
                "radius": eps,
                "pgd_acc": pm[j],
                "pgd_acc_lo": plo[j],
                "pgd_acc_hi": phi[j],
            }
            if em is not None:
                row.update(
                    {"exact_acc": em[0][j], "exact_acc_lo": em[1][j], "exact_acc_hi": em[2][j]}
                )
            rows.append(row)
    fa = numbers["theory_radius_feature_averaging"]
    fd_sum = numbers["theory_radius_decoupling_sum_zero_bias"]
    fd_arg = numbers["theory_radius_decoupling_argmax"]
    theory_marks = {
        f"sqrt(d/k)={fa:.1f} (f_FA)": fa,
        f"sqrt(d/(1+k/2))={fd_sum:.1f} (f_FD sum)": fd_sum,
        f"sqrt(d/2)={fd_arg:.1f} (f_FD argmax)": fd_arg,
    }
    fig = robustness_curves(
        list(radii_grid),
        {n: _band(v) for n, v in pgd_curves.items()},
        {n: _band(v) for n, v in exact_curves.items()},
        theory_marks,
        note=f"d={d}, k={k}, {len(pair.seeds)} seed(s), {n_att} test points; "
        "theory radii are at cluster centers",
    )
    return ExperimentOutput(
        numbers=numbers, tables={"robustness": rows}, figures={"robustness": fig}
    )
