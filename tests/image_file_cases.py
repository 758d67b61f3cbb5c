"""Generated hostile image files, and a harness that loads each in a forked child with a
time limit and an address-space cap (shared by tests/test_fuzz_image_files.py and
scripts/fuzz_image_files.py).

A case writes a dataset directory (idx/idx.gz MNIST files, CIFAR-10 pickles or the mnist-5k
CSV) and says what a correct loader does with it: ``load`` (and the arrays it must return),
``refuse`` (a one-line :class:`~featavg.config.ConfigError` naming a file under the case's
directory), ``either`` (a mutation that may leave a valid file: the independent naive
parser below decides which, and a load must return its arrays) or ``any`` (a byte-flipped
pickle: no safe independent unpickler exists, so either outcome, if clean). The verdicts:

* ``ok``: as expected;
* ``traceback``: any other exception (``MemoryError`` included);
* ``hang``: not done within the time limit (the child is killed);
* ``runaway``: the child's peak RSS grew by more than :data:`RUNAWAY_BYTES` (no case holds
  more than a few MB of genuine data);
* ``wrong``: loaded what should be refused, refused what should load, or loaded other
  arrays than the file holds; or an error that is not one printable line naming the file.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import resource
import select
import signal
import struct
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
RUNAWAY_BYTES = 512 * 2**20
CAP_BYTES = 3 * 2**30  # address space a child may add beyond its parent's
MAX_MESSAGE = 2000


@dataclass(frozen=True)
class Setup:
    """What a case wrote: the dataset name and directory, what a correct loader does, and
    for ``load`` the expected (x_train, y_train, x_test, y_test) as numpy arrays."""

    dataset: str
    data_dir: Path
    expect: str  # load | refuse | either
    reference: tuple[np.ndarray, ...] | None = None


@dataclass(frozen=True)
class Case:
    """A named hostile input on one surface (idx, cifar, csv)."""

    surface: str
    name: str
    build: Callable[[Path], Setup]


# ---------------------------------------------------------------- idx


def idx_bytes(
    array: np.ndarray, magic: int | None = None, dims: tuple[int, ...] | None = None
) -> bytes:
    magic = magic if magic is not None else 0x00000800 | array.ndim
    dims = dims if dims is not None else array.shape
    return struct.pack(f">I{len(dims)}I", magic, *dims) + array.astype(np.uint8).tobytes()


def _mnist_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for prefix, n in (("train", 20), ("t10k", 10)):
        out[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        out[f"{prefix}-labels-idx1-ubyte"] = (np.arange(n) % 10).astype(np.uint8)
    return out


def _write_mnist(root: Path, gz: bool) -> tuple[Path, dict[str, bytes]]:
    """A valid MNIST directory (torchvision layout); returns the folder and the raw bytes."""
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    raw = {name: idx_bytes(a) for name, a in _mnist_arrays().items()}
    for name, blob in raw.items():
        path = folder / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(blob, mtime=0) if gz else blob)
    return folder, raw


def naive_idx(folder: Path) -> tuple[np.ndarray, ...] | None:
    """An independent, whole-file idx parser for small files: the four arrays, or None
    when the directory is not a valid MNIST dataset."""
    arrays = []
    for name in IDX_NAMES:
        paths = [folder / name, folder / f"{name}.gz"]
        path = next((p for p in paths if p.is_file() and not p.is_symlink()), None)
        if path is None or path.stat().st_size > 64 * 2**20:
            return None
        blob = path.read_bytes()
        try:
            blob = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
        except Exception:  # noqa: BLE001 - any corrupt stream: not valid
            return None
        if len(blob) < 4:
            return None
        magic = int.from_bytes(blob[:4], "big")
        want = IMAGES_MAGIC if "images" in name else LABELS_MAGIC
        ndim = magic & 0xFF
        if magic != want or len(blob) < 4 + 4 * ndim:
            return None
        dims = struct.unpack(f">{ndim}I", blob[4 : 4 + 4 * ndim])
        if len(blob) != 4 + 4 * ndim + int(np.prod(dims, dtype=object)):
            return None
        arrays.append(np.frombuffer(blob, np.uint8, offset=4 + 4 * ndim).reshape(dims))
    x_tr, y_tr, x_te, y_te = arrays
    for x, y in ((x_tr, y_tr), (x_te, y_te)):
        if x.shape[1:] != (28, 28) or len(y) != len(x) or set(y.tolist()) != set(range(10)):
            return None
    return x_tr[:, None], y_tr.astype(np.int64), x_te[:, None], y_te.astype(np.int64)


def _idx_case(name: str, mutate: Callable[[Path, dict[str, bytes]], str], gz: bool = False) -> Case:
    """A valid MNIST directory, then ``mutate(folder, raw)`` -> the expectation."""

    def build(root: Path) -> Setup:
        folder, raw = _write_mnist(root, gz)
        expect = mutate(folder, raw)
        ref = naive_idx(folder) if expect != "refuse" else None
        assert expect != "load" or ref is not None, f"case {name!r} is not a valid file"
        return Setup("mnist", root, expect, ref)

    return Case("idx", name, build)


def _replace(
    name: str, blob: bytes, expect: str = "refuse", gz: bool = False
) -> Callable[..., str]:
    def mutate(folder: Path, raw: dict[str, bytes]) -> str:
        for old in (folder / name, folder / f"{name}.gz"):
            old.unlink(missing_ok=True)
        (folder / (name + (".gz" if gz else ""))).write_bytes(blob)
        return expect

    return mutate


def _sparse(name: str, head: bytes, size: int) -> Callable[..., str]:
    def mutate(folder: Path, raw: dict[str, bytes]) -> str:
        for old in (folder / name, folder / f"{name}.gz"):
            old.unlink(missing_ok=True)
        with open(folder / name, "wb") as f:
            f.write(head)
            f.truncate(size)
        return "refuse"

    return mutate


def _zeros_gz(nbytes: int, head: bytes = b"") -> bytes:
    block = 16 * 2**20
    member = gzip.compress(bytes(block), compresslevel=1, mtime=0)
    full, rest = divmod(nbytes, block)
    return gzip.compress(head, mtime=0) + member * full + gzip.compress(bytes(rest), mtime=0)


def idx_cases(seed: int = 0) -> list[Case]:
    """Hand-made header/size/gzip/file-kind cases, then seeded truncations and byte flips."""
    ti, tl = IDX_NAMES[0], IDX_NAMES[1]
    img = _mnist_arrays()[ti]
    hdr = lambda *d: struct.pack(f">I{len(d) - 1}I", *d)  # noqa: E731
    cases = [
        _idx_case("valid plain", lambda f, r: "load"),
        _idx_case("valid gz", lambda f, r: "load", gz=True),
        _idx_case(
            "dims overflow int64", _replace(ti, hdr(IMAGES_MAGIC, 1 << 22, 1 << 22, 1 << 20))
        ),
        _idx_case(
            "dims overflow int64 gz",
            _replace(ti, gzip.compress(hdr(IMAGES_MAGIC, 1 << 22, 1 << 22, 1 << 20)), gz=True),
        ),
        _idx_case(
            "dims max uint32", _replace(ti, hdr(IMAGES_MAGIC, 2**32 - 1, 2**32 - 1, 2**32 - 1))
        ),
        _idx_case("zero images", _replace(ti, hdr(IMAGES_MAGIC, 0, 28, 28))),
        _idx_case("28x29 images", _replace(ti, idx_bytes(np.zeros((20, 28, 29), np.uint8)))),
        _idx_case("0x0 images", _replace(ti, hdr(IMAGES_MAGIC, 20, 0, 0))),
        _idx_case(
            "one label short", _replace(tl, idx_bytes((np.arange(19) % 10).astype(np.uint8)))
        ),
        _idx_case(
            "one label extra", _replace(tl, idx_bytes((np.arange(21) % 10).astype(np.uint8)))
        ),
        _idx_case("label 10", _replace(tl, idx_bytes(np.full(20, 10, np.uint8)))),
        _idx_case(
            "label 255", _replace(tl, idx_bytes(np.r_[np.arange(19) % 10, 255].astype(np.uint8)))
        ),
        _idx_case("one class only", _replace(tl, idx_bytes(np.zeros(20, np.uint8)))),
        _idx_case("labels as images", _replace(tl, idx_bytes(img))),
        _idx_case("images as labels", _replace(ti, idx_bytes(np.arange(20, dtype=np.uint8)))),
        _idx_case("empty file", _replace(ti, b"")),
        _idx_case("header only", _replace(ti, hdr(IMAGES_MAGIC, 20, 28, 28))),
        _idx_case("magic only", _replace(ti, hdr(IMAGES_MAGIC))),
        _idx_case("trailing 1 MB", _replace(ti, idx_bytes(img) + bytes(2**20))),
        _idx_case(
            "gz trailing 200 MB", _replace(ti, _zeros_gz(200 * 2**20, idx_bytes(img)), gz=True)
        ),
        _idx_case(
            "gz bomb 7M images, consistent labels",
            lambda f, r: (
                _replace(ti, _zeros_gz(32 * 2**20, hdr(IMAGES_MAGIC, 7_000_000, 28, 28)), gz=True)(
                    f, r
                ),
                _replace(tl, _zeros_gz(7_000_000, hdr(LABELS_MAGIC, 7_000_000)), gz=True)(f, r),
            )[1],
        ),
        _idx_case(
            "gz bomb 7M images",
            _replace(ti, _zeros_gz(32 * 2**20, hdr(IMAGES_MAGIC, 7_000_000, 28, 28)), gz=True),
        ),
        _idx_case(
            "sparse 42 GB, consistent labels",
            lambda f, r: (
                _sparse(ti, hdr(IMAGES_MAGIC, 54_000_000, 28, 28), 16 + 54_000_000 * 784)(f, r),
                _sparse(tl, hdr(LABELS_MAGIC, 54_000_000), 8 + 54_000_000)(f, r),
            )[1],
        ),
        _idx_case(
            "sparse 40 GB inconsistent", _sparse(ti, hdr(IMAGES_MAGIC, 20, 28, 28), 40 * 2**30)
        ),
        _idx_case("gz multi-member valid", lambda f, r: _split_members(f, r, ti)),
        _idx_case(
            "double gzip", _replace(ti, gzip.compress(gzip.compress(idx_bytes(img))), gz=True)
        ),
        _idx_case("gz of nothing", _replace(ti, gzip.compress(b""), gz=True)),
        _idx_case("gz header only", _replace(ti, gzip.compress(idx_bytes(img))[:10], gz=True)),
        _idx_case("gz bad crc", _replace(ti, _bad_crc(idx_bytes(img)), gz=True)),
        _idx_case(
            "gz garbage after", _replace(ti, gzip.compress(idx_bytes(img)) + b"garbage!", gz=True)
        ),
        _idx_case("a directory", lambda f, r: _kind(f, ti, "dir")),
        _idx_case("a fifo", lambda f, r: _kind(f, ti, "fifo")),
        _idx_case("link to /dev/zero", lambda f, r: _kind(f, ti, "zero")),
        _idx_case("dangling link", lambda f, r: _kind(f, ti, "dangling")),
        _idx_case("link loop", lambda f, r: _kind(f, ti, "loop")),
    ]
    for magic in (
        0x00000800,
        0x00000802,
        0x00000804,
        0x000008FF,
        0x00000903,
        0x00000D03,
        0x08030000,
    ):
        cases.append(
            _idx_case(
                f"magic {magic:#010x}", _replace(ti, struct.pack(">I", magic) + idx_bytes(img)[4:])
            )
        )
    rng = np.random.default_rng(seed)
    for i in range(20):
        name = IDX_NAMES[int(rng.integers(4))]
        gz = bool(rng.integers(2))
        cut = int(rng.integers(0, 60))
        label = f"truncated {name} {'gz ' if gz else ''}#{i}"
        cases.append(_idx_case(label, _truncate(name, cut, gz, seed, i), gz=gz))
    for i in range(15):
        name = IDX_NAMES[int(rng.integers(4))]
        gz = bool(rng.integers(2))
        cases.append(
            _idx_case(
                f"flipped bytes {name} {'gz ' if gz else ''}#{i}", _flip(name, gz, seed, i), gz=gz
            )
        )
    for i in range(5):
        name = IDX_NAMES[int(rng.integers(4))]
        blob = rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes()
        cases.append(_idx_case(f"random bytes {name} #{i}", _replace(name, blob, "either")))
    return cases


def _split_members(folder: Path, raw: dict[str, bytes], name: str) -> str:
    blob = raw[name]
    (folder / f"{name}.gz").unlink(missing_ok=True)
    (folder / name).unlink(missing_ok=True)
    parts = [gzip.compress(blob[i : i + 999], mtime=0) for i in range(0, len(blob), 999)]
    (folder / f"{name}.gz").write_bytes(b"".join(parts))
    return "load"


def _bad_crc(blob: bytes) -> bytes:
    gz = bytearray(gzip.compress(blob, mtime=0))
    gz[-8] ^= 0xFF
    return bytes(gz)


def _kind(folder: Path, name: str, kind: str) -> str:
    path = folder / name
    for old in (path, folder / f"{name}.gz"):
        old.unlink(missing_ok=True)
    if kind == "dir":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    elif kind == "dangling":
        path.symlink_to(folder / "nowhere")
    else:
        path.symlink_to(path)
    return "refuse"


def _truncate(name: str, cut: int, gz: bool, seed: int, i: int) -> Callable[..., str]:
    """Cut the file at ``cut`` (< 30: inside the headers) or at a random later point; the
    draws are the case's own (seed, i), so that a case is the same built alone."""

    def mutate(folder: Path, raw: dict[str, bytes]) -> str:
        rng = np.random.default_rng([seed, i, 1])
        path = folder / (name + (".gz" if gz else ""))
        blob = path.read_bytes()
        low = min(cut, 30, len(blob) - 1)
        keep = low if cut < 30 else int(rng.integers(low, len(blob)))
        path.write_bytes(blob[:keep])
        return "refuse"

    return mutate


