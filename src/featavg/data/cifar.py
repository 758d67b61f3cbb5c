"""CIFAR-10 ``cifar-10-batches-py`` reader that never runs code from the files.

The batches are pickles (protocol 2, written by Python 2) of a dict with bytes keys
``b'batch_label'``, ``b'labels'`` (list of ints), ``b'data'`` (numpy uint8 array
(10000, 3072): 1024 red, 1024 green, 1024 blue values of a row-major 32x32 image) and
``b'filenames'``; ``batches.meta`` holds ``b'label_names'``. A plain ``pickle.load`` would
execute any callable a tampered file names, so :class:`_BatchUnpickler` resolves only the
globals a numpy array needs (``_reconstruct``, ``ndarray``, ``dtype``) plus ``_codecs.encode``
restricted to latin-1 (how Python 3 protocol-2 pickles spell ``bytes``, e.g. in re-exported
batches); any other global is refused before it is looked up.

Nothing here writes to disk.
"""

from __future__ import annotations

import codecs
import hashlib
import importlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featavg.config import ConfigError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"

#: torchvision's md5s of the standard files
MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
STANDARD_BATCH_SIZE = 10000

FETCH_HINT = (
    'fetch it on a machine with internet: python -c "import torchvision; '
    "torchvision.datasets.CIFAR10('DIR', download=True)\" then pass --data-dir DIR"
)
LAYOUT = f"<data-dir>/{FOLDER}/{{data_batch_1..5,test_batch,{META}}}"


def _multiarray() -> Any:
    # numpy >= 2 moved the module to numpy._core; numpy 1.x only has numpy.core
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # pragma: no cover - numpy 1.x
        return importlib.import_module("numpy.core.multiarray")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of ``bytes`` use it, and nothing more."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray()._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray()._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _Refused(Exception):
    """A pickle named a global outside the allow-list."""


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that resolves exactly the globals in ``_ALLOWED``."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def _not_batch(path: Path, what: str) -> ConfigError:
    return ConfigError(f"{path}: not a CIFAR-10 batch ({what}); layout: {LAYOUT}; {FETCH_HINT}")


def read_pickle(path: Path) -> dict[str, Any]:
    """Unpickle one CIFAR-10 file safely; keys decoded to ``str``."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(
            f"{path}: cannot read ({err.strerror or err}); layout: {LAYOUT}; {FETCH_HINT}"
        ) from None
    try:
        obj = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _Refused as err:
        raise _not_batch(path, f"refusing to unpickle {err}") from None
    except Exception as err:  # noqa: BLE001 - any failure of a malformed pickle is user input
        raise _not_batch(path, f"unreadable pickle: {type(err).__name__}: {err}") from None
    if not isinstance(obj, dict):
        raise _not_batch(path, f"holds a {type(obj).__name__}, expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def read_batch(path: Path, *, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One data batch: images uint8 (N, 3, 32, 32) and labels int64 (N,) in 0..9.

    Any consistent N is accepted; ``strict`` requires the standard 10000.
    """
    batch = read_pickle(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise _not_batch(path, f"no {key!r} key; has {sorted(batch)}")
    data = batch["data"]
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3072
    ):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
        raise _not_batch(path, f"'data' is {desc}, expected uint8 (N, 3072)")
    try:
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise _not_batch(path, "'labels' is not a list of integers") from None
    if labels.shape != (data.shape[0],):
        raise _not_batch(path, f"{labels.shape} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise _not_batch(path, f"label {int(labels.max())} out of range 0..9")
    if strict and data.shape[0] != STANDARD_BATCH_SIZE:
        raise _not_batch(path, f"{data.shape[0]} images, expected {STANDARD_BATCH_SIZE}")
    return data.reshape(-1, 3, 32, 32), labels


def read_label_names(path: Path) -> tuple[str, ...]:
    """The 10 class names of ``batches.meta``."""
    meta = read_pickle(path)
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise _not_batch(path, "batches.meta without 10 'label_names'")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def _check_md5(path: Path) -> None:
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    if digest != MD5[path.name]:
        raise ConfigError(
            f"{path}: checksum mismatch (md5 {digest}, expected {MD5[path.name]}): "
            f"not the standard file; {FETCH_HINT}"
        )


def find_cifar_dir(data_dir: Path) -> Path | None:
    """``<data_dir>/cifar-10-batches-py`` (or ``data_dir`` itself if it is that folder)."""
    for folder in (data_dir / FOLDER, data_dir):
        if (folder / TRAIN_BATCHES[0]).is_file():
            return folder
    return None


def load_cifar10(
    data_dir: str | Path, *, verify_checksums: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[str, ...], list[Path]]:
    """Load CIFAR-10 from ``<data_dir>/cifar-10-batches-py``.

    Returns ``(x_train, y_train, x_test, y_test, classes, files)``: images uint8
    (N, 3, 32, 32), labels int64 (N,). Checks each file's format and that every class
    appears in each split; ``verify_checksums=True`` also checks torchvision's md5s and the
    standard 10000 images per batch. Every problem is a one-line :class:`ConfigError`.
    """
    data_dir = Path(data_dir)
    folder = find_cifar_dir(data_dir) or data_dir / FOLDER
    files = [folder / name for name in (*TRAIN_BATCHES, TEST_BATCH, META)]
    for path in files:
        if not path.is_file():
            raise ConfigError(f"{path}: missing; layout: {LAYOUT}; {FETCH_HINT}")
        if verify_checksums:
            _check_md5(path)
    classes = read_label_names(files[-1])
    train = [read_batch(p, strict=verify_checksums) for p in files[:5]]
    x_te, y_te = read_batch(files[5], strict=verify_checksums)
    x_tr = np.concatenate([x for x, _ in train])
    y_tr = np.concatenate([y for _, y in train])
    for y, path in ((y_tr, folder / "data_batch_*"), (y_te, files[5])):
        missing = sorted(set(range(10)) - set(np.unique(y).tolist()))
        if missing:
            raise _not_batch(path, f"no image of class {missing} (need all 10 classes)")
    as_tensors = (torch.from_numpy(np.ascontiguousarray(a)) for a in (x_tr, y_tr, x_te, y_te))
    xt, yt, xe, ye = as_tensors
    return xt, yt, xe, ye, classes, files
