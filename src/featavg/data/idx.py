"""MNIST-family idx files (MNIST, Fashion-MNIST): a checked reader and the split loader.

The idx format (LeCun et al.): a 4-byte big-endian magic number ``0x000008DD`` (0x08 = unsigned
byte data, DD = number of dimensions), DD big-endian uint32 sizes, then the raw bytes.
Images are ``0x00000803`` (N, 28, 28), labels ``0x00000801`` (N,). Files may be gzipped.

Checksums are taken over the *decompressed* idx bytes, not the ``.gz`` files: the Debian
package ``dataset-fashion-mnist`` ships re-compressed ``.gz`` files whose md5s differ from the
upstream archives while their content is byte-identical (checked: the decompressed SHA-256s
below match those published for the upstream files). torchvision's ``raw/`` folder holds
both the ``.gz`` and the extracted file; either is read (the extracted one first).

Nothing here writes to disk.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from featavg.config import ConfigError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

Family = Literal["mnist", "fashion-mnist"]

#: the four standard files, in (train images, train labels, test images, test labels) order
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: SHA-256 of the decompressed standard files (MNIST: as published with the LeCun/ossci
#: mirrors; Fashion-MNIST: computed from the Debian files here and equal to the published ones)
RAW_SHA256: dict[str, dict[str, str]] = {
    "mnist": dict(
        zip(
            IDX_FILES,
            (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
            strict=True,
        )
    ),
    "fashion-mnist": dict(
        zip(
            IDX_FILES,
            (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
            strict=True,
        )
    ),
}

STANDARD_COUNTS = {"train": 60000, "test": 10000}

#: torchvision's folder name for each family, under ``<data_dir>/<folder>/raw``
TORCHVISION_FOLDER = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def fetch_hint(family: Family) -> str:
    """How to get the standard files on a machine with internet (one clause, for messages)."""
    cls = TORCHVISION_FOLDER[family]  # the folder is named after the dataset class
    hint = (
        f'fetch them on a machine with internet: python -c "import torchvision; '
        f"torchvision.datasets.{cls}('DIR', download=True)\" then pass --data-dir DIR"
    )
    if family == "fashion-mnist":
        hint += " (or apt-get install dataset-fashion-mnist)"
    return hint


def expected_layout(family: Family) -> str:
    """The accepted on-disk layout, for messages."""
    folder = TORCHVISION_FOLDER[family]
    return f"<data-dir>/{folder}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]"


def _fail(path: Path, what: str, family: Family | None) -> ConfigError:
    tail = f"; layout: {expected_layout(family)}; {fetch_hint(family)}" if family else ""
    return ConfigError(f"{path}: {what}{tail}")


def read_idx_bytes(path: str | Path, family: Family | None = None) -> bytes:
    """The decompressed bytes of an idx or idx.gz file (gzip detected by its magic bytes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise _fail(path, f"cannot read ({err.strerror or err})", family) from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise _fail(path, f"corrupt gzip data ({err})", family) from None
    return data


def parse_idx(data: bytes, path: str | Path, family: Family | None = None) -> torch.Tensor:
    """Parse decompressed idx bytes into a uint8 tensor of the file's shape.

    Checks the magic number (0x0803 images, 0x0801 labels; data type 0x08 = unsigned byte)
    and that the file holds exactly prod(dims) bytes after the header (truncated or trailing
    bytes are errors). Returns (N, H, W) for images, (N,) for labels; ``path`` only names the
    file in errors.
    """
    path = Path(path)
    if len(data) < 4:
        raise _fail(path, f"truncated: {len(data)} bytes, no idx header", family)
    magic = int.from_bytes(data[:4], "big")
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        raise _fail(
            path,
            f"bad magic number {magic:#010x} (expected {IMAGES_MAGIC:#010x} for images "
            f"or {LABELS_MAGIC:#010x} for labels)",
            family,
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _fail(path, f"truncated: {len(data)} bytes, header needs {header}", family)
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes"
        raise _fail(
            path, f"{what}: {len(data)} bytes, expected {expected} for shape {dims}", family
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    # copy: frombuffer views the immutable bytes, and torch wants a writable buffer
    return torch.from_numpy(array.copy())


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an idx / idx.gz file into a uint8 tensor: images (N, H, W), labels (N,).

    Every malformed file raises :class:`ConfigError` with one line naming the file and the
    problem (bad magic number, truncated, trailing bytes, corrupt gzip).
    """
    return parse_idx(read_idx_bytes(path), path)


def find_idx_dir(data_dir: Path, family: Family) -> Path | None:
    """The folder holding the first standard file: torchvision's ``<dir>/<Folder>/raw`` or
    ``<dir>`` itself; None when neither has it."""
    for folder in (data_dir / TORCHVISION_FOLDER[family] / "raw", data_dir):
        if any((folder / f"{IDX_FILES[0]}{ext}").is_file() for ext in ("", ".gz")):
            return folder
    return None


def _locate(folder: Path, name: str, family: Family) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise _fail(folder / f"{name}[.gz]", "missing", family)


def _split(
    folder: Path, split: str, family: Family, verify_checksums: bool
) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
    prefix = "train" if split == "train" else "t10k"
    paths = [
        _locate(folder, f"{prefix}-{kind}", family)
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    ]
    tensors = []
    for path, kind in zip(paths, ("images", "labels"), strict=True):
        data = read_idx_bytes(path, family)
        if verify_checksums:
            name = path.name.removesuffix(".gz")
            digest = hashlib.sha256(data).hexdigest()
            if digest != RAW_SHA256[family][name]:
                raise _fail(
                    path,
                    f"checksum mismatch (sha256 of the decompressed file {digest[:16]}..., "
                    f"expected {RAW_SHA256[family][name][:16]}...): not the standard file",
                    family,
                )
        tensor = parse_idx(data, path, family)
        want_ndim = 3 if kind == "images" else 1
        if tensor.ndim != want_ndim:
            raise _fail(
                path, f"holds {tensor.ndim}-d data, expected {kind} ({want_ndim}-d)", family
            )
        tensors.append(tensor)
    images, labels = tensors
    if tuple(images.shape[1:]) != (28, 28):
        raise _fail(paths[0], f"images are {tuple(images.shape[1:])}, expected 28x28", family)
    if images.shape[0] != labels.shape[0]:
        raise _fail(
            paths[1],
            f"{labels.shape[0]} labels for {images.shape[0]} images in {paths[0].name}",
            family,
        )
    if verify_checksums and images.shape[0] != STANDARD_COUNTS[split]:
        raise _fail(
            paths[0], f"{images.shape[0]} images, expected {STANDARD_COUNTS[split]}", family
        )
    if labels.numel() and int(labels.max()) > 9:
        raise _fail(paths[1], f"label {int(labels.max())} out of range 0..9", family)
    missing = sorted(set(range(10)) - set(labels.unique().tolist()))
    if missing:
        raise _fail(paths[1], f"no sample of class {missing} (need all 10 classes)", family)
    return images.unsqueeze(1).contiguous(), labels.to(torch.int64), paths


def load_idx_dataset(
    data_dir: str | Path, family: Family, *, verify_checksums: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[Path]]:
    """Load a MNIST-family train/test split from ``data_dir``.

    Accepts torchvision's layout ``<data_dir>/MNIST/raw/`` (``FashionMNIST`` for
    Fashion-MNIST) or the four files directly in ``data_dir``, each plain or ``.gz``.
    Returns ``(x_train, y_train, x_test, y_test, files)``: images uint8 (N, 1, 28, 28),
    labels int64 (N,) in 0..9.

    Checks always: format (see :func:`parse_idx`), 28x28 images, as many labels as images,
    labels in 0..9, all 10 classes present in each split. Any *consistent* count is accepted
    (so subsets and tiny test fixtures load); ``verify_checksums=True`` pins the standard
    files: SHA-256 of the decompressed bytes and the 60000 / 10000 counts.
    """
    data_dir = Path(data_dir)
    folder = find_idx_dir(data_dir, family)
    if folder is None:
        raise _fail(data_dir / f"{IDX_FILES[0]}[.gz]", "missing", family)
    x_tr, y_tr, p_tr = _split(folder, "train", family, verify_checksums)
    x_te, y_te, p_te = _split(folder, "test", family, verify_checksums)
    return x_tr, y_tr, x_te, y_te, p_tr + p_te
