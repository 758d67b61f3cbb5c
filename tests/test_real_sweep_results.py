"""A real-data sweep's results are results only: timings are provenance, never a column of
``sweep.csv`` or a panel of ``sweep.png``, so the same sweep computed twice gives the same
``sweep.csv`` byte for byte (once ``attack_wall_s_*`` was a summary metric, in both)."""

from __future__ import annotations

import re

import pytest

from featavg.api import run_sweep
from featavg.cli import main
from featavg.config import ConfigError
from featavg.experiments.registry import EXPERIMENTS
from featavg.experiments.summary import metric_keys

EXP = "mnist-robustness"
TINY = {
    **EXPERIMENTS[EXP].tiny,
    "train": {**EXPERIMENTS[EXP].tiny["train"], "dataset": "mnist-5k", "model": "mlp"},
}
GRID = {"grouping": ["parity", "halves"]}
TIMING = re.compile(r"(^|_)attack_s_|attack_wall_s|wall_s($|_)|(^|_)seconds($|_)")


def _sweep(root):
    return run_sweep(EXP, GRID, overrides=TINY, root=root, progress=False, device="cpu")


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """The same two-cell sweep computed twice, in two run stores (nothing shared)."""
    return [_sweep(tmp_path_factory.mktemp(f"store{i}")) for i in range(2)]


@pytest.mark.slow
def test_timings_are_provenance_never_results(sweeps):
    sweep = sweeps[0]
    header = (sweep.directory / "sweep.csv").read_text().splitlines()[0].split(",")
    assert not [c for c in header if TIMING.search(c)], header
    for cell in sweep.cells:
        keys = metric_keys(cell.summary)
        assert keys and not [k for k in keys if TIMING.search(k)], keys
        timings = cell.summary["provenance"]["timings_s"]
        assert timings and all(k.startswith("attack_s_") for k in timings), timings


@pytest.mark.slow
def test_the_same_real_data_sweep_twice_gives_the_same_table(sweeps):
    first, second = ((s.directory / "sweep.csv").read_bytes() for s in sweeps)
    assert first == second


@pytest.mark.slow
def test_a_timing_cannot_be_plotted(sweeps, capsys):
    """``sweep.png`` plots only results: a timing is not one of them."""
    from featavg.sweep.results import sweep_figure

    sweep = sweeps[0]
    (key, *_) = sweep.cells[0].summary["provenance"]["timings_s"]
    with pytest.raises(ConfigError, match=rf"--metric {key}: not a scalar result"):
        sweep_figure(EXP, GRID, sweep.cells, [key])
    argv = ["sweep", EXP, "--grid", "grouping=parity,halves", "--preset", "tiny", "--quiet",
            "--set", "train.dataset=mnist-5k", "--set", "train.model=mlp",
            "--out", str(sweep.directory), "--metric", key]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--metric {key}" in err, err


class _Exec:
    """Unpickling this would create ``path`` (a stand-in for arbitrary code)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _bad_mnist(root):
    """An MNIST directory whose training images' idx header declares 2^22 x 2^22 x 2^20
    images (the product wraps to 0 in int64: once a reshape traceback)."""
    import struct

    from featavg.data import idx
    from test_image_loaders import fake_mnist

    folder = root / "MNIST" / "raw"
    fake_mnist(folder, n_train=60, n_test=20)
    head = struct.pack(">4I", idx.IMAGES_MAGIC, 1 << 22, 1 << 22, 1 << 20)
    (folder / "train-images-idx3-ubyte").write_bytes(head)
    return root


def _bad_cifar(root, marker):
    """A CIFAR-10 directory whose first batch runs code when unpickled."""
    import pickle

    from featavg.data import cifar
    from test_image_loaders import fake_cifar

    fake_cifar(root, n=30)
    path = root / cifar.FOLDER / cifar.TRAIN_BATCHES[0]
    path.write_bytes(pickle.dumps({b"labels": _Exec(str(marker)), b"data": b""}, protocol=2))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_a_cell_on_hostile_files_fails_alone_and_the_sweep_completes(dataset, tmp_path):
    """Once: the overflowing idx header raised a traceback out of the sweep, and the exec
    pickle stopped it with exit 2 after the other cells, without sweep.csv."""
    from test_image_loaders import fake_cifar, fake_mnist

    good, marker = tmp_path / "good", tmp_path / "pwned"
    if dataset == "mnist":
        fake_mnist(good / "MNIST" / "raw", n_train=60, n_test=20)
        bad, needle = _bad_mnist(tmp_path / "bad"), "train-images-idx3-ubyte"
        exp = "mnist-robustness"
    else:
        fake_cifar(good, n=30)
        bad, needle = _bad_cifar(tmp_path / "bad", marker), "data_batch_1"
        exp = "cifar10-robustness"
    base = {
        "seeds": 1,
        "train": {"dataset": dataset, "model": "mlp", "train_size": None, "test_size": None,
                  "sgd": {"epochs": 1}},
        "attack": {"points": None, "radii": [0.0, 1.0]},
    }  # fmt: skip
    grid = {"train.data_dir": [str(good), str(bad)]}
    sweep = run_sweep(exp, grid, overrides=base, root=tmp_path / "runs", progress=False)
    ok, failed = sweep.cells
    assert "status" not in ok.summary and ok.summary["points_attacked"] > 0
    assert failed.summary["status"] == "failed" and needle in failed.summary["reason"]
    assert "\n" not in failed.summary["reason"] and not failed.directory.exists()
    table = (sweep.directory / "sweep.csv").read_text()
    assert "failed" in table and needle in table
    assert not marker.exists()


@pytest.mark.slow
def test_the_subset_label_is_on_the_figure_the_line_and_the_result(sweeps, capsys):
    """A sweep on the 5000-digit subset says so wherever its results appear."""
    from featavg.sweep.results import gap_sweep_figure, sweep_figure

    sweep = sweeps[0]
    label = sweep.data_label
    assert label == sweep.cells[0].summary["stand_in_label"] and "5000-digit subset" in label
    assert label in gap_sweep_figure(EXP, sweep.cells).axes[0].get_title()
    assert label in sweep_figure(EXP, GRID, sweep.cells, ["clean_acc_binary"])._suptitle.get_text()
    assert label in repr(sweep)
    argv = ["sweep", EXP, "--grid", "grouping=parity,halves", "--preset", "tiny", "--quiet",
            "--set", "train.dataset=mnist-5k", "--set", "train.model=mlp",
            "--out", str(sweep.directory), "--force"]  # fmt: skip
    assert main(argv) == 0
    assert f"{EXP} on {label}: 2 cells" in capsys.readouterr().out
