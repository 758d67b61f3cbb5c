"""What featavg replaces and what it leaves behind: ``--force`` recomputes, it never replaces
a directory of another kind (a trained model, a probe, a run); a refusal of a model
directory names the flag that works for the command; a refused command leaves nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import featavg
from featavg.cli import main

PROBE_SMALL = ["--layer", "net.fc", "--train-size", "200", "--test-size", "100",
               "--probe-points", "100", "--quiet"]  # fmt: skip
SYNTHETIC_TINY = ["--preset", "tiny", "--quiet"]


def _files(directory: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``directory`` (hidden ones included)."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A finished featavg trained-model directory (an MLP, one epoch on 200 real digits)."""
    root = tmp_path_factory.mktemp("models")
    model = featavg.train(
        root=root, device="cpu", model="mlp", dataset="mnist-5k", train_size=200,
        test_size=100, sgd__epochs=1,
    )  # fmt: skip
    return Path(model.checkpoint).parent


@pytest.fixture(scope="module")
def probe_dir(model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("probe") / "probe"
    argv = ["probe", "--checkpoint", str(model_dir / "model.pt"), *PROBE_SMALL, "--out", str(out)]
    assert main(argv) == 0
    return out


def _refused_as_another_kind(capsys, kind: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"holds a featavg {kind} directory" in err and "never replaces" in err, err


def test_probe_force_into_the_model_directory_refuses_and_keeps_the_model(
    model_dir, tmp_path, capsys
):
    """Once: ``featavg probe --out <the model's directory> --force`` deleted the model
    being probed."""
    before = _files(model_dir)
    argv = ["probe", "--checkpoint", str(model_dir / "model.pt"), *PROBE_SMALL]
    for force in (["--force"], []):
        assert main([*argv, "--out", str(model_dir), *force]) == 2
        _refused_as_another_kind(capsys, "trained model")
        assert _files(model_dir) == before


def test_a_run_never_replaces_a_model_or_a_probe_directory(model_dir, probe_dir, capsys):
    for directory, kind in ((model_dir, "trained model"), (probe_dir, "probe")):
        before = _files(directory)
        for exp in (["synthetic-alignment", *SYNTHETIC_TINY],
                    ["mnist-robustness", "--preset", "tiny", "--set", "train.model=mlp",
                     "--set", "train.dataset=mnist-5k", "--quiet"]):  # fmt: skip
            assert main(["run", *exp, "--out", str(directory), "--force"]) == 2
            _refused_as_another_kind(capsys, kind)
            assert _files(directory) == before


def test_a_probe_never_replaces_a_run_directory(model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", "synthetic-alignment", *SYNTHETIC_TINY, "--out", str(run)]) == 0
    capsys.readouterr()
    before = _files(run)
    argv = ["probe", "--checkpoint", str(model_dir / "model.pt"), *PROBE_SMALL]
    assert main([*argv, "--out", str(run), "--force"]) == 2
    _refused_as_another_kind(capsys, "run")
    assert _files(run) == before


def test_a_sweep_never_uses_a_model_or_a_probe_directory(model_dir, probe_dir, capsys):
    for directory in (model_dir, probe_dir):
        before = _files(directory)
        argv = ["sweep", "synthetic-alignment", *SYNTHETIC_TINY, "--grid", "seed=0,1"]
        assert main([*argv, "--out", str(directory), "--force"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "did not write" in err, err
        assert _files(directory) == before


def test_a_model_directory_refusal_names_the_flag_of_the_command(model_dir, tmp_path, capsys):
    """``featavg train`` has ``--root``, no ``--out``: a model directory it may not replace
    (files featavg did not write beside a damaged model) is refused naming ``--root``, not
    'choose another directory'."""
    root = tmp_path / "root"
    (root / "models").mkdir(parents=True)
    mine = root / "models" / model_dir.name
    mine.mkdir()
    for f in model_dir.iterdir():
        if f.name != "model.pt":  # damaged: its manifest lists a model.pt that is gone
            mine.joinpath(f.name).write_bytes(f.read_bytes())
    mine.joinpath("notes.txt").write_text("mine")
    before = _files(mine)
    argv = ["train", "--model", "mlp", "--epochs", "1", "--data", "mnist-5k", "--set",
            "train_size=200", "--set", "test_size=100", "--quiet", "--root", str(root)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "notes.txt" in err, err
    assert "another --root" in err and "choose another directory" not in err, err
    assert _files(mine) == before


def _mnist_with_label(root: Path, label: int) -> Path:
    """An MNIST directory of 60 + 20 random images whose first training label is ``label``."""
    from image_file_cases import idx_bytes

    rng = np.random.default_rng(0)
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    for prefix, n in (("train", 60), ("t10k", 20)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        if prefix == "train":
            labels[0] = label
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return root


TRAIN_ON = ["train", "--data", "mnist", "--model", "mlp", "--epochs", "1", "--data-dir", "{data}"]
RUN_ON = ["run", "mnist-robustness", "--set", "train.dataset=mnist", "--set", "train.model=mlp",
          "--set", "train.sgd.epochs=1", "--set=train.data_dir={data}"]  # fmt: skip


@pytest.mark.parametrize("argv", [TRAIN_ON, RUN_ON], ids=["train", "run"])
def test_a_data_error_leaves_nothing_behind(argv, tmp_path, monkeypatch, capsys):
    """A label out of range is found when the files are read, after the config was
    accepted: ``featavg run`` once exited 2 leaving an empty ``runs/`` behind."""
    data = _mnist_with_label(tmp_path / "data", 200)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main([*(a.format(data=data) for a in argv), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "label 200" in err, err
    assert list(work.iterdir()) == []
