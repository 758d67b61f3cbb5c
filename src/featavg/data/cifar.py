"""CIFAR-10 ``cifar-10-batches-py`` reader that never runs code from the files.

The batches are pickles (protocol 2, written by Python 2) of a dict with bytes keys
``b'batch_label'``, ``b'labels'`` (list of ints), ``b'data'`` (numpy uint8 array
(10000, 3072): 1024 red, 1024 green, 1024 blue values of a row-major 32x32 image) and
``b'filenames'``; ``batches.meta`` holds ``b'label_names'``. A plain ``pickle.load`` would
execute any callable a tampered file names, so :class:`_BatchUnpickler` resolves only the
globals a numpy array needs (``_reconstruct`` for an empty array only, ``ndarray``,
``dtype``; ``_frombuffer`` in protocol 5) plus ``_codecs.encode`` restricted to latin-1 (how
Python 3 protocol-2 pickles spell ``bytes``, e.g. in re-exported batches); any other global
is refused before it is looked up. Before unpickling, the file's size is checked against
the free memory and its opcodes are scanned (:mod:`featavg.data.pickle_scan`): a container
referenced twice, the way small pickles expand into huge structures, is refused.

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
from featavg.data import files, pickle_scan

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


def _numpy_core(module: str) -> Any:
    # numpy >= 2 moved the modules to numpy._core; numpy 1.x only has numpy.core
    try:
        return importlib.import_module(f"numpy._core.{module}")
    except ImportError:  # pragma: no cover - numpy 1.x
        return importlib.import_module(f"numpy.core.{module}")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of ``bytes`` use it, and nothing more."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _empty_array(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``_reconstruct`` as numpy's own pickles call it: an empty plain ndarray, which the
    pickle's state then fills (a hostile shape would allocate before any check)."""
    if subtype is not np.ndarray or shape not in ((0,), [0], 0):
        raise pickle.UnpicklingError(f"_reconstruct of {subtype!r} with shape {shape!r}")
    return _numpy_core("multiarray")._reconstruct(np.ndarray, (0,), dtype)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _empty_array,
    ("numpy._core.multiarray", "_reconstruct"): _empty_array,
    # protocol 5: an array over an in-band buffer (its size must match the shape)
    ("numpy.core.numeric", "_frombuffer"): _numpy_core("numeric")._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numpy_core("numeric")._frombuffer,
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
    """Unpickle one CIFAR-10 file safely; keys decoded to ``str``.

    The file's size is checked against the free memory before it is read; its opcodes are
    scanned (:func:`featavg.data.pickle_scan.scan`: no shared or recursive containers) before
    it is unpickled with the allow-listed globals only.
    """
    try:
        size = files.file_size(path)
        # the file's bytes and the objects unpickled from them are alive at once
        files.check_fits(path, 2 * size, "unpickling this file")
        with files.open_regular(path) as f:
            raw = f.read()
    except ConfigError as err:
        raise ConfigError(f"{err}; layout: {LAYOUT}; {FETCH_HINT}") from None
    try:
        pickle_scan.scan(io.BytesIO(raw))
        obj = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle_scan.UnsafePickle as err:
        raise _not_batch(path, f"refusing to unpickle: {err}") from None
    except _Refused as err:
        raise _not_batch(path, f"refusing to unpickle {err}") from None
    except Exception as err:  # noqa: BLE001 - any failure of a malformed pickle is user input
        what = f"unreadable pickle: {type(err).__name__}: {files.one_line(err)}"
        raise _not_batch(path, what) from None
    if not isinstance(obj, dict):
        raise _not_batch(path, f"holds a {type(obj).__name__}, expected a dict")
    if not all(isinstance(k, bytes | str) for k in obj):
        raise _not_batch(path, "a key that is not a string")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _labels(path: Path, labels: Any, n: int) -> np.ndarray:
    """The ``labels`` entry as int64 (n,) in 0..9: a list of ``n`` Python ints (or a 1-d
    integer array), checked element by element *before* any conversion (a nested list
    handed to ``np.asarray`` may expand without bound)."""
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind not in "iu" or labels.ndim != 1:
            raise _not_batch(path, f"'labels' is a {labels.dtype} array of shape {labels.shape}")
        values = labels
    elif isinstance(labels, list | tuple):
        bad = next((v for v in labels if type(v) is not int), None)
        if bad is not None:
            what = f"{type(bad).__name__} {bad!r}" if _scalar(bad) else type(bad).__name__
            raise _not_batch(path, f"'labels' holds a {what}, expected integers 0..9")
        values = labels  # type: ignore[assignment]
    else:
        raise _not_batch(path, f"'labels' is a {type(labels).__name__}, expected a list")
    if len(values) != n:
        raise _not_batch(path, f"{len(values)} labels for {n} images")
    if n:
        for v in (min(values), max(values)):
            if not 0 <= v <= 9:
                raise _not_batch(path, f"label {int(v)} out of range 0..9")
    return np.asarray(values, dtype=np.int64)


