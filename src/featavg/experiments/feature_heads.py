"""One seed of ``cifar10-features``: a frozen backbone (a user file, or one trained here and
cached), two block heads trained on its features computed once
(:func:`~featavg.training.heads.fit_heads_on_features`), the Fig. 2c/d cells cos(w_r, mu_j)
against raw and centred class means, and the read-outs attacked through the whole network
in the paper's normalised space. The config is here; the declaration (presets, claim,
checks) is :mod:`.cifar10_features`, which imports this module, never the other way.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from featavg.attacks.readouts import build_readouts
from featavg.config import ConfigError
from featavg.data.groupings import Grouping, get_grouping
from featavg.data.images import ImageDataset
from featavg.experiments.image_attack import (
    PixelUnits,
    ReadoutCurves,
    attack_points,
    attack_readouts,
    attack_timings,
    curve_numbers,
    curve_rows,
    curves_figure,
    pixel_units,
)
from featavg.experiments.image_common import (
    QUICK_SEEDS,
    SEEDS_HELP,
    Alignment,
    ImageAttackSection,
    ImageRobustnessConfig,
    ImageTrainSection,
    alignment_rows,
)
from featavg.experiments.image_seeds import comparison_table, gap_panel, pooled_numbers
from featavg.experiments.image_verify import verify_curves
from featavg.experiments.output import ExperimentOutput
from featavg.metrics.feature_alignment import (
    block_head_alignment,
    class_means,
    group_mean_cosines,
    unit_class_cosines,
)
from featavg.models.backbone_file import BACKBONE_ARCHS, load_backbone_file
from featavg.models.heads import BlockHead, FrozenBackboneClassifier, frozen_features
from featavg.models.image_classifier import ImageClassifier
from featavg.plots.feature_heatmaps import feature_heatmaps
from featavg.runs.context import RunContext
from featavg.seeding import generator as seeded_generator
from featavg.training.heads import fit_heads_on_features
from featavg.training.image_sgd import SGDConfig

# radii 0, 0.2, ..., 4.0 in normalised units (the authors' heads on pretrained features)
PAPER_RADII = [round(0.2 * j, 10) for j in range(21)]

# the default = the `quick` preset: a small CNN backbone trained here on the stand-in
QUICK_TRAIN: dict[str, Any] = {
    "dataset": "cifar10",
    "model": "cnn",
    "train_size": 5000,
    "test_size": 1000,
    "sgd": {"lr": 0.05, "schedule": "onecycle", "augment": "crop-flip", "epochs": 4},
}
QUICK_ATTACK: dict[str, Any] = {
    "radii": PAPER_RADII,
    "steps": 20,
    "points": 200,
    "method": "fmn+apgd",
}
# the heads of the quick preset take as many SGD steps as the paper's (20 epochs of 50k
# images at batch 128 = 7820 steps): 200 epochs of 5000 (7800), seconds on cached features
QUICK_HEAD: dict[str, Any] = {"sgd": {"epochs": 200}}
# the "standard" CIFAR-10 recipe for a ResNet-18 backbone trained here (the paper preset uses
# it only when no backbone file is given; the authors' weights came from huyvnphan)
PAPER_TRAIN: dict[str, Any] = {
    "dataset": "cifar10",
    "model": "resnet18-pretrained",
    "train_size": None,
    "test_size": None,
    "sgd": {
        "lr": 0.1,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "augment": "crop-flip",
        "epochs": 200,
    },
}


def _head_sgd() -> SGDConfig:
    # the authors' heads: only the first layer trains, SGD 1e-3 / 0.9 / 5e-4, 20 epochs, batch 128
    return SGDConfig(lr=1e-3, momentum=0.9, weight_decay=5e-4, epochs=20, batch_size=128)


class HeadSection(BaseModel):
    """The two block heads and how they train on the frozen features."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(3, ge=1, description="hidden units per output (the paper: 3)")
    sgd: SGDConfig = Field(
        default_factory=_head_sgd,
        description="SGD of the first head layer (schedule none, augment none: the heads "
        "train on features computed once)",
    )
    feature_batch_size: int = Field(512, ge=1, description="images per feature batch")

    @field_validator("sgd")
    @classmethod
    def _plain_sgd(cls, value: SGDConfig) -> SGDConfig:
        if value.schedule != "none" or value.augment != "none":
            raise ValueError("head sgd: schedule and augment must be 'none' (fixed features)")
        return value