def _flip(name: str, gz: bool, seed: int, i: int) -> Callable[..., str]:
    def mutate(folder: Path, raw: dict[str, bytes]) -> str:
        rng = np.random.default_rng([seed, i, 2])
        path = folder / (name + (".gz" if gz else ""))
        blob = bytearray(path.read_bytes())
        for _ in range(int(rng.integers(1, 4))):
            # mostly the header (the interesting part), sometimes anywhere
            at = int(rng.integers(0, 24)) if rng.random() < 0.7 else int(rng.integers(len(blob)))
            blob[min(at, len(blob) - 1)] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(blob))
        return "either"

    return mutate


# ---------------------------------------------------------------- CIFAR-10


def _batch(n: int = 100, labels: Any = None, data: Any = None, **extra: Any) -> dict[bytes, Any]:
    return {
        b"batch_label": b"batch",
        b"labels": [i % 10 for i in range(n)] if labels is None else labels,
        b"data": np.arange(n * 3072, dtype=np.int64).reshape(n, 3072).astype(np.uint8)
        if data is None
        else data,
        **extra,
    }


def _write_cifar(
    root: Path, batch1: bytes | None = None, meta: bytes | None = None, protocol: int = 2
) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR_BATCHES:
        (folder / name).write_bytes(pickle.dumps(_batch(), protocol=protocol))
    names = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    (folder / "batches.meta").write_bytes(
        meta if meta is not None else pickle.dumps(names, protocol=protocol)
    )
    if batch1 is not None:
        (folder / "data_batch_1").write_bytes(batch1)
    return folder


