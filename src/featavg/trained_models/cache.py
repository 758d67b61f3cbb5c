"""The trained-model cache: :func:`train_models` serves cached models and trains the rest
through the run store's one door (:func:`featavg.runs.door.cached_runs`), so two processes
asking for one model train it once: the second waits for the claim and is served.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from featavg import runs
from featavg.config import ConfigError
from featavg.data.groupings import get_grouping
from featavg.models.model_file import MODEL_FILE, load_trained_model
from featavg.runs import guards, paths
from featavg.runs.door import Door, Made, Slot, cached_runs
from featavg.trained_models.cost import training_estimate
from featavg.trained_models.files import identity, made_model
from featavg.trained_models.jobs import (
    TrainJobConfig,
    build_job_model,
    load_job_data,
    resolve_model_name,
)

if TYPE_CHECKING:
    import torch

    from featavg.data.groupings import Grouping
    from featavg.data.images import ImageDataset
    from featavg.models.image_classifier import ImageClassifier
    from featavg.runs.context import RunContext
    from featavg.runs.state import RunState

PROGRESS = ".featavg-progress"


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


def model_directory(cfg: TrainJobConfig, data: ImageDataset, models_root: str | Path) -> Path:
    """``<models_root>/<data>-<labels>-<hash>`` (<data>: what was loaded, e.g. fashion-mnist
    standing in for mnist; ``models_root`` is ``<runs root>/models``): the hash covers the
    config identity and the data fingerprint (see the module docstring)."""
    return runs.run_dir(f"{data.name}-{cfg.labels}", identity(cfg, data), Path(models_root))


def _model_state(directory: Path, kind: str, identity: dict[str, Any]) -> RunState:
    """:func:`~featavg.runs.state.inspect_run` of a model directory, where two damages of
    ours look like something else (a run directory has ``config.json`` and no ``.pt``):
    an unreadable manifest shows ``model.pt`` as a foreign file, and an unreadable summary
    an unfinished run. Both directories are ours (the name carries the config's hash; the
    readable summary or manifest says it is a model's): damaged, retrained."""
    from featavg.runs.state import RunState, inspect_run, listed_files

    state = inspect_run(directory, kind, identity)
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
    serving those already cached under ``ctx.models_root`` (unless ``force``). Each model
    gets its own directory, claimed while it trains: another process asking for the same
    model waits and is served. A training estimated too large for the machine is a
    :class:`ConfigError` unless ``ctx.allow_large``; a damaged cached model, or one whose
    ``model.pt`` does not load, is retrained (module docstring)."""
    if not configs:
        return []
    for field in _SHARED:
        values = {json.dumps(c.model_dump(mode="json")[field], sort_keys=True) for c in configs}
        if len(values) > 1:
            raise ConfigError(f"train_models: the configs must share {field}, got {sorted(values)}")
    data = load_job_data(configs[0])
    directories = [model_directory(c, data, ctx.models_root) for c in configs]
    config_of = dict(zip(directories, configs, strict=True))
    progress_file = _progress_file(directories)

    def serve(directory: Path, summary: dict[str, Any]) -> TrainedModel | None:
        try:
            model, _ = load_trained_model(directory, str(ctx.device))
        except ConfigError:  # listed in its manifest, yet unreadable: train it again
            return None
        grouping = get_grouping(config_of[directory].grouping)
        return TrainedModel(model, summary, directory, True, data, grouping)

    def make(todo: list[Slot]) -> list[Made[TrainedModel]]:
        cfgs = [config_of[slot.directory] for slot in todo]
        first, names = cfgs[0], [resolve_model_name(c) for c in cfgs]
        estimate = training_estimate(
            first.dataset, first.train_size, first.test_size, names, first.sgd
        )
        guards.check(f"train {'+'.join(names)}", estimate, ctx.device, ctx.allow_large)
        return _train(cfgs, data, ctx, resume, _progress_file([s.directory for s in todo]))

    slots = [
        Slot(
            "train",
            identity(cfg, data),
            directory,
            f"model directory {paths.shown(directory)}",  # clipped: the reason stays on
            remedy="choose another --root (the trained-model cache is <root>/models)",
        )
        for cfg, directory in zip(configs, directories, strict=True)
    ]
    try:
        served = cached_runs(Door(serve, _model_state), slots, make, force=force)
    except BaseException:  # a failed training leaves no empty progress folder (nor models/)
        for folder in (progress_file.parent, progress_file.parent.parent):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    if any(not s.cached for s in served):  # written whole: the progress file has done its job
        for path in (progress_file, _progress_file([s.directory for s in served if not s.cached])):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: another training is under way
            progress_file.parent.rmdir()
    return [s.value for s in served if s.value is not None]


def _progress_file(directories: Sequence[Path]) -> Path:
    """The epoch checkpoint of the models of ``directories`` trained together, beside them:
    ``<models root>/.featavg-progress/<name>+<name>.pt``."""
    return directories[0].parent / PROGRESS / ("+".join(d.name for d in directories) + ".pt")


def _train(
    configs: list[TrainJobConfig],
    data: ImageDataset,
    ctx: RunContext,
    resume: bool,
    progress_file: Path,
) -> list[Made[TrainedModel]]:
    """Train ``configs`` together (epoch checkpoints in ``progress_file``, resumed from when
    ``resume``); what the door writes for each."""
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
    made = []
    for cfg, grouping, model, recs, directory in zip(
        configs, groupings, models, records, directories, strict=True
    ):
        files = made_model(cfg, data, grouping, model, recs, dev, wall, len(configs))
        trained = TrainedModel(model.eval(), files.summary, directory, False, data, grouping)
        made.append(Made(files.summary, files.write, trained))
    return made
