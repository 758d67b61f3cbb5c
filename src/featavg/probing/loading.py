"""Models for ``featavg probe``: a user factory, a featavg model file, or a builtin + weights.

* ``--model MODULE:FACTORY``: imports MODULE (a dotted module name on ``sys.path``, or a
  path to a ``.py`` file) and calls ``FACTORY()`` with no arguments; it must return an
  ``nn.Module`` that maps [0, 1] pixels (N, C, H, W) to logits. This runs the user's own
  code: the code the user chose to run, like ``python -c``. ``--checkpoint`` then loads a
  state dict into it (strictly).
* ``--checkpoint PATH`` alone, a featavg ``model.pt`` (``featavg train``): the model
  rebuilds itself (:func:`featavg.trained_models.load_trained_model`); the data set and
  grouping it was trained with become the defaults.
* ``--builtin NAME --checkpoint PATH``: a builtin architecture
  (:data:`featavg.models.builtin.BUILTIN_MODELS`) with a plain state dict (keys with or
  without ``net.``), sized for the data; the number of outputs is read from ``fc.weight``
  unless given.

Every checkpoint is read with ``torch.load(weights_only=True)``
(:func:`featavg.training.checkpoint.load_checkpoint`): a file that would need pickle code
execution is refused with a one-line ConfigError that names the conversion.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from featavg.config import ConfigError
from featavg.data.images import ImageDataset
from featavg.models.backbone_file import file_sha256, state_tensors


@dataclass
class LoadedModel:
    """model (eval mode), info: JSON-able facts that identify it (part of the probe's
    identity), trained_on: the featavg model file's data and grouping (None otherwise)."""

    model: nn.Module
    info: dict[str, Any]
    trained_on: dict[str, Any] | None = None


def import_factory(spec: str) -> nn.Module:
    """``MODULE:FACTORY`` -> ``FACTORY()``, which must be an ``nn.Module`` (runs user code)."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--model: expected MODULE:FACTORY (e.g. mypkg.nets:make), got {spec!r}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser()
            if not path.is_file():
                raise ConfigError(f"--model: file {path} not found")
            loader = importlib.util.spec_from_file_location(path.stem, path)
            if loader is None or loader.loader is None:
                raise ConfigError(f"--model: cannot import {path}")
            module = importlib.util.module_from_spec(loader)
            sys.modules[path.stem] = module
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"--model: cannot import {module_name!r} ({err})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"--model: {module_name!r} has no callable {attr!r}")
    try:
        model = factory()
    except Exception as err:  # the user's code failing is bad input, not a featavg bug
        first = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError(f"--model: {spec}() raised {type(err).__name__}: {first}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"--model: {spec} returned {type(model).__name__}, not an nn.Module")
    return model


def load_model(
    *,
    factory: str | None,
    builtin: str | None,
    checkpoint: str | None,
    data: ImageDataset | None,
    dataset_name: str | None,
    num_classes: int | None = None,
    normalization: str | None = None,
    device: torch.device | str = "cpu",
) -> LoadedModel:
    """The model the CLI options describe (see the module docstring), on ``device`` in eval
    mode. ``data`` gives the input size of a builtin; ``dataset_name`` its default
    normalisation. ConfigError (one line) on anything that does not fit."""
    from featavg.trained_models import MODEL_FORMAT, load_trained_model
    from featavg.training.checkpoint import load_checkpoint

    if factory is not None and builtin is not None:
        raise ConfigError("--model and --builtin: give one of them, not both")
    path = Path(checkpoint).expanduser() if checkpoint is not None else None
    if path is not None and path.is_dir():
        path = path / "model.pt"
    blob = load_checkpoint(path, map_location="cpu") if path is not None else None
    info: dict[str, Any] = {}
    if path is not None:
        info["checkpoint_sha256"] = file_sha256(path)
    if factory is not None:
        model = import_factory(factory)
        info.update(source="factory", factory=factory)
        if blob is not None and path is not None:
            try:
                model.load_state_dict(state_tensors(blob, path))
            except RuntimeError as err:
                first = str(err).splitlines()[0]
                raise ConfigError(f"{path}: does not fit {factory} ({first})") from None
        return LoadedModel(model.to(device).eval(), info)
    if blob is None or path is None:
        raise ConfigError("--checkpoint: needed with --builtin (or give --model MODULE:FACTORY)")
    if blob.get("format") == MODEL_FORMAT:
        model, meta = load_trained_model(path, str(device))
        if builtin is not None and builtin != meta["model"]:
            raise ConfigError(f"--builtin: {path} holds a {meta['model']}, not a {builtin}")
        info.update(source="featavg model file", builtin=meta["model"])
        trained_on = {"dataset": meta.get("dataset"), "grouping": meta.get("grouping")}
        return LoadedModel(model, info, trained_on)
    if builtin is None:
        raise ConfigError(
            f"--builtin: {path} is a plain state dict; name its architecture with --builtin"
        )
    return LoadedModel(
        _builtin(builtin, state_tensors(blob, path), data, dataset_name, num_classes, normalization)
        .to(device)
        .eval(),
        {**info, "source": "builtin + state dict", "builtin": builtin},
    )


def _builtin(
    name: str,
    state: dict[str, torch.Tensor],
    data: ImageDataset | None,
    dataset_name: str | None,
    num_classes: int | None,
    normalization: str | None,
) -> nn.Module:
    from featavg.models.builtin import build_model, default_normalization
    from featavg.models.image_classifier import load_backbone_state, normalization_by_name

    if data is None or dataset_name is None:
        raise ConfigError("--data: needed to size a builtin model")
    fc = state.get("fc.weight", state.get("net.fc.weight"))
    if num_classes is None:
        if fc is None:
            raise ConfigError("--num-classes: needed (the state dict has no fc.weight)")
        num_classes = int(fc.shape[0])
    _, channels, size, _ = data.train.x.shape
    norm = (
        normalization_by_name(normalization)
        if normalization is not None
        else default_normalization(name, dataset_name)
    )
    model = build_model(name, num_classes, int(channels), int(size), norm)
    load_backbone_state(model, state)
    return model