def _cifar_reference() -> tuple[np.ndarray, ...]:
    b = _batch()
    x = b[b"data"].reshape(-1, 3, 32, 32)
    y = np.asarray(b[b"labels"], np.int64)
    return np.concatenate([x] * 5), np.concatenate([y] * 5), x, y


def _cifar_case(
    name: str,
    batch1: Any = None,
    expect: str = "refuse",
    *,
    raw: bytes | None = None,
    meta: Any = None,
    protocol: int = 2,
) -> Case:
    def build(root: Path) -> Setup:
        blob = (
            raw if raw is not None else None if batch1 is None else pickle.dumps(batch1, protocol=2)
        )
        meta_blob = (
            None
            if meta is None
            else meta
            if isinstance(meta, bytes)
            else pickle.dumps(meta, protocol=2)
        )
        _write_cifar(root, blob, meta_blob, protocol)
        return Setup("cifar10", root, expect, _cifar_reference() if expect == "load" else None)

    return Case("cifar", name, build)


def _nest(depth: int) -> list[Any]:
    """``L_depth`` with ``L_i = [L_(i-1), L_(i-1)]``: 2**depth leaves, linear to pickle."""
    node: list[Any] = [0]
    for _ in range(depth):
        node = [node, node]
    return node


def _tuple_bomb(depth: int, frozen: bool = False) -> bytes:
    """The pickle of ``{T_depth: 1}`` (or ``{frozenset([T_depth]): 1}``) with
    ``T_i = (T_(i-1), T_(i-1))``, written opcode by opcode: building it in Python would
    hash the key, which is the bomb."""
    ops = bytearray(b"\x80\x04}q\x00" + (b"(" if frozen else b"") + b"K\x00\x85q\x01")
    for i in range(1, depth + 1):
        # POP the previous level (kept in the memo), build the next from two references
        ops += b"0h" + bytes([i]) + b"h" + bytes([i]) + b"\x86q" + bytes([i + 1])
    ops += (b"\x91" if frozen else b"") + b"K\x01s."
    return bytes(ops)


