"""What the real-data robustness experiments share (MNIST, CIFAR-10): their config sections,
training the binary and the 10-class model together, and the alignment of the trained
models' last layer with class-mean features.

* :class:`ImageTrainSection`: data, model and optimiser of both models (one grouping, one
  seed); :meth:`ImageTrainSection.job` turns it into a
  :class:`~featavg.trained_models.TrainJobConfig`;
* :class:`ImageAttackSection`: the robustness-curve attack, radii in the paper's normalised
  units (the attack runs on ``model.net`` at ``model.normalize(x)``, no box: the authors'
  protocol);
* :class:`ImageRobustnessConfig`: both, plus the grouping and the seed;
* :func:`train_pair`: both models in ONE epoch loop over the same batches, cached under
  ``ctx.models_root``;
* :func:`fc_alignment`: cos(w_r, mu_j) between the rows w_r of the last linear layer and
  the class means mu_j of the penultimate features (the Fig. 2c/d heatmap, on these models).

The experiment itself (train, attack, align, summarise) is :mod:`.image_robustness`.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from featavg.attacks.core import RANDOM_STARTS
from featavg.attacks.robustness_curve import CURVE_METHODS, DEFAULT_METHOD, METHODS
from featavg.data.groupings import Grouping, get_grouping
from featavg.data.images import DATASETS
from featavg.metrics.feature_alignment import averaging_index, class_means, unit_class_cosines
from featavg.runs.context import RunContext
from featavg.trained_models import NORMALIZATIONS, TrainedModel, TrainJobConfig, train_models
from featavg.training.image_sgd import SGDConfig


def _check_data_dir(dataset: str, data_dir: str | None) -> None:
    """An explicitly given data directory must hold the dataset's files, checked when the
    config is built: before any compute, and also when the run is cached (a directory is
    never silently replaced by other data). ValueError("data_dir: ...") for a validator."""
    from featavg.config import ConfigError
    from featavg.data.images import check_data_dir

    if data_dir is not None:
        try:
            check_data_dir(dataset, data_dir)
        except ConfigError as err:
            raise ValueError(str(err)) from None


class ImageTrainSection(BaseModel):
    """Data, architecture and optimiser shared by the binary and the 10-class model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: Literal[DATASETS] = Field(  # type: ignore[valid-type]
        "mnist",
        description="mnist, fashion-mnist, mnist-5k, cifar10 or cifar10-synthetic; mnist and "
        "cifar10 fall back to a labelled stand-in when their files are absent",
    )
    data_dir: str | None = Field(
        None, description="directory with the dataset files in torchvision's layout"
    )
    stand_in: bool = Field(
        True,
        description="allow Fashion-MNIST for MNIST / synthetic CIFAR-10 when the real files "
        "are absent (every result then says so)",
    )
    model: str = Field(
        "auto",
        description="builtin model: resnet18-mnist, resnet18-cifar, resnet18-imagenet, "
        "resnet18-pretrained, cnn, mlp (auto: the recipe's ResNet-18)",
    )
    normalization: Literal[NORMALIZATIONS] = Field(  # type: ignore[valid-type]
        "auto", description="inside the model; auto: the paper's recipe for model and data"
    )
    train_size: int | None = Field(
        None, ge=10, description="class-balanced training subset (None: the whole split)"
    )
    test_size: int | None = Field(
        None, ge=10, description="class-balanced test subset (None: the whole split)"
    )
    sgd: SGDConfig = Field(default_factory=SGDConfig, description="the optimiser")

    # model validators, so that messages name the field as "train.model: ..." (see
    # featavg.config: value errors are prefixed with their location, here the section)
    @model_validator(mode="after")
    def _known_model(self) -> ImageTrainSection:
        from featavg.models.builtin import BUILTIN_MODELS

        if self.model != "auto" and self.model not in BUILTIN_MODELS:
            raise ValueError(
                f"model: must be auto or one of {', '.join(BUILTIN_MODELS)}, got {self.model!r}"
            )
        _check_data_dir(self.dataset, self.data_dir)
        return self

    def job(self, labels: Literal["coarse", "fine"], grouping: str, seed: int) -> TrainJobConfig:
        """The training job of the model on ``labels`` (coarse: the grouping's groups; fine:
        the 10 classes), with ``grouping`` recorded either way."""
        return TrainJobConfig(
            dataset=self.dataset,
            data_dir=self.data_dir,
            stand_in=self.stand_in,
            grouping=grouping,
            labels=labels,
            model=self.model,
            normalization=self.normalization,
            train_size=self.train_size,
            test_size=self.test_size,
            seed=seed,
            sgd=self.sgd,
        )


