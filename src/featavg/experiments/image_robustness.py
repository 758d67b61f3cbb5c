"""The real-data robustness experiment (SPEC §3.1, §3.2): binary vs 10-class model on the
binary task, every read-out attacked in the paper's normalised units.

:func:`run_robustness` is the whole experiment, which ``mnist-robustness``, ``mnist-linf``
and ``cifar10-robustness`` run with their own defaults and presets (their modules hold the
claims, presets and captions); :func:`robustness_checks` and
:func:`robustness_summary_keys` declare what it writes.
"""

from __future__ import annotations

from typing import Any

import torch

from featavg.attacks.readouts import READOUT_LABELS, READOUTS, build_readouts
from featavg.experiments.image_attack import (
    attack_points,
    attack_readouts,
    curve_numbers,
    curve_rows,
    curves_figure,
    method_key,
    pixel_units,
)
from featavg.experiments.image_common import (
    ImageRobustnessConfig,
    alignment_rows,
    fc_alignment,
    train_pair,
)
from featavg.experiments.output import ExperimentOutput
from featavg.experiments.spec import Check
from featavg.plots.image_robustness import alignment_figure
from featavg.runs.context import RunContext
from featavg.trained_models import TrainedModel


def _model_record(trained: TrainedModel) -> dict[str, Any]:
    """What a summary says about one trained model."""
    s = trained.summary
    return {
        "directory": str(trained.directory),
        "cached": trained.cached,
        "model": s.get("model"),
        "labels": s.get("labels"),
        "test_acc": s.get("final_test_acc"),
        "train_acc": s.get("final_train_acc"),
        "train_wall_s": s.get("provenance", {}).get("wall_time_s"),
        "images_per_s": s.get("images_per_s"),
    }


def run_robustness(cfg: ImageRobustnessConfig, ctx: RunContext, *, title: str) -> ExperimentOutput:
    """Train both models, attack the four read-outs in the paper's normalised space on the
    attacked test points, measure the last layer's alignment, and summarise. ``title``
    names the experiment in figure titles (e.g. "MNIST, L2")."""
    device, progress = ctx.device, ctx.progress
    pair = train_pair(cfg, ctx)
    data = pair.binary.data
    split = attack_points(data.test, cfg.attack.points, cfg.seed)
    model_b, model_f = pair.binary.model.eval(), pair.fine.model.eval()
    with torch.no_grad():  # the paper's attack space: the net's normalised input
        x = model_b.normalize(split.x.to(device).float() / 255.0)
    groups = list(pair.grouping.groups)
    readouts = build_readouts(model_b.net, model_f.net, groups)
    curves = attack_readouts(
        readouts, x, split.y.to(device), groups, cfg.attack, seed=cfg.seed, progress=progress
    )
    units = pixel_units(model_b.normalization, cfg.attack.norm)
    numbers = curve_numbers(curves, cfg.attack.method, units)
    alignment = fc_alignment(pair, cfg.centre_features, device)
    numbers.update(alignment.numbers)
    numbers.update(
        {
            "dataset": data.describe(),
            "stand_in_label": data.stand_in,
            "grouping": pair.grouping.describe(),
            "normalization": model_b.normalization.name,
            "pixel_units": units.note,
            "points_attacked": len(split),
            "model_dirs": {
                "binary": str(pair.binary.directory),
                "tenclass": str(pair.fine.directory),
            },
            "models": {"binary": _model_record(pair.binary), "tenclass": _model_record(pair.fine)},
        }
    )
    what = data.stand_in or data.name
    text = (
        f"{what}: {len(data.train)} training / {len(data.test)} test images, "
        f"{len(split)} attacked; grouping {pair.grouping.name}"
    )
    banner = f" — on {data.stand_in}" if data.stand_in else ""
    fig_title = (
        f"{title}{banner}: binary vs 10-class model, grouping {pair.grouping.name}, "
        f"{len(split)} test points"
    )
    figure = curves_figure(numbers["curves"], cfg.attack, units, fig_title)
    groups_text = [f"group {s}: {list(pair.grouping.members(s))}" for s in range(2)]
    heat = alignment_figure(
        alignment.binary.numpy(),
        alignment.fine.numpy(),
        groups_text,
        data.classes,
        f"{title}{banner}: final-layer rows vs class means of the penultimate features"
        + (" (centred)" if cfg.centre_features else ""),
    )
    return ExperimentOutput(
        numbers=numbers,
        tables={
            "robustness": curve_rows(curves, units),
            "alignment": alignment_rows(alignment, pair.grouping, data.classes),
            "more_robust": numbers["more_robust"],
        },
        figures={"robustness": figure, "alignment": heat},
        data=text,
        stand_in=data.stand_in is not None,
    )


def robustness_checks(cfg: ImageRobustnessConfig) -> list[Check]:
    """Rows reported without a verdict (no closed form on real data): each read-out's clean
    accuracy and 50% radius, and how often the 10-class model is the more robust."""
    method = cfg.attack.method
    rows = [
        Check(
            f"{READOUT_LABELS[r]}: clean accuracy",
            f"clean_acc_{r}",
            note="on the attacked test points",
        )
        for r in READOUTS
    ]
    rows += [
        Check(
            f"{READOUT_LABELS[r]}: 50% radius (normalised units)",
            f"radius50_{r}",
            note=f"where the {method} curve crosses 1/2, interpolated; radius50_pixel_{r} in "
            "pixel units; PGD only upper-bounds robustness",
        )
        for r in READOUTS
    ]
    rows.append(
        Check(
            "fraction of radii > 0 where the 10-class model (group of argmax) is more robust",
            "tenclass_more_robust_fraction",
            note="per radius: more_robust",
        )
    )
    return rows


def robustness_summary_keys(cfg: ImageRobustnessConfig) -> tuple[str, ...]:
    """Keys :func:`run_robustness` writes beside the checked ones."""
    per_method = tuple(
        f"{kind}_{r}_{method_key(m)}"
        for r in READOUTS
        for m in cfg.attack.methods
        for kind in ("radius50", "gradient_evaluations", "attack_wall_s")
    )
    return (
        *(f"radius50_pixel_{r}" for r in READOUTS),
        *per_method,
        "more_robust",
        "more_robust_statement",
        "curves",
        "dataset",
        "stand_in_label",
        "grouping",
        "model_dirs",
        "models",
        "pixel_units",
        "align_diag_mean_tenclass",
        "align_offdiag_mean_tenclass",
        "align_own_group_mean_binary",
        "align_other_group_mean_binary",
        "averaging_index_binary",
        "averaging_index_tenclass",
    )


#: the tables every real-data robustness run writes (the first is the main one)
ROBUSTNESS_TABLES: dict[str, tuple[str, ...]] = {
    "robustness": ("readout", "method", "radius", "radius_pixel", "robust_acc"),
    "alignment": ("model", "unit", "class", "cosine"),
    "more_robust": ("radius", "radius_pixel", "binary", "group_argmax", "verdict"),
}


def robustness_figures(norm: str) -> dict[str, str]:
    """Captions of the two figures for an attack in ``norm`` ("L2" or "L∞")."""
    return {
        "robustness": f"Robust test accuracy against the {norm} radius (bottom: the paper's "
        "normalised units; top: [0, 1]-pixel units) for the binary model and the three "
        "read-outs of the 10-class model. Solid: the headline method; dashed: the paper's "
        "per-radius protocol where run. PGD curves upper-bound the robust accuracy.",
        "alignment": "Cosine of each row of the final linear layer (rows, labelled by the "
        "group or class it votes for) with the class means of the model's own penultimate "
        "features over the training set (columns).",
    }
