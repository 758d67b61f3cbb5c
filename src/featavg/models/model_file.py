"""featavg model files (``model.pt``, written by ``featavg train``): read and checked.

A model file is a dict loadable with ``torch.load(weights_only=True)``
(:func:`~featavg.torch_files.load_checkpoint`): the weights (``state_dict``) and what
rebuilds the model (:data:`MODEL_FORMAT`: builtin name, classes, channels, image size,
normalisation), plus what it was trained on (labels, grouping, data set, config) and the
SHA-256 of all of that (``sha256``, :func:`model_file_digest`), so that a damaged file is
caught even outside its model directory (whose manifest covers it too). Files written
before the digest existed load without that check.

Nothing in a file is trusted: :func:`read_model_meta` checks every field (its type, its
range, the normalisation's shape) and :func:`check_state_fits` the weights against the
model those fields build, before any of it is used. A file that fails is a one-line
:class:`~featavg.config.ConfigError` naming the file and the field, never a traceback, an
exhausted memory or a half-loaded model.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from featavg.config import ConfigError, shown
from featavg.models.builtin import (
    BUILTIN_MODELS,
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_IMAGE_SIZE,
    build_model,
)
from featavg.models.image_classifier import ImageClassifier, Normalization
from featavg.torch_files import load_checkpoint

MODEL_FILE = "model.pt"
MODEL_FORMAT = "featavg-model/1"

# bounds of the free-text and normalisation fields: far beyond any real value
MAX_TEXT = 200
NORMALIZATION_RANGE = 1e6  # |mean| and std at most this; std at least its inverse


@dataclass(frozen=True)
class ModelMeta:
    """The checked fields that rebuild a model: builtin ``name``, ``num_classes``,
    ``in_channels``, ``image_size`` and ``normalization``."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    normalization: Normalization


def model_file_path(path: str | Path) -> Path:
    """``path`` itself, or ``path/model.pt`` for a model directory."""
    path = Path(path).expanduser()
    try:
        is_dir = path.is_dir()
    except OSError:  # a name too long to exist (ENAMETOOLONG): loading it says so
        is_dir = False
    return path / MODEL_FILE if is_dir else path