class _Reduce:
    """Pickles as ``func(*args)``."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _proto(*ops: bytes) -> bytes:
    return b"\x80\x02" + b"".join(ops) + b"."


def cifar_cases(seed: int = 0) -> list[Case]:
    """Labels structures, data shapes and dtypes, code-running pickles, meta files, opcode
    tricks, then seeded truncations and byte flips of a valid batch."""
    import builtins
    import functools
    import os as os_

    zeros = np.zeros((100, 3072), np.uint8)
    recursive: list[Any] = []
    recursive.append(recursive)
    cases = [
        _cifar_case("valid protocol 2", expect="load"),
        _cifar_case("valid protocol 4", expect="load", protocol=4),
        _cifar_case("valid protocol 5", expect="load", protocol=5),
        _cifar_case(
            "labels as int32 array", _batch(labels=np.arange(100, dtype=np.int32) % 10), "load"
        ),
        _cifar_case("labels as tuple", _batch(labels=tuple(i % 10 for i in range(100))), "load"),
    ]
    for depth in (5, 20, 40, 60):
        cases.append(_cifar_case(f"labels nested bomb depth {depth}", _batch(labels=_nest(depth))))
    labels_cases: dict[str, Any] = {
        "labels nested unshared": [[i % 10] for i in range(100)],
        "labels floats 0.5": [0.5] * 100,
        "labels floats integral": [float(i % 10) for i in range(100)],
        "labels bools": [True, False] * 50,
        "labels strings": [str(i % 10) for i in range(100)],
        "labels bytes": bytes(range(10)) * 10,
        "labels None": None,
        "labels negative": [-1] + [i % 10 for i in range(99)],
        "labels 10": [10] + [i % 10 for i in range(99)],
        "labels 2**64": [2**64] + [i % 10 for i in range(99)],
        "labels -2**70": [-(2**70)] + [i % 10 for i in range(99)],
        "labels one short": [i % 10 for i in range(99)],
        "labels one extra": [i % 10 for i in range(101)],
        "labels empty": [],
        "labels dict": {i: i % 10 for i in range(100)},
        "labels set": set(range(10)),
        "labels float array": np.arange(100, dtype=np.float64) % 10,
        "labels uint64 huge": np.full(100, 2**63 + 5, np.uint64),
        "labels 2-d array": (np.arange(100) % 10).reshape(10, 10),
        "labels bool array": np.ones(100, bool),
        "labels object array": np.array([i % 10 for i in range(100)], dtype=object),
        "labels recursive list": recursive,
        "labels complex": [1j] * 100,
    }
    for name, labels in labels_cases.items():
        batch = _batch(labels=labels) if labels is not None else {**_batch(), b"labels": None}
        cases.append(_cifar_case(name, batch))
    data_cases: dict[str, Any] = {
        "data float32": zeros.astype(np.float32),
        "data int64": zeros.astype(np.int64),
        "data object": zeros.astype(object),
        "data (100, 3071)": np.zeros((100, 3071), np.uint8),
        "data 3-d": np.zeros((100, 3, 1024), np.uint8),
        "data 1-d": np.zeros(100 * 3072, np.uint8),
        "data list": [[0] * 3072] * 2,
        "data bytes": bytes(100 * 3072),
        "data 0 images": np.zeros((0, 3072), np.uint8),
        "data shared list bomb": _nest(30),
    }
    for name, data in data_cases.items():
        cases.append(_cifar_case(name, _batch(data=data)))
    cases += [
        _cifar_case(
            "data fortran order", _batch(data=np.asfortranarray(_batch()[b"data"])), "load"
        ),
        _cifar_case("no data key", {b"labels": [0]}),
        _cifar_case("no labels key", {b"data": zeros}),
        _cifar_case("a list, not a dict", [1, 2, 3]),
        _cifar_case("tuple key hash bomb", raw=_tuple_bomb(40)),
        _cifar_case("frozenset key bomb", raw=_tuple_bomb(30, frozen=True)),
        _cifar_case("int keys", {1: zeros, 2: [0] * 100}),
        _cifar_case("exec os.system", {b"data": _Reduce(os_.system, "true")}),
        _cifar_case("exec builtins.eval", {b"data": _Reduce(builtins.eval, "1+1")}),
        _cifar_case("exec functools.partial", {b"data": _Reduce(functools.partial, print)}),
        _cifar_case("exec getattr", {b"data": _Reduce(getattr, b"x", "decode")}),
        _cifar_case("numpy.load", {b"data": _Reduce(np.load, "/etc/passwd")}),
        _cifar_case(
            "codecs rot13", {b"data": _Reduce(__import__("_codecs").encode, "abc", "rot13")}
        ),
        _cifar_case("_reconstruct huge shape", raw=_reconstruct_pickle((2**40,))),
        _cifar_case(
            "_reconstruct of a subclass", raw=_reconstruct_pickle((0,), cls=b"numpy\nmatrix")
        ),
        _cifar_case("setstate short buffer", raw=_setstate_pickle(shape=(10**9, 3072), nbytes=16)),
        _cifar_case(
            "setstate huge shape 0 bytes", raw=_setstate_pickle(shape=(2**62, 2), nbytes=0)
        ),
        _cifar_case("INST opcode", raw=_proto(b"(", b"ios\nsystem\n")),
        _cifar_case("OBJ opcode", raw=_proto(b"(cos\nsystem\nU\x04trueo")),
        _cifar_case("NEWOBJ opcode", raw=_proto(b"cbuiltins\nobject\n)\x81")),
        _cifar_case("EXT1 opcode", raw=_proto(b"\x82\x01")),
        _cifar_case("persistent id", raw=_proto(b"U\x01xQ")),
        _cifar_case("DUP of a list", raw=_proto(b"]2\x86")),
        _cifar_case("GET before PUT", raw=_proto(b"h\x05")),
        _cifar_case(
            "BINBYTES8 declaring 2**62", raw=b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"xx."
        ),
        _cifar_case("BINUNICODE 2**31", raw=_proto(b"X" + struct.pack("<I", 2**31) + b"ab")),
        _cifar_case("out-of-band buffer", raw=b"\x80\x05\x97."),
        _cifar_case("empty file", raw=b""),
        _cifar_case("valid protocol 0 text", expect="load", protocol=0),
        Case("cifar", "sparse 40 GB batch", _sparse_cifar),
        _cifar_case("meta 9 names", meta={b"label_names": [b"x"] * 9}),
        _cifar_case("meta names nested bomb", meta={b"label_names": [_nest(30)] * 10}),
        _cifar_case("meta names huge strings", meta={b"label_names": [b"x" * 10**6] * 10}),
        _cifar_case("meta names ints", meta={b"label_names": list(range(10))}),
        _cifar_case("meta a list", meta=[b"a"] * 10),
        _cifar_case("meta empty file", meta=b""),
        _cifar_case("meta exec", meta={b"label_names": _Reduce(os_.system, "true")}),
    ]
    good = pickle.dumps(_batch(), protocol=2)
    rng = np.random.default_rng(seed + 1)
    for _ in range(12):
        cut = int(rng.integers(0, len(good)))
        cases.append(_cifar_case(f"truncated at {cut}", raw=good[:cut]))
    for i in range(12):
        blob = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            # the pickle's structure sits before and after the 307200-byte data string
            at = (
                int(rng.integers(0, 120))
                if rng.random() < 0.5
                else len(blob) - int(rng.integers(1, 500))
            )
            blob[at] ^= 1 << int(rng.integers(8))
        # no safe independent unpickler to compare with: either outcome, if clean
        cases.append(_cifar_case(f"flipped bytes #{i}", raw=bytes(blob), expect="any"))
    return cases


def _sparse_cifar(root: Path) -> Setup:
    folder = _write_cifar(root)
    with open(folder / "data_batch_1", "r+b") as f:
        f.truncate(40 * 2**30)  # sparse: no disk used
    return Setup("cifar10", root, "refuse")


def _reconstruct_pickle(shape: tuple[int, ...], cls: bytes = b"numpy\nndarray") -> bytes:
    shape_ops = b"(" + b"".join(b"\x8a\x08" + struct.pack("<q", d) for d in shape) + b"t"
    return _proto(
        b"cnumpy.core.multiarray\n_reconstruct\n(c" + cls + b"\n" + shape_ops + b"U\x01btR"
    )


def _setstate_pickle(shape: tuple[int, ...], nbytes: int) -> bytes:
    shape_ops = b"(" + b"".join(b"\x8a\x08" + struct.pack("<q", d) for d in shape) + b"t"
    minus_one = b"J\xff\xff\xff\xff"
    dtype = b"cnumpy\ndtype\n(U\x02u1K\x00K\x01tR(K\x03U\x01|NNN" + minus_one * 2 + b"K\x00tb"
    state = (
        b"(K\x01" + shape_ops + dtype + b"\x89T" + struct.pack("<i", nbytes) + bytes(nbytes) + b"tb"
    )
    body = b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(K\x00tU\x01btR" + state
    return _proto(b"}(U\x04data" + body + b"U\x06labels]u")


# ---------------------------------------------------------------- mnist-5k CSV


def _csv_table(n_per_class: int = 3) -> np.ndarray:
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(10), n_per_class)
    return np.concatenate([rng.integers(0, 256, (labels.size, 784)), labels[:, None]], axis=1)


def _csv_text(table: np.ndarray, sep: str = ",", end: str = "\n") -> bytes:
    return (end.join(sep.join(str(v) for v in row) for row in table) + end).encode()


def _csv_case(
    name: str,
    blob: bytes | Callable[[], bytes],
    expect: str = "refuse",
    gz: bool = True,
    file_name: str | None = None,
) -> Case:
    def build(root: Path) -> Setup:
        root.mkdir(parents=True, exist_ok=True)
        file = file_name or "mnist_5k.csv" + (".gz" if gz else "")
        text = blob() if callable(blob) else blob
        (root / file).write_bytes(gzip.compress(text, 1, mtime=0) if gz else text)
        ref = naive_csv(text) if expect != "refuse" else None
        assert expect != "load" or ref is not None, f"case {name!r} is not a valid file"
        return Setup("mnist-5k", root, expect, ref)

    return Case("csv", name, build)


def naive_csv(text: bytes) -> tuple[np.ndarray, ...] | None:
    """An independent parser of the MNIST 5k CSV (Python's int on every field, blank lines
    skipped): the split arrays, or None when it is not a valid file."""
    rows = []
    for line in text.split(b"\n"):
        if not line.strip():
            continue
        try:
            rows.append([int(v.decode("ascii")) for v in line.split(b",")])
        except (ValueError, UnicodeDecodeError):
            return None
    if not rows or any(len(r) != 785 for r in rows):
        return None
    table = np.array(rows, dtype=object)
    if table.min() < -(2**63) or table.max() >= 2**63:
        return None
    table = table.astype(np.int64)
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or set(labels.tolist()) != set(range(10)):
        return None
    import torch

    from featavg.data import mnist5k  # the split's indices: its own rule, tested elsewhere

    tr, te = (i.numpy() for i in mnist5k.split_balanced(torch.from_numpy(labels), 0))
    x = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
    return x[tr], labels[tr], x[te], labels[te]


def csv_cases(seed: int = 0) -> list[Case]:
    """Bombs, sizes, separators, values out of range, seeded corruptions of a valid CSV."""
    t = _csv_table()
    good = _csv_text(t)
    bad_pixel = t.copy()
    bad_pixel[0, 5] = 256
    neg_pixel = t.copy()
    neg_pixel[3, 0] = -1
    bad_label = t.copy()
    bad_label[0, 784] = 10
    no_nine = t[t[:, 784] != 9]
    cases = [
        _csv_case("valid gz", good, "load"),
        _csv_case("valid plain", good, "load", gz=False),
        _csv_case("valid CRLF", _csv_text(t, end="\r\n"), "load"),
        Case("csv", "gz bomb 200 MB zeros", _bomb_csv),
        _csv_case("empty", b""),
        _csv_case("only newlines", b"\n" * 1000),
        _csv_case("3 columns", b"1,2,3\n4,5,6\n"),
        _csv_case("pixel 256", _csv_text(bad_pixel)),
        _csv_case("pixel -1", _csv_text(neg_pixel)),
        _csv_case("label 10", _csv_text(bad_label)),
        _csv_case("no class 9", _csv_text(no_nine)),
        _csv_case("semicolons", _csv_text(t, sep=";")),
        _csv_case("floats", good.replace(b",0,", b",0.5,", 1)),
        _csv_case("huge int", good.replace(b",0,", b",99999999999999999999999,", 1)),
        _csv_case("nan", good.replace(b",0,", b",nan,", 1)),
        _csv_case("ragged row", good + b"1,2\n"),
        _csv_case("BOM", b"\xef\xbb\xbf" + good),
        _csv_case("NUL bytes", good.replace(b",0,", b",\x00,", 1)),
        _csv_case("one 80 MB line", lambda: b"0," * (40 * 2**20), gz=True),
        _csv_case("plain 80 MB", lambda: b"0," * (40 * 2**20), gz=False),
        _csv_case("truncated gz", gzip.compress(good)[:-30], gz=False),
        _csv_case(
            "gz name, plain text inside",
            good,
            "load",
            gz=False,
            file_name="mnist_5k.csv.gz",
        ),
    ]
    rng = np.random.default_rng(seed + 2)
    for i in range(10):
        blob = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            blob[int(rng.integers(len(blob)))] = int(rng.choice(list(b"0123456789,-\n .ex")))
        cases.append(_csv_case(f"mutated text #{i}", bytes(blob), "either"))
    return cases


def _bomb_csv(root: Path) -> Setup:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mnist_5k.csv.gz").write_bytes(_zeros_gz(200 * 2**20))
    return Setup("mnist-5k", root, "refuse")


def all_cases(seed: int = 0) -> list[Case]:
    """Every case of every surface."""
    return idx_cases(seed) + cifar_cases(seed) + csv_cases(seed)


# ---------------------------------------------------------------- the harness


def _load_and_judge(setup: Setup) -> dict[str, Any]:
    """In the child: load, and say what happened (as JSON-able facts)."""
    from featavg.config import ConfigError
    from featavg.data.images import load_dataset

    try:
        ds = load_dataset(setup.dataset, setup.data_dir, stand_in=False)
    except ConfigError as err:
        return {"outcome": "refused", "message": str(err)}
    except BaseException as err:  # noqa: BLE001 - reported as a traceback
        tb = traceback.format_exception_only(type(err), err)[-1].strip()
        return {"outcome": "traceback", "message": tb[:300]}
    arrays = [a.numpy() for a in (ds.train.x, ds.train.y, ds.test.x, ds.test.y)]
    return {
        "outcome": "loaded",
        "digest": _digest(arrays),
        "shapes": [list(a.shape) for a in arrays],
    }


def _digest(arrays: list[np.ndarray]) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        h.update(repr((a.shape, str(a.dtype))).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def run_case(setup: Setup, timeout: float) -> tuple[dict[str, Any], float, int]:
    """Load ``setup`` in a forked child (address space capped, killed after ``timeout``):
    (the child's facts, or {"outcome": "hang"}; seconds; peak RSS growth in bytes)."""
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    read_end, write_end = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        try:
            cap = _vm_size() + CAP_BYTES
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
            facts = _load_and_judge(setup)
        except BaseException as err:  # noqa: BLE001
            facts = {"outcome": "traceback", "message": f"{type(err).__name__}: {err}"[:300]}
        with os.fdopen(write_end, "w") as out:
            out.write(json.dumps(facts))
        os._exit(0)
    os.close(write_end)
    chunks = []
    hang = False
    with os.fdopen(read_end, "rb") as inp:
        while True:
            left = timeout - (time.perf_counter() - start)
            if left <= 0 or not select.select([inp], [], [], left)[0]:
                hang = True
                break
            chunk = os.read(inp.fileno(), 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    if hang:
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    growth = max(0, usage.ru_maxrss * 1024 - base_rss)
    if hang:
        return {"outcome": "hang"}, seconds, growth
    try:
        facts = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        facts = {}
    if "outcome" not in facts:
        facts = {"outcome": "traceback", "message": f"child died (status {status})"}
    return facts, seconds, growth


def judge(setup: Setup, facts: dict[str, Any], growth: int) -> tuple[str, str]:
    """The verdict (ok, traceback, hang, runaway, wrong) and a detail line."""
    outcome = facts["outcome"]
    if outcome == "hang":
        return "hang", ""
    if growth > RUNAWAY_BYTES:
        return "runaway", f"peak RSS +{growth / 2**20:.0f} MiB"
    if outcome == "traceback":
        return "traceback", facts.get("message", "")
    expect = setup.expect
    if expect == "either":  # the naive parser decides
        expect = "load" if setup.reference is not None else "refuse"
    if outcome == "refused":
        msg = facts["message"]
        if "\n" in msg or not msg.isprintable() or len(msg) > MAX_MESSAGE:
            return "wrong", f"not one printable line: {msg[:120]!r}"
        if str(setup.data_dir) not in msg:
            return "wrong", f"the message names no file of the case: {msg[:160]}"
        if expect == "load":
            return "wrong", f"refused a valid file: {msg[:160]}"
        return "ok", msg[:160]
    # loaded
    if expect == "refuse":
        return "wrong", f"loaded what must be refused: {facts['shapes']}"
    if setup.reference is not None and facts["digest"] != _digest(list(setup.reference)):
        return "wrong", f"loaded other arrays than the file holds: {facts['shapes']}"
    return "ok", f"loaded {facts['shapes']}"
