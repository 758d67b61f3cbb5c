"""What the probe accepts as data, brought to one form: batches of (x, fine label).

* an :class:`~featavg.data.images.ImageDataset`: class means, unit gradients and the probe's
  training features from its train split (the paper's class means are training-set means);
  the model's accuracy and the probe's held-out score on its test split;
* an :class:`~featavg.data.images.ImageSplit`, an (x, y) pair of tensors, or x with
  ``fine_labels`` y: one set; the linear probe splits its subsample 70/30 (seeded) and the
  accuracy is measured on the same points the means come from (stated in the summary);
* any iterable of (x, y) batches (e.g. a DataLoader): as one set, read once. Its content
  fingerprint is only known after the pass, so such a probe is never a cache hit.

uint8 inputs become float / 255 inside the capture (featavg's image models take [0, 1]).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from featavg.config import ConfigError
from featavg.data.images import ImageDataset, ImageSplit

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
ProbeInput = ImageDataset | ImageSplit | tuple[torch.Tensor, torch.Tensor] | torch.Tensor | Batches


@dataclass
class ProbeData:
    """fit(): the batches for means, gradients and the probe's training features;
    held_out(): those for accuracy and the probe's held-out score (None: one set only);
    fingerprint: the content hash (None until a one-shot iterable has been read);
    description: JSON-able facts (name, stand-in label, sizes); num_classes: k if known;
    head(n): the first n evaluation points (x, fine y) for the robustness curve (None for a
    one-shot iterable)."""

    fit: Callable[[], Batches]
    held_out: Callable[[], Batches] | None
    fingerprint: str | None
    description: dict[str, Any]
    stand_in: str | None = None
    num_classes: int | None = None
    head: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    """16 hex digits of sha256 over the shapes, dtypes and bytes of ``tensors``."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)} {t.dtype}".encode())
        h.update(np.ascontiguousarray(t.reshape(-1).view(torch.uint8).numpy()).data)
    return h.hexdigest()[:16]


def _slices(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Callable[[], Batches]:
    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, x.shape[0], batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]

    return batches


def _pair(x: torch.Tensor, y: torch.Tensor, batch_size: int, name: str) -> ProbeData:
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise ConfigError("data: an (x, y) pair must hold two tensors")
    if y.ndim != 1 or x.shape[0] != y.shape[0] or y.is_floating_point():
        raise ConfigError(
            f"fine_labels: need integer labels (N,) for x of N = {x.shape[0]} points, got "
            f"{y.dtype} {tuple(y.shape)}"
        )
    desc = {"name": name, "size": int(x.shape[0]), "input_shape": list(x.shape[1:])}
    labels = int(y.max()) + 1 if y.numel() else None
    return ProbeData(
        _slices(x, y, batch_size),
        None,
        tensor_fingerprint(x, y),
        desc,
        None,
        labels,
        lambda n: (x[:n], y[:n]),
    )


class _Hashing:
    """Wraps a one-shot iterable of batches and hashes what passes through."""

    def __init__(self, batches: Batches) -> None:
        self.batches = batches
        self.digest = hashlib.sha256()
        self.used = False
        self.points = 0

    def __call__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.used:
            raise ConfigError("data: an iterable of batches can be read only once")
        self.used = True
        for item in self.batches:
            if not (isinstance(item, tuple | list) and len(item) == 2):
                raise ConfigError("data: an iterable must yield (x, y) batches")
            x, y = item
            self.digest.update(tensor_fingerprint(x, y).encode())
            self.points += int(y.shape[0])
            yield x, y

    def fingerprint(self) -> str:
        return self.digest.hexdigest()[:16]


def as_probe_data(
    data: ProbeInput, fine_labels: torch.Tensor | None, batch_size: int
) -> tuple[ProbeData, _Hashing | None]:
    """``data`` (see the module docstring) as :class:`ProbeData`; the second item is the
    hashing wrapper of a one-shot iterable (its fingerprint after the pass), else None."""
    if fine_labels is not None:
        if not isinstance(data, torch.Tensor):
            raise ConfigError("fine_labels: given, so data must be the input tensor x")
        return _pair(data, fine_labels, batch_size, "tensors"), None
    if isinstance(data, ImageDataset):
        desc = data.describe()
        return (
            ProbeData(
                _slices(data.train.x, data.train.y, batch_size),
                _slices(data.test.x, data.test.y, batch_size),
                data.fingerprint(),
                desc,
                data.stand_in,
                len(data.classes),
                lambda n: (data.test.x[:n], data.test.y[:n]),
            ),
            None,
        )
    if isinstance(data, ImageSplit):
        return _pair(data.x, data.y, batch_size, "image split"), None
    if isinstance(data, torch.Tensor):
        raise ConfigError("fine_labels: needed when data is a tensor of inputs")
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return _pair(data[0], data[1], batch_size, "tensors"), None
    if isinstance(data, Iterable):
        wrapper = _Hashing(data)
        return ProbeData(wrapper, None, None, {"name": "batches"}), wrapper
    raise ConfigError(
        f"data: got {type(data).__name__}; need an ImageDataset, ImageSplit, (x, y) tensors, "
        "x with fine_labels, or an iterable of (x, y) batches"
    )
