"""The real-data robustness experiment: binary vs 10-class model on the binary task, every
read-out attacked in the paper's normalised units, the verdict pooled over seeds.

:func:`run_robustness` is one seed of it and :func:`pool_robustness` pools several seeds'
runs (the runner makes one single-seed run per seed, :mod:`.image_seeds`); the experiments
``mnist-robustness``, ``mnist-linf`` and ``cifar10-robustness`` run them with their own
defaults and presets (their modules hold the claims, presets and captions);
:func:`robustness_checks` and :func:`robustness_summary_keys` declare what they write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from featavg.attacks.readouts import READOUT_LABELS, READOUTS, build_readouts
from featavg.experiments.image_attack import (
    PixelUnits,
    attack_points,
    attack_readouts,
    attack_timings,
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
    paper_dataset,
    train_pair,
)
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
from featavg.experiments.image_verify import pool_verification, verify_curves
from featavg.experiments.output import ExperimentOutput
from featavg.experiments.spec import Check, SeedRun
from featavg.models.image_classifier import normalization_by_name
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
    """One seed (``cfg.seed``): train both models, attack the four read-outs in the paper's
    normalised space on the attacked test points, measure the last layer's alignment, and
    summarise, the comparison included (one seed: its verdict says it ignores training
    randomness). ``title`` names the experiment in figure titles (e.g. "MNIST, L2")."""
    device, progress = ctx.device, ctx.progress
    pair = train_pair(cfg, ctx)
    # labelled when it is not the paper's data set (a stand-in, or the 5000-digit subset)
    data = pair.binary.data.standing_in_for(paper_dataset(cfg.train.dataset))
    split = attack_points(data.test, cfg.attack.points)
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
    if cfg.attack.verify == "autoattack":
        numbers["autoattack"] = verify_curves(
            curves, x, split.y.to(device), groups, cfg.attack, seed=cfg.seed, progress=progress
        )
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
    numbers.update(pooled_numbers([numbers], [cfg.seed]))
    view = _View(title, data.stand_in, pair.grouping.name, len(split), cfg)
    heat = alignment_figure(
        alignment.binary.numpy(),
        alignment.fine.numpy(),
        [f"group {s}: {list(pair.grouping.members(s))}" for s in range(2)],
        data.classes,
        view.heading("final-layer rows vs class means of the penultimate features"),
    )
    return ExperimentOutput(
        numbers=numbers,
        tables={
            "robustness": curve_rows(curves, units),
            "alignment": alignment_rows(alignment, pair.grouping, data.classes),
            "more_robust": comparison_table(numbers["more_robust"]),
        },
        figures={**view.curves(numbers, units), "alignment": heat},
        data=_data_text(data.stand_in or data.name, len(data.train), len(data.test), view),
        stand_in=data.stand_in is not None,
        timings=attack_timings(curves),
    )


def pool_robustness(
    cfg: ImageRobustnessConfig, seed_runs: Sequence[SeedRun], ctx: RunContext, *, title: str
) -> ExperimentOutput:
    """``cfg.seeds`` seeds from their single-seed runs (``seed_runs``: directory, summary;
    each trained and attacked its own models on the same test points): the means over seeds
    of every scalar (with intervals and each seed's value), the mean curves, the alignment
    averaged over seeds, and the pooled comparison (:func:`featavg.experiments.image_seeds.
    pooled_numbers`)."""
    summaries = [summary for _, summary in seed_runs]
    first = summaries[0]
    seeds = [int(s["config"]["seed"]) for s in summaries]
    numbers = mean_metrics(summaries)
    numbers.update({k: first[k] for k in _SHARED if k in first})
    numbers["curves"] = mean_curves(summaries)
    numbers["seed_runs"] = [str(directory) for directory, _ in seed_runs]
    by_seed = list(zip(seeds, summaries, strict=True))
    numbers["model_dirs"] = {str(s): summary["model_dirs"] for s, summary in by_seed}
    numbers["models"] = {str(s): summary["models"] for s, summary in by_seed}
    numbers.update(pooled_numbers(summaries, seeds))
    verified = pool_verification(summaries)
    if verified is not None:
        numbers["autoattack"] = verified
    units = pixel_units(normalization_by_name(str(first["normalization"])), cfg.attack.norm)
    stand_in = first.get("stand_in_label")
    grouping = first["grouping"]["name"]
    view = _View(title, stand_in, grouping, int(first["points_attacked"]), cfg, len(seeds))
    rows = mean_alignment_rows([directory for directory, _ in seed_runs])
    classes = sorted({(r["class"], r["class_name"]) for r in rows})
    heat = alignment_figure(
        cosine_matrix(rows, "binary"),
        cosine_matrix(rows, "tenclass"),
        sorted({r["unit_label"] for r in rows if r["model"] == "binary"}),
        [name for _, name in classes],
        view.heading("final-layer rows vs class means, mean over seeds"),
    )
    return ExperimentOutput(
        numbers=numbers,
        tables={
            "robustness": mean_curve_table(numbers["curves"], units),
            "alignment": rows,
            "more_robust": comparison_table(numbers["more_robust"]),
        },
        figures={**view.curves(numbers, units), "alignment": heat},
        data=_data_text(str(stand_in or first["dataset"]["name"]), 0, 0, view),
        stand_in=bool(first.get("stand_in")) or stand_in is not None,
    )


# what a pooled run takes over from its first seed as it is (the same for every seed)
_SHARED = ("dataset", "stand_in_label", "grouping", "normalization", "pixel_units",
           "points_attacked")  # fmt: skip


class _View:
    """Titles of one run's figures: the experiment, the data's stand-in label, the
    grouping, the attacked points and the seeds."""

    def __init__(
        self,
        title: str,
        stand_in: str | None,
        grouping: str,
        points: int,
        cfg: ImageRobustnessConfig,
        seeds: int = 1,
    ) -> None:
        self.title, self.banner = title, f" — on {stand_in}" if stand_in else ""
        self.grouping, self.points, self.cfg, self.seeds = grouping, points, cfg, seeds

    def heading(self, what: str) -> str:
        centred = " (centred)" if self.cfg.centre_features else ""
        return f"{self.title}{self.banner}: {what}{centred}"

    def curves(self, numbers: dict[str, Any], units: PixelUnits) -> dict[str, Any]:
        """The robustness figure (mean curves over the seeds) and the gap figure."""
        seeds = f", mean over {self.seeds} seeds" if self.seeds > 1 else ", one seed"
        head = f"binary vs 10-class model, grouping {self.grouping}, {self.points} test points"
        robust = curves_figure(
            numbers["curves"], self.cfg.attack, units, self.heading(head + seeds)
        )
        gap = gap_panel(numbers, units, self.heading("10-class minus binary"))
        return {"robustness": robust, "gap": gap}


def _data_text(what: str, train: int, test: int, view: _View) -> str:
    sizes = f"{train} training / {test} test images, " if train else ""
    seeds = f"; {view.seeds} seeds" if view.seeds > 1 else ""
    return f"{what}: {sizes}{view.points} attacked; grouping {view.grouping}{seeds}"


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
            note="where the 95% interval of the mean gap over seeds and points lies above 0; "
            "per radius: more_robust",
        )
    )
    return rows


def robustness_summary_keys(cfg: ImageRobustnessConfig) -> tuple[str, ...]:
    """Keys :func:`run_robustness` writes beside the checked ones."""
    per_method = tuple(
        f"{kind}_{r}_{method_key(m)}"
        for r in READOUTS
        for m in cfg.attack.methods
        for kind in ("radius50", "gradient_evaluations")
    )
    return (
        *(f"radius50_pixel_{r}" for r in READOUTS),
        *per_method,
        "more_robust",
        "more_robust_statement",
        "seeds_pooled",
        "verdict_ignores_training_randomness",
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
    "more_robust": (
        "radius",
        "radius_pixel",
        "binary",
        "group_argmax",
        "difference",
        "lo",
        "hi",
        "positive",
        "seeds",
        "verdict",
        "two_se",
    ),
}


def robustness_figures(norm: str) -> dict[str, str]:
    """Captions of the three figures for an attack in ``norm`` ("L2" or "L∞")."""
    return {
        "robustness": f"Robust test accuracy against the {norm} radius (bottom: the paper's "
        "normalised units; top: [0, 1]-pixel units) for the binary model and the three "
        "read-outs of the 10-class model, the mean over the seeds. Solid: the headline "
        "method; dashed: the paper's per-radius protocol where run. An attack's curve "
        "upper-bounds the robust accuracy.",
        "gap": f"The verdict per {norm} radius: 10-class model (group of argmax) minus binary "
        "model robust accuracy, each seed (grey), their mean (bold) and its 95% interval over "
        "seeds and attacked points (band). Above 0 the 10-class model is the more robust; "
        "only where the band excludes 0 is either model shown to be.",
        "alignment": "Cosine of each row of the final linear layer (rows, labelled by the "
        "group or class it votes for) with the class means of the model's own penultimate "
        "features over the training set (columns).",
    }