class Cifar10FeaturesConfig(ImageRobustnessConfig):
    """Config of ``cifar10-features``; defaults = the ``quick`` preset (CPU minutes).

    ``train`` gives the data (for the heads, the class means and the attack) and, when no
    ``backbone`` file is given, the backbone trained here on the fine labels."""

    train: ImageTrainSection = Field(default_factory=lambda: ImageTrainSection(**QUICK_TRAIN))
    attack: ImageAttackSection = Field(default_factory=lambda: ImageAttackSection(**QUICK_ATTACK))
    seeds: int = Field(QUICK_SEEDS, ge=1, le=100, description=SEEDS_HELP)
    head: HeadSection = Field(
        default_factory=lambda: HeadSection(sgd=_head_sgd().model_copy(update=QUICK_HEAD["sgd"]))
    )
    grouping: str = Field(
        "halves",
        description="coarse classes of the binary head: halves (0-4 vs 5-9, the paper's "
        "heatmap), parity, a JSON/TOML file or 10 ints",
    )
    backbone: str | None = Field(
        None,
        description="backbone file: a huyvnphan/PyTorch_CIFAR10-style resnet18 state dict or "
        "a featavg model.pt / model directory; None: train one here (cached)",
    )
    backbone_arch: Literal[BACKBONE_ARCHS] = Field(  # type: ignore[valid-type]
        "resnet18-pretrained",
        description="architecture a plain state dict loads into (huyvnphan: "
        "resnet18-pretrained); a featavg model.pt says its own",
    )
    backbone_normalization: Literal["cifar-pretrained", "cifar-authors", "none"] = Field(
        "cifar-pretrained",
        description="input normalisation of a plain state dict (huyvnphan's weights expect "
        "cifar-pretrained); a featavg model.pt says its own",
    )


def get_backbone(
    cfg: Cifar10FeaturesConfig, ctx: RunContext
) -> tuple[ImageClassifier, ImageDataset, dict[str, Any]]:
    """(backbone in eval mode on ``device``, the data, what the backbone is): the user's
    file, else a model of ``cfg.train`` trained here on the fine labels (cached under
    ``ctx.models_root``)."""
    device = ctx.device
    from featavg.trained_models import load_job_data, train_model

    job = cfg.train.job("fine", cfg.grouping, cfg.seed)
    if cfg.backbone is not None:
        model, info = load_backbone_file(
            cfg.backbone, arch=cfg.backbone_arch, normalization=cfg.backbone_normalization
        )
        data = load_job_data(job)
        info["label"] = f"backbone from {info['path']} ({info['kind']}, {info['model']})"
    else:
        trained = train_model(job, ctx)
        model, data = trained.model, trained.data
        info = {
            "source": "trained here",
            "directory": str(trained.directory),
            "cached": trained.cached,
            "model": trained.summary.get("model"),
            "normalization": model.normalization.name,
            "test_acc": trained.summary.get("final_test_acc"),
            "label": f"backbone trained here ({trained.summary.get('model')}, fine labels, "
            f"{data.stand_in or data.name}): not the authors' pretrained weights",
        }
    channels = int(data.train.x.shape[1])
    if int(getattr(model.net, "in_channels", channels)) != channels:
        raise ConfigError(
            f"backbone: takes {model.net.in_channels}-channel images, the data has {channels}"
        )
    return model.to(device).eval(), data, info


class MeansView(NamedTuple):
    """One heatmap's inputs: class means (C, D), per-unit cosines of both heads and the
    Fig. 2c/d cells (binary (G, C), 10-class (C, C)), on CPU, float64."""

    means: torch.Tensor
    cos_b: torch.Tensor
    cos_f: torch.Tensor
    cells_b: torch.Tensor
    cells_f: torch.Tensor


