"""Several seeds of ``cifar10-features``, pooled from their single-seed runs: each seed
trains its heads (and, when no backbone file is given, its backbone) anew and attacks the
same test points. The pooled run averages every measured scalar over the seeds (with
intervals and each seed's value), the heatmap cells and unit cosines, and the curves, and
makes the comparison over seeds (:func:`featavg.experiments.image_seeds.pooled_numbers`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from featavg.experiments.feature_heads import Cifar10FeaturesConfig
from featavg.experiments.image_attack import curves_figure, pixel_units
from featavg.experiments.image_seeds import (
    comparison_table,
    cosine_matrix,
    gap_panel,
    mean_alignment_rows,
    mean_curve_table,
    mean_curves,
    mean_metrics,
    pooled_numbers,
)
from featavg.experiments.image_verify import pool_verification
from featavg.experiments.output import ExperimentOutput
from featavg.experiments.spec import SeedRun
from featavg.models.image_classifier import normalization_by_name
from featavg.plots.feature_heatmaps import feature_heatmaps
from featavg.runs.context import RunContext

# entries every seed has alike, taken from the first
_SHARED = (
    "dataset", "stand_in_label", "grouping", "normalization", "pixel_units",
    "points_attacked", "feature_dim", "alignment_centred",
)  # fmt: skip
# entries that differ per seed and are no scalar: kept per seed
_PER_SEED = ("backbone", "head_losses", "alignment_other", "model_dirs", "models")


def _csv(directory: Path, name: str) -> list[dict[str, str]]:
    with (directory / f"{name}.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def pool_features(
    cfg: Cifar10FeaturesConfig, seed_runs: Sequence[SeedRun], ctx: RunContext
) -> ExperimentOutput:
    """The pooled run of ``cfg.seeds`` seeds from their runs (module docstring)."""
    directories = [directory for directory, _ in seed_runs]
    summaries = [summary for _, summary in seed_runs]
    first = summaries[0]
    seeds = [int(s["config"]["seed"]) for s in summaries]
    numbers = mean_metrics(summaries)
    numbers.update({k: v for k, v in first.items() if k.startswith("theory_")})
    numbers.update({k: first[k] for k in _SHARED if k in first})
    for key in _PER_SEED:
        numbers[key] = {
            str(s): summary.get(key) for s, summary in zip(seeds, summaries, strict=True)
        }
    numbers["curves"] = mean_curves(summaries)
    verified = pool_verification(summaries)
    if verified is not None:
        numbers["autoattack"] = verified
    numbers["seed_runs"] = [str(d) for d in directories]
    numbers.update(pooled_numbers(summaries, seeds))
    units = pixel_units(normalization_by_name(str(first["normalization"])), cfg.attack.norm)
    label = first.get("stand_in_label") or first["dataset"]["name"]
    cells = mean_alignment_rows(directories)
    units_rows = [_csv(d, "unit_cosines") for d in directories]
    unit_cosines = [
        {**row, "cosine": float(np.mean([float(t[i]["cosine"]) for t in units_rows]))}
        for i, row in enumerate(units_rows[0])
    ]
    training = [
        {"seed": s, **row} for s, d in zip(seeds, directories, strict=True)
        for row in _csv(d, "head_training")
    ]  # fmt: skip
    classes = [n for _, n in sorted({(r["class"], r["class_name"]) for r in cells})]
    rows_b = sorted({r["unit_label"] for r in cells if r["model"] == "binary"})
    heading = f"CIFAR-10 heads on frozen features [{label}], mean over {len(seeds)} seeds"
    heat = feature_heatmaps(
        [("the seeds' mean", cosine_matrix(cells, "binary"), cosine_matrix(cells, "tenclass"))],
        rows_b,
        [f"R_{i}: {name}" for i, name in enumerate(classes)],
        classes,
        note=heading,
    )
    return ExperimentOutput(
        numbers=numbers,
        tables={
            "robustness": mean_curve_table(numbers["curves"], units),
            "alignment": cells,
            "more_robust": comparison_table(numbers["more_robust"]),
            "unit_cosines": unit_cosines,
            "head_training": training,
        },
        figures={
            "heatmap": heat,
            "robustness": curves_figure(numbers["curves"], cfg.attack, units, heading),
            "gap": gap_panel(numbers, units, f"CIFAR-10 heads on frozen features [{label}]"),
        },
        data=f"{label}: {first['points_attacked']} attacked; {len(seeds)} seeds",
        stand_in=bool(first.get("stand_in_label")),
    )
