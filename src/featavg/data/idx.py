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
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch

from featavg.config import ConfigError
from featavg.data import files

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


@dataclass(frozen=True)
class IdxHeader:
    """The header of an idx / idx.gz file: its magic number, dimensions, and raw bytes (for
    the checksum). ``payload`` is the byte count the dimensions declare."""

    path: Path
    gz: bool
    magic: int
    dims: tuple[int, ...]
    raw: bytes

    @property
    def payload(self) -> int:
        """Bytes of data the header declares (an exact Python integer: no overflow)."""
        return math.prod(self.dims)

    @property
    def expected(self) -> int:
        """Bytes of the whole (decompressed) file."""
        return len(self.raw) + self.payload


def _open(path: Path, family: Family | None) -> BinaryIO:
    try:
        return files.open_regular(path)
    except ConfigError as err:  # the reader's message, with this format's layout and hint
        raise _fail(path, str(err).removeprefix(f"{path}: "), family) from None


def _decompressed(raw: BinaryIO) -> tuple[BinaryIO, bool]:
    """The stream of the file's idx bytes (gzip detected by its magic bytes); whether gzip."""
    gz = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    return (gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw), gz  # type: ignore[return-value]


def _read(stream: BinaryIO, n: int, path: Path, family: Family | None) -> bytes:
    """Up to ``n`` bytes (fewer only at the end); a corrupt gzip stream is a one-line error."""
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as err:
        raise _fail(path, f"corrupt gzip data ({files.one_line(err)})", family) from None


def _parse_header(path: Path, stream: BinaryIO, gz: bool, family: Family | None) -> IdxHeader:
    head = _read(stream, 4, path, family)
    if len(head) < 4:
        raise _fail(path, f"truncated: {len(head)} bytes, no idx header", family)
    magic = int.from_bytes(head, "big")
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        raise _fail(
            path,
            f"bad magic number {magic:#010x} (expected {IMAGES_MAGIC:#010x} for images "
            f"or {LABELS_MAGIC:#010x} for labels)",
            family,
        )
    ndim = magic & 0xFF
    head += _read(stream, 4 * ndim, path, family)
    if len(head) < 4 + 4 * ndim:
        raise _fail(path, f"truncated: {len(head)} bytes, header needs {4 + 4 * ndim}", family)
    dims = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return IdxHeader(path, gz, magic, dims, head)


def _wrong_size(header: IdxHeader, size: int | None, family: Family | None) -> ConfigError:
    if size is None:  # a gzip stream longer than declared: its length is not read to the end
        what = f"trailing bytes: more than the {header.expected} expected"
    else:
        what = f"{'truncated' if size < header.expected else 'trailing bytes'}: {size} bytes, "
        what += f"expected {header.expected}"
    return _fail(header.path, f"{what} for shape {header.dims}", family)


def read_idx_header(path: str | Path, family: Family | None = None) -> IdxHeader:
    """Read and check only the header of an idx / idx.gz file: the magic number and, for a
    plain file, that its size is exactly the header plus prod(dims) bytes. Reads a few
    bytes whatever the file declares."""
    path = Path(path)
    with _open(path, family) as raw:
        stream, gz = _decompressed(raw)
        header = _parse_header(path, stream, gz, family)
    if not gz:
        size = files.file_size(path)
        if size != header.expected:
            raise _wrong_size(header, size, family)
    return header