class ImageAttackSection(BaseModel):
    """The robustness-curve attack. Radii are in the paper's NORMALISED units (the space the
    net sees after ``Normalize``); pixel units follow from the normalisation's std."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    norm: Literal["l2", "linf"] = Field("l2", description="l2 or linf")
    radii: list[float] = Field(
        default_factory=lambda: [round(0.1 * j, 10) for j in range(21)],
        description="radii in normalised units, strictly increasing, >= 0 (0: clean accuracy)",
    )
    steps: int = Field(7, ge=1, description="PGD steps per radius (the paper: 7)")
    rel_step: float = Field(0.25, gt=0.0, description="PGD step as a fraction of eps (eps/4)")
    random_start: Literal[RANDOM_STARTS] = Field(  # type: ignore[valid-type]
        "sphere",
        description="sphere (the paper's L2), box (uniform in [-eps, eps]^d, then projected: "
        "the paper's L-inf and the authors' CIFAR script), ball or none",
    )
    method: Literal[METHODS] = Field(  # type: ignore[valid-type]
        DEFAULT_METHOD,
        description="how the curve is computed: fmn+apgd (FMN, then APGD down the grid "
        "below each point's FMN norm: ~1/4 of the per-radius cost, 0.5 to 4.5 points above "
        "AutoAttack on the quick models), fmn+descend (the same with PGD-7: ~1/8, a "
        "looser upper bound), incremental (the paper's per-radius PGD, each point only up "
        "to its first flip: same flip radii), per-radius (the paper's protocol), fmn, ddn, "
        "ddn+descend or fmn+pgd",
    )
    also_per_radius: bool = Field(
        False, description="also run the paper's per-radius protocol and report it beside"
    )
    points: int | None = Field(
        None, ge=10, description="test points attacked: a seeded class-balanced subset"
    )
    min_norm_steps: int | None = Field(
        None,
        ge=1,
        description="FMN / DDN steps (None: 10 for fmn+apgd and the +descend methods, else 100)",
    )
    batch_size: int | None = Field(
        512, ge=1, description="points (x radii for per-radius) per attack chunk"
    )
    verify: Literal["none", "autoattack"] = Field(
        "none",
        description="autoattack: check the method's curves at the three largest radii with "
        "AutoAttack's APGD-CE (+ APGD-T), 100 iterations (the autoattack extra; ~5 min a seed "
        "on the quick models on 2 CPU cores); the summary says how far above it the curves sit",
    )

    @model_validator(mode="after")
    def _valid(self) -> ImageAttackSection:
        radii = self.radii
        if not radii:
            raise ValueError("radii: need at least one radius (0 gives the clean accuracy)")
        bad = [r for r in radii if not math.isfinite(r) or r < 0]
        if bad:
            raise ValueError(f"radii: must be finite and >= 0, got {bad[0]!r}")
        if any(b <= a for a, b in zip(radii, radii[1:], strict=False)):
            raise ValueError(f"radii: must be strictly increasing, got {radii}")
        if CURVE_METHODS[self.method].l2_only and self.norm != "l2":
            raise ValueError("method: ddn is an L2 attack; use fmn or a PGD method for linf")
        # checked here, not when the check starts: that is after training both models
        if self.verify == "autoattack" and importlib.util.find_spec("pyautoattack") is None:
            raise ValueError(
                "verify: autoattack needs the optional extra pyautoattack "
                "(pip install 'featavg[autoattack]'); allowed without it: none"
            )
        return self

    @property
    def methods(self) -> tuple[str, ...]:
        """The curve methods run: ``method``, then "per-radius" when ``also_per_radius``."""
        extra = ("per-radius",) if self.also_per_radius and self.method != "per-radius" else ()
        return (self.method, *extra)


# the quick presets pool this many seeds: the seed-to-seed spread of the verdict is 1.5-2.7x
# the test-point noise of one run, and a sign can flip between seeds at small radii
QUICK_SEEDS = 5
SEEDS_HELP = (
    "independent training runs of both models (seeds seed, seed+1, ...), each its own cached "
    "run, attacked on the same test points; the verdict is pooled over them"
)


class ImageRobustnessConfig(BaseModel):
    """Config of a real-data robustness experiment: both models, one grouping, the attack."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train: ImageTrainSection = Field(default_factory=ImageTrainSection)
    attack: ImageAttackSection = Field(default_factory=ImageAttackSection)
    grouping: str = Field(
        "parity",
        description="coarse classes of BOTH models: parity (the authors' training default), "
        "halves (0-4 vs 5-9), a JSON/TOML file or 10 ints",
    )
    seed: int = Field(
        0, ge=0, description="the first seed: init, data order, training subset, attack starts"
    )
    seeds: int = Field(1, ge=1, le=100, description=SEEDS_HELP)
    centre_features: bool = Field(
        False,
        description="alignment: subtract the global feature mean from the class means "
        "(False: raw class means, as the paper's heatmaps)",
    )

    @model_validator(mode="after")
    def _binary_grouping(self) -> ImageRobustnessConfig:
        from featavg.config import ConfigError

        try:
            grouping = get_grouping(self.grouping)
        except ConfigError as err:
            raise ValueError(str(err)) from None  # names "grouping" or the file already
        if grouping.num_groups != 2:
            raise ValueError(f"grouping: need 2 groups (a binary task), got {grouping.num_groups}")
        return self