def _view(
    head_b: BlockHead, head_f: BlockHead, phi: torch.Tensor, y: torch.Tensor, centre: bool
) -> MeansView:
    """Class means of the features phi (N, D) with labels y (N,) and both heads against
    them."""
    means = class_means(lambda f: f, phi, y, 10, centre=centre)
    cos_b = unit_class_cosines(head_b.weight, means).cpu()
    cos_f = unit_class_cosines(head_f.weight, means).cpu()
    return MeansView(
        means.cpu(),
        cos_b,
        cos_f,
        group_mean_cosines(cos_b, head_b.unit_groups),
        group_mean_cosines(cos_f, head_f.unit_groups),
    )


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).double().mean())


def run_features(cfg: Cifar10FeaturesConfig, ctx: RunContext) -> ExperimentOutput:
    """Backbone, features, both heads, heatmaps, transfer curves (see the module doc)."""
    device, progress = ctx.device, ctx.progress
    backbone, data, info = get_backbone(cfg, ctx)
    data = data.standing_in_for("cifar10")  # the synthetic stand-in says so everywhere
    grouping = get_grouping(cfg.grouping)
    fb = cfg.head.feature_batch_size
    phi_train = frozen_features(backbone, data.train.x, fb, device)
    phi_test = frozen_features(backbone, data.test.x, fb, device)
    y_train, y_test = data.train.y.to(device), data.test.y.to(device)
    coarse_train, coarse_test = grouping.coarse(y_train), grouping.coarse(y_test)

    dim, width = int(phi_train.shape[1]), cfg.head.width
    head_b = BlockHead(dim, 2, width, generator=seeded_generator(cfg.seed, "head/init/binary"))
    head_f = BlockHead(dim, 10, width, generator=seeded_generator(cfg.seed, "head/init/fine"))
    head_b, head_f = head_b.to(device), head_f.to(device)
    losses = fit_heads_on_features(
        [head_b, head_f],
        phi_train,
        [coarse_train, y_train],
        cfg.head.sgd,
        seed=cfg.seed,
        progress=progress,
    )

    # Fig. 2c/d on the class means of phi over the training set, raw (the paper's) and
    # centred; the config picks the one the checks read
    views = {c: _view(head_b, head_f, phi_train, y_train, c) for c in (False, True)}
    groups = list(grouping.groups)
    main, other = views[cfg.centre_features], views[not cfg.centre_features]
    numbers: dict[str, Any] = block_head_alignment(
        main.cos_b, main.cos_f, main.means, groups, width
    )
    numbers["alignment_other"] = {
        "centred": not cfg.centre_features,
        **block_head_alignment(other.cos_b, other.cos_f, other.means, groups, width),
    }
    numbers["averaging_index_gap"] = (
        numbers["averaging_index_binary"] - numbers["averaging_index_tenclass"]
    )
    numbers["alignment_centred"] = cfg.centre_features

    with torch.no_grad():
        logits_b, logits_f = head_b(phi_test), head_f(phi_test)
        group_of_argmax = grouping.coarse(logits_f.argmax(1))
        numbers.update(
            {
                "test_acc_binary_head": _accuracy(logits_b, coarse_test),
                "test_acc_tenclass_head": _accuracy(logits_f, y_test),
                "test_acc_tenclass_head_group": float(
                    (group_of_argmax == coarse_test).double().mean()
                ),
                "train_acc_binary_head": _accuracy(head_b(phi_train), coarse_train),
                "train_acc_tenclass_head": _accuracy(head_f(phi_train), y_train),
            }
        )
        fc = getattr(backbone.net, "fc", None)
        if isinstance(fc, torch.nn.Linear) and fc.out_features == 10:
            numbers["test_acc_backbone"] = _accuracy(fc(phi_test), y_test)

    # transfer curves: the whole network, attacked in the paper's normalised space
    model_b = FrozenBackboneClassifier(backbone, head_b)
    model_f = FrozenBackboneClassifier(backbone, head_f)
    split = attack_points(data.test, cfg.attack.points)
    with torch.no_grad():
        x = model_b.normalize(split.x.to(device).float() / 255.0)
    readouts = build_readouts(model_b.net, model_f.net, groups)
    curves = attack_readouts(
        readouts, x, split.y.to(device), groups, cfg.attack, seed=cfg.seed, progress=progress
    )
    units = pixel_units(model_b.normalization, cfg.attack.norm)
    numbers.update(curve_numbers(curves, cfg.attack.method, units))
    if cfg.attack.verify == "autoattack":
        numbers["autoattack"] = verify_curves(
            curves, x, split.y.to(device), groups, cfg.attack, seed=cfg.seed, progress=progress
        )
    timings = attack_timings(curves)
    numbers.update(
        {
            "backbone": info,
            "feature_dim": dim,
            "head_losses": {"binary": losses[0], "tenclass": losses[1]},
            "dataset": data.describe(),
            "stand_in_label": data.stand_in,
            "grouping": grouping.describe(),
            "normalization": model_b.normalization.name,
            "pixel_units": units.note,
            "points_attacked": len(split),
            "model_dirs": {"backbone": info.get("directory", info.get("path"))},
            "models": {"backbone": info},
        }
    )
    numbers.update(pooled_numbers([numbers], [cfg.seed]))
    output = _output(cfg, numbers, _Parts(curves, units, data, grouping, info, views, losses))
    output.timings = timings
    return output