def read_idx_data(
    header: IdxHeader, family: Family | None = None, checksum: str | None = None
) -> torch.Tensor:
    """The data of the file ``header`` was read from, as a uint8 tensor of shape ``dims``.

    The free memory is checked against the declared size first; the file is then read in
    bounded chunks, so that a stream longer than declared (a gzip bomb) stops one chunk past
    the declared end. ``checksum``: the SHA-256 the decompressed file must have.
    """
    path = header.path
    files.check_fits(path, header.payload, f"the declared shape {header.dims}")
    try:
        out = np.empty(header.payload, dtype=np.uint8)
    except MemoryError:  # the free memory went elsewhere since the check
        raise _fail(path, f"no memory for the declared shape {header.dims}", family) from None
    digest = hashlib.sha256(header.raw)
    with _open(path, family) as raw:
        stream, gz = _decompressed(raw)
        if _read(stream, len(header.raw), path, family) != header.raw:
            raise _fail(path, "changed while being read", family)
        done = 0
        while done < header.payload:
            chunk = _read(stream, min(files.CHUNK, header.payload - done), path, family)
            if not chunk:
                raise _wrong_size(header, len(header.raw) + done, family)
            out[done : done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            digest.update(chunk)
            done += len(chunk)
        if _read(stream, 1, path, family):
            raise _wrong_size(header, None if gz else files.file_size(path), family)
    if checksum is not None and digest.hexdigest() != checksum:
        raise _fail(
            path,
            f"checksum mismatch (sha256 of the decompressed file {digest.hexdigest()[:16]}..., "
            f"expected {checksum[:16]}...): not the standard file",
            family,
        )
    return torch.from_numpy(out.reshape(header.dims))


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an idx / idx.gz file into a uint8 tensor: images (N, H, W), labels (N,).

    Every malformed file raises :class:`ConfigError` with one line naming the file and the
    problem (bad magic number, truncated, trailing bytes, corrupt gzip, more data declared
    than the free memory holds), found before the data are read where the header tells.
    """
    return read_idx_data(read_idx_header(path))


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


def _split_headers(folder: Path, split: str, family: Family) -> tuple[IdxHeader, IdxHeader]:
    """The checked headers of one split's images and labels: their kinds, 28x28 images, as
    many labels as images, all before any data is read."""
    prefix = "train" if split == "train" else "t10k"
    images, labels = (
        read_idx_header(_locate(folder, f"{prefix}-{kind}", family), family)
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    )
    for header, kind, want in ((images, "images", 3), (labels, "labels", 1)):
        if len(header.dims) != want:
            raise _fail(
                header.path, f"holds {len(header.dims)}-d data, expected {kind} ({want}-d)", family
            )
    if images.dims[1:] != (28, 28):
        raise _fail(images.path, f"images are {images.dims[1:]}, expected 28x28", family)
    if images.dims[0] != labels.dims[0]:
        raise _fail(
            labels.path,
            f"{labels.dims[0]} labels for {images.dims[0]} images in {images.path.name}",
            family,
        )
    return images, labels


def _split(
    headers: tuple[IdxHeader, IdxHeader], split: str, family: Family, verify_checksums: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    tensors = []
    for header in headers:
        name = header.path.name.removesuffix(".gz")
        checksum = RAW_SHA256[family][name] if verify_checksums else None
        tensors.append(read_idx_data(header, family, checksum))
    images, labels = tensors
    paths = [h.path for h in headers]
    if verify_checksums and images.shape[0] != STANDARD_COUNTS[split]:
        raise _fail(
            paths[0], f"{images.shape[0]} images, expected {STANDARD_COUNTS[split]}", family
        )
    if labels.numel() and int(labels.max()) > 9:
        raise _fail(paths[1], f"label {int(labels.max())} out of range 0..9", family)
    missing = sorted(set(range(10)) - set(labels.unique().tolist()))
    if missing:
        raise _fail(paths[1], f"no sample of class {missing} (need all 10 classes)", family)
    return images.unsqueeze(1), labels.to(torch.int64)


def load_idx_dataset(
    data_dir: str | Path, family: Family, *, verify_checksums: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[Path]]:
    """Load a MNIST-family train/test split from ``data_dir``.

    Accepts torchvision's layout ``<data_dir>/MNIST/raw/`` (``FashionMNIST`` for
    Fashion-MNIST) or the four files directly in ``data_dir``, each plain or ``.gz``.
    Returns ``(x_train, y_train, x_test, y_test, files)``: images uint8 (N, 1, 28, 28),
    labels int64 (N,) in 0..9.

    Checks always: format (see :func:`read_idx`), 28x28 images, as many labels as images,
    labels in 0..9, all 10 classes present in each split. The four headers are checked, and
    the memory the data will take compared with the free memory, before any data is read.
    Any *consistent* count is accepted (so subsets and tiny test fixtures load);
    ``verify_checksums=True`` pins the standard files: SHA-256 of the decompressed bytes
    and the 60000 / 10000 counts.
    """
    data_dir = Path(data_dir)
    folder = find_idx_dir(data_dir, family)
    if folder is None:
        raise _fail(data_dir / f"{IDX_FILES[0]}[.gz]", "missing", family)
    train, test = (_split_headers(folder, split, family) for split in ("train", "test"))
    # held at once: both splits' uint8 images and labels, plus the int64 copy of the labels
    need = sum(h.payload for h in (*train, *test)) + 8 * (train[1].payload + test[1].payload)
    files.check_fits(
        train[0].path,
        need,
        f"this dataset ({train[0].dims[0]} + {test[0].dims[0]} images, as the headers declare)",
    )
    x_tr, y_tr = _split(train, "train", family, verify_checksums)
    x_te, y_te = _split(test, "test", family, verify_checksums)
    return x_tr, y_tr, x_te, y_te, [h.path for h in (*train, *test)]
