"""Adversarial training of the synthetic binary net (the paper's): does it decouple features?

One ensemble holds the same binary net (2m = 100 units, same data and initialisation)
trained with L2 PGD adversarial training at each radius of ``eps`` (0 = standard training;
paper: 20 and 40, PGD step 10, 7 steps, 200 full-batch GD steps), then reports for each:

* the alignment heatmap (hidden units x cluster centers) and the averaging numbers;
* ``decoupled_fraction``: the share of units whose largest cosine, to a single center of
  their own class, exceeds ``decoupled_threshold`` (a unit that learned one feature);
* the robust-accuracy curve under the paper's PGD protocol (exact subspace PGD; no exact
  radii: 100 units is beyond the exact solver's 16).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field, model_validator

from featavg import theory
from featavg.attacks.core import AttackSettings
from featavg.attacks.objectives import BinaryMargin
from featavg.attacks.two_layer.ensemble_subspace import ensemble_subspace_pgd
from featavg.config.checks import check_list
from featavg.experiments.costs import Job, radius_count, synthetic_estimate
from featavg.experiments.output import ExperimentOutput, aggregate
from featavg.experiments.spec import REPRODUCE, TINY, Check, Claim, Expected, Experiment
from featavg.experiments.synthetic_attack import AttackConfig, attack_radii
from featavg.experiments.synthetic_common import TINY_DATA, SyntheticRunConfig
from featavg.experiments.tolerances import (
    COS_MAX_TOL,
    COS_MEAN_TOL,
    INV_SQRT_LABEL,
    PGD_RADIUS_TOL,
)
from featavg.metrics.alignment import binary_alignment, cosine_matrix
from featavg.metrics.curves import radius50_grid
from featavg.metrics.intervals import plural
from featavg.models.two_layer import NetConfig
from featavg.plots.adversarial import AdversarialHeatmaps, adversarial_figure
from featavg.progress import stage
from featavg.runs.context import RunContext
from featavg.runs.guards import ResourceEstimate
from featavg.training import TrainConfig, accuracy
from featavg.training.adversarial import AdversarialPGD, RandomStart, adversarially_train


class SyntheticAdversarialConfig(SyntheticRunConfig):
    """Config of ``synthetic-adversarial`` (defaults: the authors' ``adv_train.py``)."""

    net: NetConfig = NetConfig(m=50)
    train: TrainConfig = TrainConfig(steps=200)
    eps: tuple[float, ...] = Field(
        (0.0, 20.0, 40.0), description="training radii (>= 0, distinct; 0 = none)"
    )
    pgd_steps: int = Field(7, ge=1, description="PGD steps of the training attack")
    pgd_step_size: float = Field(10.0, gt=0, description="PGD step of the training attack")
    pgd_random_start: RandomStart = Field(
        "sphere",
        description="start of the training attack: 'sphere' (uniform on the eps-sphere, "
        "the authors' adv_train.py) or 'none' (the clean point)",
    )
    decoupled_threshold: float = Field(0.8, gt=0, lt=1, description="cos for 'one feature'")
    min_train_acc: float = Field(
        0.9,
        ge=0,
        le=1,
        description="a net whose clean training accuracy is below this failed to fit; "
        "such seeds are counted (failed_fits_eps<e>) and listed, and stay in the means",
    )
    attack: AttackConfig = AttackConfig(exact=False)

    @model_validator(mode="after")
    def _check_fields_used(self) -> SyntheticAdversarialConfig:
        # eps{e:g} names each radius's summary keys: distinct labels, one member per radius
        check_list("eps", self.eps, low=0.0, min_len=1)
        if self.attack.exact:
            raise ValueError(
                "attack.exact: synthetic-adversarial computes no exact radii (the exact "
                "solver stops at 16 hidden units); allowed: false"
            )
        if self.train.formulation == "gram":
            raise ValueError(
                "train.formulation: adversarial training steps on fresh factored inputs "
                "(the direct formulation); allowed: auto, direct"
            )
        return self


def decoupled_fraction(
    cos: torch.Tensor, unit_sign: torch.Tensor, signs: torch.Tensor, threshold: float
) -> torch.Tensor:
    """(S,) share of units whose largest cosine exceeds ``threshold`` and belongs to a center
    of the unit's own class. cos (S, M, k), unit_sign (M,), signs (k,)."""
    best, j = cos.max(-1)
    own = signs[j] == unit_sign[None, :]
    return ((best > threshold) & own).float().mean(-1)


def run(cfg: SyntheticAdversarialConfig, ctx: RunContext) -> ExperimentOutput:
    """Train one member per (seed, eps) in a single ensemble; alignment and robustness."""
    device, progress = ctx.device, ctx.progress
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    n_eps = len(cfg.eps)
    radii = attack_radii(cfg.attack, cfg.data.d)
    model, data, member_seeds = adversarially_train(
        cfg.data,
        cfg.net,
        cfg.train,
        seeds,
        AdversarialPGD(cfg.eps, cfg.pgd_steps, cfg.pgd_step_size, cfg.pgd_random_start),
        device,
        progress,
    )
    signs = data.signs[0]
    cos = cosine_matrix(model.weight, data.centers)
    align = binary_alignment(cos, model.unit_sign, signs)
    frac = decoupled_fraction(cos, model.unit_sign, signs, cfg.decoupled_threshold)
    test_acc = accuracy("binary", model(data.x_test), data.y_test)
    train_acc = accuracy("binary", model(data.x_train), data.y_train)  # clean inputs
    attack = f"pgd attack ({len(member_seeds)} nets x {len(radii)} radii)"
    with stage(attack, enabled=progress):  # a long call without a bar of its own
        correct = ensemble_subspace_pgd(
            [model.member(i) for i in range(len(member_seeds))],
            data.x_test,
            data.y_test,
            radii,
            seeds=member_seeds,
            settings=AttackSettings(
                steps=cfg.attack.pgd_steps,
                rel_step=cfg.attack.rel_step,
                restarts=cfg.attack.restarts,
                random_start=cfg.attack.random_start,
                objective=BinaryMargin(),
            ),
            readout=torch.ones(1, 1, device=device),
        )
    curves = list(correct.double().mean(-1).cpu())

    per_seed: dict[str, list[float]] = {}
    for e_idx, e in enumerate(cfg.eps):
        members = [s * n_eps + e_idx for s in range(len(seeds))]
        tag = f"eps{e:g}"
        per_seed[f"cos_same_class_mean_{tag}"] = align["cos_same_class_mean"][members].tolist()
        per_seed[f"cos_other_class_max_{tag}"] = align["cos_other_class_max"][members].tolist()
        per_seed[f"decoupled_fraction_{tag}"] = frac[members].tolist()
        per_seed[f"clean_test_acc_{tag}"] = test_acc[members].tolist()
        per_seed[f"clean_train_acc_{tag}"] = train_acc[members].tolist()
        per_seed[f"radius50_{tag}"] = [radius50_grid(radii, curves[m]) for m in members]
    numbers = aggregate(
        per_seed,
        proportions=["decoupled_fraction_*", "clean_*_acc_*"],
        cosines=["cos_*"],
        positive=["radius50_*"],
    )
    failed: dict[str, list[int]] = {}  # eps tag -> seeds whose net did not fit
    for e_idx, e in enumerate(cfg.eps):
        fits = [float(train_acc[s * n_eps + e_idx]) >= cfg.min_train_acc for s in range(len(seeds))]
        failed[f"eps{e:g}"] = [seed for seed, ok in zip(seeds, fits, strict=True) if not ok]
        numbers[f"failed_fits_eps{e:g}"] = len(failed[f"eps{e:g}"])
    numbers["notes"] = [
        f"eps {tag[3:]}: {plural(len(bad), 'seed')} ({', '.join(map(str, bad))}) of "
        f"{len(seeds)} failed to fit (clean training accuracy below {cfg.min_train_acc:g}); "
        "they stay in the means and intervals, see the adversarial table"
        for tag, bad in failed.items()
        if bad
    ]
    numbers["curves"] = {
        "radii": list(radii),
        **{
            f"eps{e:g}": np.mean(
                [curves[s * n_eps + j].numpy() for s in range(len(seeds))], 0
            ).tolist()
            for j, e in enumerate(cfg.eps)
        },
    }

    fig = adversarial_figure(
        AdversarialHeatmaps(
            cfg.eps,
            cos[:n_eps].cpu().numpy(),
            model.unit_sign.tolist(),
            signs.tolist(),
            frac[:n_eps].tolist(),
            align["cos_same_class_mean"][:n_eps].tolist(),
        ),
        radii,
        {f"trained at eps={e:g}": numbers["curves"][f"eps{e:g}"] for e in cfg.eps},
        note=f"heatmaps: seed {seeds[0]}; curves: mean of {plural(len(seeds), 'seed')}",
    )
    nets = []  # one row per trained net: (eps, seed) and its numbers
    for m, (seed, e) in enumerate((s, e) for s in seeds for e in cfg.eps):
        nets.append(
            {
                "eps": e,
                "seed": seed,
                "cos_same_class_mean": float(align["cos_same_class_mean"][m]),
                "cos_other_class_max": float(align["cos_other_class_max"][m]),
                "decoupled_fraction": float(frac[m]),
                "clean_test_acc": float(test_acc[m]),
                "clean_train_acc": float(train_acc[m]),
                "fitted": float(train_acc[m]) >= cfg.min_train_acc,
                "radius50": radius50_grid(radii, curves[m]),
            }
        )
    curve_rows = [
        {"eps": e, "seed": seed, "radius": r, "pgd_acc": float(curves[m][j])}
        for m, (seed, e) in enumerate((s, e) for s in seeds for e in cfg.eps)
        for j, r in enumerate(radii)
    ]
    return ExperimentOutput(
        numbers=numbers,
        tables={"adversarial": nets, "curves": curve_rows},
        figures={"adversarial": fig},
    )


# What standard training (eps 0) of this experiment's net shows, measured (README): the
# deviation from averaging is the step size, stated beside the numbers rather than excused.
EPS0_NOTE = (
    "theory from the config. The paper's config here (m = 50 units per class, ±1 second "
    "layer, lr 1e-3) gives ≈ 0.38, below 1/√|J_s|: f sums 100 units, so one GD step moves "
    "it ~10× more than in the 5-unit alignment net, and the units keep a component "
    "pointing away from the other class's centers (next row). At lr 1e-4 the same net "
    "averages (≈ 0.44; other-class ≈ 0.06): the theory describes small steps."
)


# PGD only upper-bounds the robust accuracy: the radius it finds lies above the true one
PGD_OVERSTATES = Expected(
    "PGD finds only some of the perturbations that flip a point, so its curve overstates "
    "the robust accuracy and its 50% radius lies above the true one.",
    "above",
)


def checks(cfg: SyntheticAdversarialConfig) -> list[Check]:
    """Per training radius: averaging cosines, decoupled fraction, PGD 50% radius, clean
    accuracies and the seeds that failed to fit; standard training (eps 0) against the
    averaging theory of its config."""
    n_pos = len(cfg.data.positive_clusters)
    n_neg = cfg.data.k - n_pos
    # with m units per class, the mean same-class cosine averages 1/sqrt(|J+|), 1/sqrt(|J-|)
    cos_theory = (1 / math.sqrt(n_pos) + 1 / math.sqrt(n_neg)) / 2
    r_theory = theory.radius_feature_averaging(cfg.data.d, cfg.data.k)
    rows = []
    for e in cfg.eps:
        tag = f"eps{e:g}"
        base = e == 0  # standard training: the averaging theory applies
        where = "standard training" if base else f"adversarial training at eps {e:g}"
        rows += [
            Check(
                f"{where}: mean same-class cos",
                f"cos_same_class_mean_{tag}",
                cos_theory if base else None,
                INV_SQRT_LABEL if base else "",
                COS_MEAN_TOL,
                note=EPS0_NOTE if base else "averaging would give 1/√|J_s|",
            ),
            Check(
                f"{where}: max |other-class cos|",
                f"cos_other_class_max_{tag}",
                0.0 if base else None,
                "0" if base else "",
                COS_MAX_TOL,
                note="averaging predicts 0" if base else "",
            ),
            Check(
                f"{where}: decoupled fraction of units",
                f"decoupled_fraction_{tag}",
                note="units whose largest cos, with an own-class center, exceeds the threshold",
            ),
            Check(
                f"{where}: PGD 50% radius",
                f"radius50_{tag}",
                r_theory if base else None,
                "√(d/k)" if base else "",
                PGD_RADIUS_TOL,
                True,
                "grid value; theory from the config; PGD upper-bounds the radius"
                if base
                else "grid value",
                expected=PGD_OVERSTATES if base else None,
            ),
            Check(f"{where}: clean test accuracy", f"clean_test_acc_{tag}"),
            Check(f"{where}: clean training accuracy", f"clean_train_acc_{tag}"),
            Check(
                f"{where}: seeds whose net failed to fit",
                f"failed_fits_{tag}",
                0.0,
                "0 (every net fits)",
                0.0,
                note=f"clean training accuracy below min_train_acc = {cfg.min_train_acc:g}; "
                "such seeds are listed in the notes and the table and stay in the means",
            ),
        ]
    return rows


CLAIM = Claim(
    "Adversarial training decouples features (paper's adversarial-training experiment)",
    "L2 PGD adversarial training of the synthetic binary net (100 hidden units; eps 20 and "
    "40, PGD step 10, 7 steps from a random start on the eps-sphere, 200 full-batch GD "
    "steps) breaks feature averaging: hidden units learn individual cluster features "
    "instead of their class's average, and the net becomes more robust.",
    "For each training radius (eps 0 = standard training, held against the averaging "
    "theory): the share of units aligned with a single own-class center (decoupled "
    "fraction), the mean same-class cosine (1/√|J_s| under averaging) and the PGD "
    "robust-accuracy curve of the trained net, with intervals over seeds. A seed whose net "
    "does not fit its clean training set is counted and listed, not dropped (with a clean "
    "PGD start, seed 1 of 0..4 does not fit at eps 40, where the ball reaches halfway to "
    "the other class's centers; with the authors' sphere start all five fit). The eps-0 "
    "arm averages only partly at this config's step size (its check rows say why).",
)


def cost(cfg: SyntheticAdversarialConfig) -> ResourceEstimate:
    """One ensemble of a member per (seed, eps), trained adversarially (``pgd_steps`` PGD
    steps per GD step), then attacked on the test set."""
    data, s = cfg.data, cfg.seeds * len(cfg.eps)
    radii = radius_count(cfg)
    units = 2 * cfg.net.m
    job = Job(s, data.n_train, data.n_test, data.d, units, data.n_test, radii, cfg.pgd_steps)
    return synthetic_estimate([job], cfg.train)


EXPERIMENT = Experiment(
    name="synthetic-adversarial",
    description="L2 adversarial training (eps 0/20/40) of the 100-unit binary net: decoupling?",
    config_cls=SyntheticAdversarialConfig,
    run=run,
    cost=cost,
    claim=CLAIM,
    figures={
        "adversarial": "Heatmaps of the nets trained at each eps, and their robust-accuracy curves."
    },
    tables={
        "adversarial": ("eps", "seed", "cos_same_class_mean", "decoupled_fraction", "radius50"),
        "curves": ("eps", "seed", "radius", "pgd_acc"),
    },
    checks=checks,
    summary_keys=lambda cfg: ("curves", "notes"),
    # the demo's 3 seeds keep the paper preset's protocol (radii, steps, attack); 5 seeds
    # (the paper preset) take ~1.6x the time for t intervals ~2x narrower
    presets={
        REPRODUCE: {"seeds": 3},
        "paper": {"seeds": 5},
        TINY: {
            "data": TINY_DATA,
            "net": {"m": 2},
            "train": {"steps": 5},
            "eps": [0.0, 3.0],
            "attack": {"radii": [0.0, 4.0]},
        },
    },
    runtime="~27 s (1 seed), ~65 s (3 seeds, reproduce), ~105 s (5 seeds, paper preset); "
    "measured on 2 near-idle CPU cores",
    paper_refs=("adv_training",),
)
