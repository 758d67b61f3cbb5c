"""Paper Fig. 2a/b: binary labels -> feature averaging; fine-grained labels -> decoupling.

Trains, on each replicate's own draw of the multi-cluster data (SPEC §1, authors' config:
d = 3072, k = 10, n = 1000, m = 5, 100 full-batch GD steps at lr 1e-3, init N(0, 1e-5^2),
second layer +-1), the binary net on y and the fine-grained net (h = 1) on the cluster
labels, all replicates as one ensemble. Reports cos(w_r, mu_j) against the theory
1/sqrt(|J_s|) (averaging) and 1 / 0 (decoupling).
"""

from __future__ import annotations

import torch

from featavg.experiments.base import ExperimentOutput, aggregate, record_band
from featavg.experiments.synthetic_common import SyntheticRunConfig, train_pairs
from featavg.metrics.alignment import cosine_matrix, theory_cos_same_class
from featavg.plots.alignment import alignment_dynamics, alignment_heatmaps
from featavg.train import accuracy


class SyntheticAlignmentConfig(SyntheticRunConfig):
    """Config of ``synthetic-alignment`` (defaults: the paper / authors' code)."""


def _history_rows(records, net: str, seeds: list[int]) -> list[dict]:
    rows = []
    for rec in records:
        for i, seed in enumerate(seeds):
            row = {"net": net, "seed": seed, "step": rec["step"]}
            row.update({k: float(v[i]) for k, v in rec.items() if k != "step"})
            rows.append(row)
    return rows


def run(cfg: SyntheticAlignmentConfig, device: torch.device, progress: bool = False):
    """Train both nets for every replicate; return numbers, per-step table and figures."""
    return run_batch([cfg], device, progress)[0]


def run_batch(
    cfgs: list[SyntheticAlignmentConfig], device: torch.device, progress: bool = False
) -> list[ExperimentOutput]:
    """:func:`run` for configs differing only in the learning rate and init std (a sweep's
    cells), trained as one ensemble; one output per config."""
    pairs = train_pairs(cfgs, device, progress)
    return [_summarise(cfg, pair) for cfg, pair in zip(cfgs, pairs, strict=True)]


def _summarise(cfg: SyntheticAlignmentConfig, pair) -> ExperimentOutput:
    seeds, data, binary, multi = pair.seeds, pair.data, pair.binary, pair.multiclass
    rec_b, rec_m = pair.records_binary, pair.records_multiclass
    d, k = cfg.data.d, cfg.data.k

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
            "binary: mean same-class cos": record_band(rec_b, "cos_same_class_mean"),
            "binary: max |other-class cos|": record_band(rec_b, "cos_other_class_max"),
            "fine-grained: mean own-cluster cos": record_band(rec_m, "cos_diag_mean"),
            "fine-grained: max |other-cluster cos|": record_band(rec_m, "cos_offdiag_max"),
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