def paper_dataset(dataset: str) -> str:
    """The paper's data set an experiment on ``dataset`` stands for: "cifar10" for the
    CIFAR-10 files and their synthetic stand-in, else "mnist" (MNIST, its 5000-digit
    subset, Fashion-MNIST)."""
    return "cifar10" if dataset.startswith("cifar10") else "mnist"


@dataclass
class TrainedPair:
    """The binary (coarse) and the 10-class (fine) model, trained on the same data and
    batches, and the grouping both use."""

    binary: TrainedModel
    fine: TrainedModel
    grouping: Grouping


def train_pair(cfg: ImageRobustnessConfig, ctx: RunContext) -> TrainedPair:
    """Train (or load the cached) binary and 10-class model of ``cfg`` in one pass over
    the same batches (:func:`~featavg.trained_models.train_models`), cached under
    ``ctx.models_root``."""
    jobs = [cfg.train.job(labels, cfg.grouping, cfg.seed) for labels in ("coarse", "fine")]
    binary, fine = train_models(jobs, ctx)
    if binary.model.normalization != fine.model.normalization:  # same config: a bug if not
        raise RuntimeError("train_pair: the two models normalise differently")
    return TrainedPair(binary, fine, get_grouping(cfg.grouping))


def last_layer(model: torch.nn.Module) -> torch.Tensor:
    """The weight (U, D) of the net's final linear layer ``fc`` (every builtin has one)."""
    net = getattr(model, "net", model)
    fc = getattr(net, "fc", None)
    if not isinstance(fc, torch.nn.Linear):
        raise TypeError(f"{type(net).__name__} has no final nn.Linear named fc")
    return fc.weight.detach()


@dataclass
class Alignment:
    """cos(w_r, mu_j) of each model's last-layer rows w_r (U, D) with the class means mu_j
    (10, D) of that model's own penultimate features on the training set."""

    binary: torch.Tensor  # (G, 10)
    fine: torch.Tensor  # (10, 10)
    numbers: dict[str, Any]


def fc_alignment(pair: TrainedPair, centre: bool, device: torch.device) -> Alignment:
    """The last layer of both models against class-mean features, with summary numbers:

    * 10-class model: ``align_diag_mean_tenclass`` = mean_j cos(w_j, mu_j) and
      ``align_offdiag_mean_tenclass`` (decoupling: diagonal high, off-diagonal low);
    * binary model: ``align_own_group_mean_binary`` = mean over groups s and j in J_s of
      cos(w_s, mu_j), ``align_other_group_mean_binary`` over j not in J_s;
    * ``averaging_index_<model>``: mean over units of
      :func:`~featavg.metrics.feature_alignment.averaging_index` on the unit's own group
      (1: an exact average of the group's class means, 1/|J_s|: a single one).
    """
    groups = pair.grouping
    data = pair.binary.data.train
    out = {}
    for name, trained in (("binary", pair.binary), ("tenclass", pair.fine)):
        model = trained.model.eval()
        means = class_means(model.features, data.x, data.y, 10, device=device, centre=centre)
        out[name] = unit_class_cosines(last_layer(model).to(means.device), means).cpu()
    cb, cf = out["binary"], out["tenclass"]
    own = torch.tensor([[groups.groups[j] == s for j in range(10)] for s in range(2)])
    eye = torch.eye(10, dtype=torch.bool)
    idx_b = [float(averaging_index(cb[s : s + 1], groups.members(s))[0]) for s in range(2)]
    idx_f = [
        float(averaging_index(cf[j : j + 1], groups.members(groups.groups[j]))[0])
        for j in range(10)
    ]
    numbers = {
        "align_diag_mean_tenclass": float(cf[eye].mean()),
        "align_offdiag_mean_tenclass": float(cf[~eye].mean()),
        "align_own_group_mean_binary": float(cb[own].mean()),
        "align_other_group_mean_binary": float(cb[~own].mean()),
        "averaging_index_binary": sum(idx_b) / len(idx_b),
        "averaging_index_tenclass": sum(idx_f) / len(idx_f),
        "alignment_centred": centre,
    }
    return Alignment(cb, cf, numbers)


def alignment_rows(
    alignment: Alignment, grouping: Grouping, classes: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Table rows: model, unit (its row of fc), unit_label (the group or class it votes
    for), class, class_name, cosine."""
    rows = []
    for model, cos in (("binary", alignment.binary), ("tenclass", alignment.fine)):
        for r in range(cos.shape[0]):
            unit = f"group {r} {list(grouping.members(r))}" if model == "binary" else classes[r]
            for j in range(cos.shape[1]):
                rows.append(
                    {
                        "model": model,
                        "unit": r,
                        "unit_label": unit,
                        "class": j,
                        "class_name": classes[j],
                        "cosine": float(cos[r, j]),
                    }
                )
    return rows
