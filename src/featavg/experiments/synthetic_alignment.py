"""Paper Fig. 2a/b: binary labels -> feature averaging; fine-grained labels -> decoupling.

Trains, on each replicate's own draw of the multi-cluster data (SPEC §1, authors' config:
d = 3072, k = 10, n = 1000, m = 5, 100 full-batch GD steps at lr 1e-3, init N(0, 1e-5^2),
second layer +-1), the binary net on y and the fine-grained net (h = 1) on the cluster
labels, all replicates as one ensemble. Reports cos(w_r, mu_j) against the theory
1/sqrt(|J_s|) (averaging) and 1 / 0 (decoupling).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from featavg.data.synthetic import SyntheticConfig, sample_synthetic, stack_datasets
from featavg.experiments.base import ExperimentOutput, aggregate
from featavg.metrics.alignment import (
    binary_alignment,
    cosine_matrix,
    multiclass_alignment,
    theory_cos_same_class,
)
from featavg.metrics.intervals import mean_ci95
from featavg.models.two_layer import NetConfig, binary_ensemble, multiclass_ensemble
from featavg.plots.alignment import alignment_dynamics, alignment_heatmaps
from featavg.train import TrainConfig, accuracy, train


class SyntheticAlignmentConfig(BaseModel):
    """Config of ``synthetic-alignment`` (defaults: the paper / authors' code)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: SyntheticConfig = SyntheticConfig()
    net: NetConfig = NetConfig()
    train: TrainConfig = TrainConfig()
    seed: int = Field(0, ge=0, description="replicate i uses seed + i for data and init")
    seeds: int = Field(1, ge=1, description="number of independent replicates")


def replicate_seeds(cfg) -> list[int]:
    """Seeds of the replicates: seed, seed + 1, ..., seed + seeds - 1."""
    return [cfg.seed + i for i in range(cfg.seeds)]


def _history_rows(records, net: str, seeds: list[int]) -> list[dict]:
    rows = []
    for rec in records:
        for i, seed in enumerate(seeds):
            row = {"net": net, "seed": seed, "step": rec["step"]}
            row.update({k: float(v[i]) for k, v in rec.items() if k != "step"})
            rows.append(row)
    return rows


def _band(records, key):
    """(mean, lo, hi) arrays over recorded steps of a per-seed metric."""
    stats = np.array([mean_ci95(r[key].tolist()) for r in records])
    return stats[:, 0], stats[:, 1], stats[:, 2]


def run(cfg: SyntheticAlignmentConfig, device: torch.device, progress: bool = False):
    """Train both nets for every replicate; return numbers, per-step table and figures."""
    seeds = replicate_seeds(cfg)
    data = stack_datasets([sample_synthetic(cfg.data, s) for s in seeds]).to(device)
    d, k = cfg.data.d, cfg.data.k

    def binary_metrics(step, model):
        cos = cosine_matrix(model.weight, data.centers)
        return binary_alignment(cos, model.unit_sign, data.signs)

    def multiclass_metrics(step, model):
        return multiclass_alignment(cosine_matrix(model.weight, data.centers), model.unit_class)

    binary = binary_ensemble(seeds, d, cfg.net).to(device)
    rec_b = train(
        binary,
        data.x_train,
        data.y_train,
        cfg.train,
        seed=cfg.seed,
        on_record=binary_metrics,
        progress=progress,
    )
    multi = multiclass_ensemble(seeds, d, k, cfg.net).to(device)
    rec_m = train(
        multi,
        data.x_train,
        data.c_train,
        cfg.train,
        seed=cfg.seed,
        on_record=multiclass_metrics,
        progress=progress,
    )

    final_b, final_m = rec_b[-1], rec_m[-1]
    per_seed = {
        "cos_same_class_mean_binary": final_b["cos_same_class_mean"],
        "cos_same_class_mean_pos_binary": final_b["cos_same_class_mean_pos"],
        "cos_same_class_mean_neg_binary": final_b["cos_same_class_mean_neg"],
        "cos_other_class_max_binary": final_b["cos_other_class_max"],
        "cos_diag_mean_multiclass": final_m["cos_diag_mean"],
        "cos_offdiag_max_multiclass": final_m["cos_offdiag_max"],
        "theory_cos_same_class": final_b["theory_cos_same_class"],
        "train_loss_binary": final_b["loss"],
        "train_loss_multiclass": final_m["loss"],
        "train_acc_binary": final_b["train_acc"],
        "train_acc_multiclass": final_m["train_acc"],
        "test_acc_binary": accuracy("binary", binary(data.x_test), data.y_test).cpu(),
        "test_acc_multiclass": accuracy("multiclass", multi(data.x_test), data.c_test).cpu(),
    }
    numbers = aggregate(per_seed)
    theory = theory_cos_same_class(data.signs[0])
    numbers["theory_cos_same_class_pos"] = theory["pos"]
    numbers["theory_cos_same_class_neg"] = theory["neg"]

    note = f"replicate seed {seeds[0]} of {len(seeds)}; d={d}, k={k}, n={cfg.data.n_train}"
    heatmap = alignment_heatmaps(
        cosine_matrix(binary.weight[0], data.centers[0]).cpu().numpy(),
        binary.unit_sign.cpu().numpy(),
        cosine_matrix(multi.weight[0], data.centers[0]).cpu().numpy(),
        multi.unit_class.cpu().numpy(),
        data.signs[0].cpu().numpy(),
        float(numbers["theory_cos_same_class"]),
        note,
    )
    steps = [r["step"] for r in rec_b]
    dynamics = alignment_dynamics(
        steps,
        {
            "binary: mean same-class cos": _band(rec_b, "cos_same_class_mean"),
            "binary: max |other-class cos|": _band(rec_b, "cos_other_class_max"),
            "fine-grained: mean own-cluster cos": _band(rec_m, "cos_diag_mean"),
            "fine-grained: max |other-cluster cos|": _band(rec_m, "cos_offdiag_max"),
        },
        {"1/sqrt(|J_s|)": float(numbers["theory_cos_same_class"]), "1": 1.0},
        note=f"mean and 95% interval over {len(seeds)} seed(s)",
    )
    rows = _history_rows(rec_b, "binary", seeds) + _history_rows(rec_m, "multiclass", seeds)
    return ExperimentOutput(
        numbers=numbers,
        tables={"metrics": rows},
        figures={"heatmap": heatmap, "alignment_dynamics": dynamics},
    )