def _scalar(value: Any) -> bool:
    """A value whose repr is short and cheap (never a container, whose repr could explode)."""
    return isinstance(value, int | float | complex | bool | type(None)) or (
        isinstance(value, str | bytes) and len(value) <= 20
    )


def read_batch(path: Path, *, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One data batch: images uint8 (N, 3, 32, 32) and labels int64 (N,) in 0..9.

    Any consistent N is accepted; ``strict`` requires the standard 10000. ``labels`` must
    be a list of Python ints (or a 1-d integer array): floats, booleans, nested lists and
    values outside 0..9 are refused, naming the offending value.
    """
    batch = read_pickle(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise _not_batch(path, f"no {key!r} key; has {sorted(batch)[:10]}")
    data = batch["data"]
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3072
    ):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
        raise _not_batch(path, f"'data' is {desc}, expected uint8 (N, 3072)")
    labels = _labels(path, batch["labels"], data.shape[0])
    if strict and data.shape[0] != STANDARD_BATCH_SIZE:
        raise _not_batch(path, f"{data.shape[0]} images, expected {STANDARD_BATCH_SIZE}")
    return data.reshape(-1, 3, 32, 32), labels


def read_label_names(path: Path) -> tuple[str, ...]:
    """The 10 class names of ``batches.meta`` (strings of at most 100 characters)."""
    meta = read_pickle(path)
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise _not_batch(path, "batches.meta without 10 'label_names'")
    if not all(isinstance(n, bytes | str) and len(n) <= 100 for n in names):
        raise _not_batch(path, "batches.meta 'label_names' are not 10 short strings")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else n for n in names)


def _check_md5(path: Path) -> None:
    digest = hashlib.md5()
    with files.open_regular(path) as f:
        while chunk := f.read(files.CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != MD5[path.name]:
        raise ConfigError(
            f"{path}: checksum mismatch (md5 {digest.hexdigest()}, expected {MD5[path.name]}): "
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
    paths = [folder / name for name in (*TRAIN_BATCHES, TEST_BATCH, META)]
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"{path}: missing; layout: {LAYOUT}; {FETCH_HINT}")
    # alive at the peak: every train batch's arrays, their concatenation, one file's bytes
    sizes = [files.file_size(p) for p in paths]
    largest = paths[sizes.index(max(sizes))]
    what = f"this dataset's {len(paths)} files (this one the largest)"
    files.check_fits(largest, 2 * sum(sizes) + max(sizes), what)
    if verify_checksums:
        for path in paths:
            _check_md5(path)
    classes = read_label_names(paths[-1])
    train = [read_batch(p, strict=verify_checksums) for p in paths[:5]]
    x_te, y_te = read_batch(paths[5], strict=verify_checksums)
    x_tr = np.concatenate([x for x, _ in train])
    y_tr = np.concatenate([y for _, y in train])
    for y, path in ((y_tr, folder / "data_batch_*"), (y_te, paths[5])):
        missing = sorted(set(range(10)) - set(np.unique(y).tolist()))
        if missing:
            raise _not_batch(path, f"no image of class {missing} (need all 10 classes)")
    as_tensors = (torch.from_numpy(np.ascontiguousarray(a)) for a in (x_tr, y_tr, x_te, y_te))
    xt, yt, xe, ye = as_tensors
    return xt, yt, xe, ye, classes, paths
