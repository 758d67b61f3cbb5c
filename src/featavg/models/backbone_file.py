"""A user's pretrained backbone from a file: the public CIFAR-10 weights the paper used, or
any featavg model, or any user checkpoint of a ResNet-18.

    model, info = load_backbone_file("resnet18.pt")   # huyvnphan/PyTorch_CIFAR10's weights
    model.features(x)                                  # x (N, 3, 32, 32) in [0, 1] -> (N, 512)

Files load with ``torch.load(weights_only=True)`` (:func:`~featavg.torch_files.
load_checkpoint`): no pickled code ever runs. Accepted contents:

* a featavg ``model.pt`` (or its model directory): rebuilt with its own architecture and
  normalisation (:func:`~featavg.models.model_file.load_trained_model`);
* a plain state dict of ``arch`` (default ``resnet18-pretrained``, huyvnphan's layout and
  keys), its keys bare, ``net.``- or ``model.``-prefixed (huyvnphan's Lightning module keeps
  the net under ``model``), possibly under a ``state_dict`` entry (a Lightning checkpoint);
  inputs are normalised with ``normalization`` (huyvnphan's weights expect
  ``cifar-pretrained``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from featavg.config import ConfigError
from featavg.models.image_classifier import ImageClassifier

# architectures a plain state dict may be loaded into (CIFAR-sized, 3 channels)
BACKBONE_ARCHS = ("resnet18-pretrained", "resnet18-cifar", "resnet18-imagenet")


def file_sha256(path: Path) -> str:
    """The file's SHA-256 (hex): what identifies a backbone file in a summary."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_tensors(blob: dict[str, Any], where: Path) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint ``blob``: the dict itself or its ``state_dict``
    entry (Lightning's layout), keys as they are. ConfigError (naming ``where``) when an
    entry is not a tensor."""
    state = blob.get("state_dict", blob)
    if not isinstance(state, dict):
        raise ConfigError(f"{where}: 'state_dict' is not a dict of tensors")
    bad = [k for k, v in state.items() if not torch.is_tensor(v)]
    if bad:
        raise ConfigError(f"{where}: not a state dict (entry {bad[0]!r} is not a tensor)")
    return state


def plain_state(blob: dict[str, Any], where: Path) -> dict[str, torch.Tensor]:
    """The network state dict inside a loaded checkpoint ``blob`` (:func:`state_tensors`),
    with a ``model.`` prefix common to every key removed (the pretrained CIFAR weights
    come that way)."""
    state = state_tensors(blob, where)
    if state and all(k.startswith("model.") for k in state):
        state = {k.removeprefix("model."): v for k, v in state.items()}
    return state


def load_backbone_file(
    path: str | Path,
    *,
    arch: str = "resnet18-pretrained",
    normalization: str = "cifar-pretrained",
    image_size: int = 32,
) -> tuple[ImageClassifier, dict[str, Any]]:
    """(model in eval mode on the CPU, what it is) from ``path`` (see the module doc).

    ``info``: source "file", path, sha256, kind ("featavg model file" | "state dict"),
    model (the architecture), normalization. A plain state dict's ``fc`` sets the number
    of classes; a dict without ``fc`` (features only) is accepted, its unused ``fc`` then
    keeps a fresh init. ConfigError (one line) when the file is missing, unsafe,
    corrupt or does not fit ``arch``.
    """
    from featavg.models.builtin import build_model
    from featavg.models.image_classifier import load_backbone_state, normalization_by_name
    from featavg.models.model_file import (
        MODEL_FORMAT,
        head_classes,
        load_trained_model,
        model_file_path,
    )
    from featavg.torch_files import load_checkpoint

    if arch not in BACKBONE_ARCHS:
        raise ConfigError(
            f"backbone_arch: must be one of {', '.join(BACKBONE_ARCHS)}, got {arch!r}"
        )
    file = model_file_path(path)
    blob = load_checkpoint(file, map_location="cpu")
    info: dict[str, Any] = {"source": "file", "path": str(file), "sha256": file_sha256(file)}
    if blob.get("format") == MODEL_FORMAT:
        model, meta = load_trained_model(file, "cpu")
        info.update(
            kind="featavg model file",
            model=meta["model"],
            normalization=meta["normalization"]["name"],
            trained_on=(meta.get("dataset") or {}).get("name"),
        )
        return model, info
    state = plain_state(blob, file)
    classes = head_classes(state, file)
    norm = normalization_by_name(normalization)
    model = build_model(arch, classes or 10, 3, image_size, norm)
    if classes is None:  # a features-only checkpoint: the unused fc keeps its fresh init
        own_fc = model.net.state_dict()
        state = {**state, **{k: v for k, v in own_fc.items() if k.startswith("fc.")}}
    load_backbone_state(model, state)
    info.update(kind="state dict", model=arch, normalization=norm.name)
    return model.eval(), info
