"""Adversarial training of the synthetic binary net (SPEC §3): does it decouple features?

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

import numpy as np
import torch
from pydantic import Field

from featavg.adversarial import adversarial_perturb
from featavg.attacks.ensemble_subspace import ensemble_subspace_pgd
from featavg.attacks.objectives import BinaryMargin
from featavg.attacks.pgd import radius50
from featavg.data.synthetic import sample_synthetic_stacked
from featavg.experiments.base import ExperimentOutput, aggregate
from featavg.experiments.synthetic_common import SyntheticRunConfig
from featavg.experiments.synthetic_robustness import AttackConfig
from featavg.metrics.alignment import binary_alignment, cosine_matrix
from featavg.models.two_layer import NetConfig, binary_ensemble
from featavg.plots.adversarial import adversarial_figure
from featavg.train import TrainConfig, accuracy, train


class SyntheticAdversarialConfig(SyntheticRunConfig):
    """Config of ``synthetic-adversarial`` (defaults: SPEC §3)."""

    net: NetConfig = NetConfig(m=50)
    train: TrainConfig = TrainConfig(steps=200)
    eps: tuple[float, ...] = Field((0.0, 20.0, 40.0), description="training radii (0 = none)")
    pgd_steps: int = Field(7, ge=1, description="PGD steps of the training attack")
    pgd_step_size: float = Field(10.0, gt=0, description="PGD step of the training attack")
    decoupled_threshold: float = Field(0.8, gt=0, lt=1, description="cos for 'one feature'")
    attack: AttackConfig = AttackConfig(exact=False)


def decoupled_fraction(
    cos: torch.Tensor, unit_sign: torch.Tensor, signs: torch.Tensor, threshold: float
) -> torch.Tensor:
    """(S,) share of units whose largest cosine exceeds ``threshold`` and belongs to a center
    of the unit's own class. cos (S, M, k), unit_sign (M,), signs (k,)."""
    best, j = cos.max(-1)
    own = signs[j] == unit_sign[None, :]
    return ((best > threshold) & own).float().mean(-1)


def adversarially_train(
    data_cfg, net_cfg, train_cfg, seeds, eps, pgd_steps, step_size, device, progress=False
):
    """Binary nets trained with L2 PGD adversarial training, one member per (seed, eps),
    seed-major, all in one ensemble. Returns (model, stacked data of every member, member
    seeds); member i uses eps[i % len(eps)] and the data and init of its seed."""
    member_seeds = [s for s in seeds for _ in eps]
    data = sample_synthetic_stacked(data_cfg, member_seeds).to(device)
    model = binary_ensemble(member_seeds, data_cfg.d, net_cfg).to(device)
    member_eps = torch.tensor(list(eps) * len(seeds))
    train(
        model,
        data.x_train,
        data.y_train,
        train_cfg,
        perturb=adversarial_perturb(member_eps, pgd_steps, step_size),
        progress=progress,
    )
    return model, data, member_seeds


def run(cfg: SyntheticAdversarialConfig, device: torch.device, progress: bool = False):
    """Train one member per (seed, eps) in a single ensemble; alignment and robustness."""
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    n_eps = len(cfg.eps)
    model, data, member_seeds = adversarially_train(
        cfg.data,
        cfg.net,
        cfg.train,
        seeds,
        cfg.eps,
        cfg.pgd_steps,
        cfg.pgd_step_size,
        device,
        progress,
    )
    signs = data.signs[0]
    cos = cosine_matrix(model.weight, data.centers)
    align = binary_alignment(cos, model.unit_sign, signs)
    frac = decoupled_fraction(cos, model.unit_sign, signs, cfg.decoupled_threshold)
    test_acc = accuracy("binary", model(data.x_test), data.y_test)
    correct = ensemble_subspace_pgd(
        [model.member(i) for i in range(len(member_seeds))],
        data.x_test,
        data.y_test,
        cfg.attack.radii,
        seeds=member_seeds,
        steps=cfg.attack.pgd_steps,
        rel_step=cfg.attack.rel_step,
        restarts=cfg.attack.restarts,
        random_start=cfg.attack.random_start,
        objective=BinaryMargin(),
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
        per_seed[f"radius50_{tag}"] = [radius50(cfg.attack.radii, curves[m]) for m in members]
    numbers = aggregate(per_seed)
    numbers["curves"] = {
        "radii": list(cfg.attack.radii),
        **{
            f"eps{e:g}": np.mean(
                [curves[s * n_eps + j].numpy() for s in range(len(seeds))], 0
            ).tolist()
            for j, e in enumerate(cfg.eps)
        },
    }

    fig = adversarial_figure(
        cfg.eps,
        cos[:n_eps].cpu().numpy(),
        model.unit_sign.tolist(),
        signs.tolist(),
        frac[:n_eps].tolist(),
        align["cos_same_class_mean"][:n_eps].tolist(),
        cfg.attack.radii,
        {f"trained at eps={e:g}": numbers["curves"][f"eps{e:g}"] for e in cfg.eps},
        note=f"heatmaps: seed {seeds[0]}; curves: mean of {len(seeds)} seed(s)",
    )
    return ExperimentOutput(numbers=numbers, figures={"adversarial": fig})