class _Parts(NamedTuple):
    """What a run's figures and tables are made of, beside its numbers."""

    curves: dict[str, ReadoutCurves]
    units: PixelUnits
    data: ImageDataset
    grouping: Grouping
    info: dict[str, Any]
    views: dict[bool, MeansView]
    losses: list[list[float]]


def _output(cfg: Cifar10FeaturesConfig, numbers: dict[str, Any], parts: _Parts) -> ExperimentOutput:
    """Figures and tables of a run (see EXPERIMENT's captions)."""
    curves, units, data, grouping, info, views, losses = parts
    points = int(numbers["points_attacked"])
    width = cfg.head.width
    banner = f" [{data.stand_in}]" if data.stand_in else ""
    what = f"{data.stand_in or data.name}; {info['label']}"  # the stand-in label says so
    main = views[cfg.centre_features]
    members = [list(grouping.members(s)) for s in range(2)]
    group_rows = [
        f"R_{s} (units {width * s}..{width * s + width - 1}): group {members[s]}" for s in range(2)
    ]
    class_rows = [f"R_{i} (units {width * i}..): {name}" for i, name in enumerate(data.classes)]
    columns = [f"μ_{j} {name} (g{grouping.groups[j]})" for j, name in enumerate(data.classes)]
    what_means = {False: "raw class means (the paper's)", True: "centred class means"}
    panels = [
        (what_means[c], views[c].cells_b.numpy(), views[c].cells_f.numpy())
        for c in (cfg.centre_features, not cfg.centre_features)
    ]
    heat = feature_heatmaps(
        panels,
        group_rows,
        class_rows,
        columns,
        note=f"CIFAR-10 heads on frozen features: {what}",
    )
    title = (
        f"CIFAR-10 heads on frozen features{banner}: transfer robustness, grouping "
        f"{grouping.name}, {points} test points"
    )
    figure = curves_figure(numbers["curves"], cfg.attack, units, title)
    gap = gap_panel(numbers, units, f"CIFAR-10 heads on frozen features{banner}")
    unit_rows = [
        {
            "head": head,
            "unit": r,
            "unit_group": r // width,
            "class": j,
            "class_name": data.classes[j],
            "cosine": float(c[r, j]),
        }
        for head, c in (("binary", main.cos_b), ("tenclass", main.cos_f))
        for r in range(c.shape[0])
        for j in range(c.shape[1])
    ]
    loss_rows = [
        {"head": head, "epoch": e + 1, "loss": loss}
        for head, per_epoch in (("binary", losses[0]), ("tenclass", losses[1]))
        for e, loss in enumerate(per_epoch)
    ]
    alignment = Alignment(main.cells_b, main.cells_f, {})
    return ExperimentOutput(
        numbers=numbers,
        tables={
            "robustness": curve_rows(curves, units),
            "alignment": alignment_rows(alignment, grouping, data.classes),
            "more_robust": comparison_table(numbers["more_robust"]),
            "unit_cosines": unit_rows,
            "head_training": loss_rows,
        },
        figures={"heatmap": heat, "robustness": figure, "gap": gap},
        data=f"{what}: {len(data.train)} training / {len(data.test)} test images, "
        f"{points} attacked",
        stand_in=data.stand_in is not None,
    )