def model_file_digest(blob: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a model file's contents other than its ``sha256`` entry: the
    metadata as sorted JSON, then each tensor's name, dtype, shape and bytes. Independent
    of how torch lays out the file, so a file can be re-saved without changing it."""
    h = hashlib.sha256()
    meta = {k: v for k, v in blob.items() if k not in ("sha256", "state_dict")}
    h.update(json.dumps(meta, sort_keys=True, default=repr).encode())
    state = blob.get("state_dict")
    for key, value in sorted(state.items()) if isinstance(state, dict) else []:
        h.update(f"\n{key} ".encode())
        if torch.is_tensor(value):
            t = value.detach().cpu().contiguous()
            h.update(f"{t.dtype} {tuple(t.shape)} ".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def read_model_meta(blob: Mapping[str, Any], file: Path) -> ModelMeta:
    """The fields of a loaded model file ``blob`` that rebuild its model, each checked
    (see the module docstring); also checks the descriptive fields (labels, grouping, data
    set, config) that callers read. ConfigError naming ``file`` and the field."""
    if blob.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{file}: not a featavg model file (format {shown(blob.get('format'))})")
    digest = blob.get("sha256")
    if digest is not None:
        try:
            intact = isinstance(digest, str) and digest == model_file_digest(blob)
        except (RecursionError, ValueError, TypeError):  # metadata no JSON can hold
            intact = False
        if not intact:
            raise ConfigError(
                f"{file}: field 'sha256' does not match the contents (a damaged file)"
            )
    name = blob.get("model")
    if not isinstance(name, str) or name not in BUILTIN_MODELS:
        raise ConfigError(
            f"{file}: field 'model' must be one of {', '.join(BUILTIN_MODELS)}, got {shown(name)}"
        )
    sizes = {
        field: _bounded_int(blob.get(field), bound, file, field)
        for field, bound in (
            ("num_classes", MAX_CLASSES),
            ("in_channels", MAX_CHANNELS),
            ("image_size", MAX_IMAGE_SIZE),
        )
    }
    norm = _normalization(blob.get("normalization"), sizes["in_channels"], file)
    _check_descriptions(blob, file)
    return ModelMeta(name, sizes["num_classes"], sizes["in_channels"], sizes["image_size"], norm)


def _bounded_int(value: Any, bound: int, file: Path, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= bound:
        raise ConfigError(
            f"{file}: field {field!r} must be an integer in 1..{bound}, got {shown(value)}"
        )
    return value


def _numbers(value: Any, count: int, file: Path, field: str) -> tuple[float, ...]:
    """A list of 1 or ``count`` finite real numbers within +-NORMALIZATION_RANGE."""
    ok = (
        isinstance(value, list | tuple)
        and len(value) in (1, count)
        and all(
            isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            and abs(v) <= NORMALIZATION_RANGE
            for v in value
        )
    )
    if not ok:
        raise ConfigError(
            f"{file}: field {field!r} must be a list of 1 or {count} finite numbers (one per "
            f"channel), got {shown(value)}"
        )
    return tuple(float(v) for v in value)


def _normalization(value: Any, channels: int, file: Path) -> Normalization:
    if not isinstance(value, dict):
        raise ConfigError(
            f"{file}: field 'normalization' must be a dict with name, mean and std, got "
            f"{shown(value)}"
        )
    name = value.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_TEXT:
        raise ConfigError(f"{file}: field 'normalization.name' must be a name, got {shown(name)}")
    mean = _numbers(value.get("mean"), channels, file, "normalization.mean")
    std = _numbers(value.get("std"), channels, file, "normalization.std")
    if len(mean) != len(std) or min(std) < 1 / NORMALIZATION_RANGE:
        raise ConfigError(
            f"{file}: field 'normalization.std' must hold as many values as mean "
            f"({len(mean)}), each at least {1 / NORMALIZATION_RANGE:g}, got {shown(list(std))}"
        )
    return Normalization(mean=mean, std=std, name=name)


def _check_descriptions(blob: Mapping[str, Any], file: Path) -> None:
    """The fields that describe the training (optional): labels, grouping, data set."""
    labels = blob.get("labels")
    if labels is not None and labels not in ("coarse", "fine"):
        raise ConfigError(f"{file}: field 'labels' must be coarse or fine, got {shown(labels)}")
    grouping = blob.get("grouping")
    if grouping is not None:
        from featavg.data.groupings import validate_groups

        groups: Any = grouping.get("groups") if isinstance(grouping, dict) else None
        name = grouping.get("name") if isinstance(grouping, dict) else None
        if not isinstance(name, str) or not 0 < len(name) <= MAX_TEXT:
            raise ConfigError(
                f"{file}: field 'grouping' must be a dict with a name and groups, got "
                f"{shown(grouping)}"
            )
        in_range = isinstance(groups, list) and all(
            isinstance(g, int) and not isinstance(g, bool) and 0 <= g < len(groups) for g in groups
        )
        if not in_range or not 2 <= len(groups) <= MAX_CLASSES:
            raise ConfigError(
                f"{file}: field 'grouping.groups' must list 2..{MAX_CLASSES} group ids, each "
                f"in 0..(classes - 1), got {shown(groups)}"
            )
        validate_groups(groups, len(groups), f"{file}: field 'grouping.groups'")
    dataset = blob.get("dataset")
    if dataset is not None:
        described = dataset.get("name") if isinstance(dataset, dict) else None
        stand_in = dataset.get("stand_in") if isinstance(dataset, dict) else None
        if not isinstance(described, str) or not 0 < len(described) <= MAX_TEXT:
            raise ConfigError(
                f"{file}: field 'dataset' must be a dict with the data set's name, got "
                f"{shown(dataset)}"
            )
        if stand_in is not None and not (isinstance(stand_in, str) and len(stand_in) <= MAX_TEXT):
            raise ConfigError(
                f"{file}: field 'dataset.stand_in' must be a label or null, got {shown(stand_in)}"
            )
    config = blob.get("config")
    if config is not None and not isinstance(config, str):
        raise ConfigError(f"{file}: field 'config' must be JSON text, got {shown(config)}")


def check_state_fits(model: nn.Module, state: Any, file: Path) -> None:
    """ConfigError (naming ``file`` and the first offending entry) unless ``state`` is a
    dict with exactly ``model``'s state-dict keys, each a tensor of the model's shape,
    floating where the model's is, and finite."""
    own = model.state_dict()
    if not isinstance(state, dict):
        raise ConfigError(f"{file}: field 'state_dict' must be a dict of tensors")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        which = f"missing {shown(missing[0])}" if missing else f"unexpected {shown(unexpected[0])}"
        raise ConfigError(
            f"{file}: field 'state_dict' does not fit the {type(model).__name__} its metadata "
            f"describes ({len(missing)} keys missing, {len(unexpected)} unexpected: {which})"
        )
    for key, mine in own.items():
        value = state[key]
        if (
            not torch.is_tensor(value)
            or value.shape != mine.shape
            or value.is_floating_point() != mine.is_floating_point()
        ):
            got = f"{value.dtype} {tuple(value.shape)}" if torch.is_tensor(value) else shown(value)
            raise ConfigError(
                f"{file}: field 'state_dict' entry {shown(key)} must be a {mine.dtype} tensor "
                f"of shape {tuple(mine.shape)}, got {got}"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ConfigError(f"{file}: field 'state_dict' entry {shown(key)} is not finite")


def head_classes(state: Mapping[str, Any], where: Path) -> int | None:
    """The number of classes of a plain state dict's linear head: the rows of its
    ``fc.weight`` (or ``net.fc.weight``); None when it has none. ConfigError (naming
    ``where``) unless that is a 2-D tensor of 1..MAX_CLASSES rows."""
    key = "fc.weight" if "fc.weight" in state else "net.fc.weight"
    fc = state.get(key)
    if fc is None:
        return None
    if not torch.is_tensor(fc) or fc.dim() != 2 or not 1 <= fc.shape[0] <= MAX_CLASSES:
        got = f"shape {tuple(fc.shape)}" if torch.is_tensor(fc) else shown(fc)
        raise ConfigError(
            f"{where}: {key} must be a 2-D tensor (classes, features) with 1..{MAX_CLASSES} "
            f"rows, got {got}"
        )
    return int(fc.shape[0])


def load_trained_model(
    path: str | Path, device: str = "cpu"
) -> tuple[ImageClassifier, dict[str, Any]]:
    """Rebuild the model saved in ``path`` (a model directory or its ``model.pt``) with
    ``torch.load(weights_only=True)``; returns (model in eval mode, the file's metadata).
    Every field is checked first (:func:`read_model_meta`, :func:`check_state_fits`):
    ConfigError (one line naming the file and the field) on anything that does not fit."""
    file = model_file_path(path)
    blob = load_checkpoint(file, map_location="cpu")
    meta = read_model_meta(blob, file)
    try:
        model = build_model(
            meta.name, meta.num_classes, meta.in_channels, meta.image_size, meta.normalization
        )
    except ConfigError as err:
        raise ConfigError(f"{file}: {err}") from None
    check_state_fits(model, blob.get("state_dict"), file)
    model.load_state_dict(blob["state_dict"])
    described = {k: v for k, v in blob.items() if k != "state_dict"}
    return model.to(device).eval(), described
