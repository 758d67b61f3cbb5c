"""What fuzzing ``featavg probe`` options and the real-data configs found
(scripts/fuzz_probe_and_configs.py), each pinned as a one-line refusal naming what was wrong."""

from __future__ import annotations

import pytest
import torch

from featavg.cli import main


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["probe", "--layer=--", "--grad-points=--"], "--grad-points"),
        (["probe", "--layer", "fc", "--out=--", "--robust-eps=--"], "--robust-eps"),
        (["probe", "--layer", "fc", "--device=--"], "device"),
        (["show-config", "mnist-robustness", "--preset=--"], "--preset"),
        (["run", "mnist-robustness", "--set=--"], "--set"),
        (["run", "mnist-robustness", "--seeds=--"], "--seeds"),
    ],
)
def test_an_option_given_as_dash_dash_is_that_value(argv, flag, tmp_path, monkeypatch, capsys):
    """Once: ``--OPTION=--`` reached the command as an empty list (Python 3.11's argparse
    drops a '--' value): tracebacks (TypeError, AttributeError), or a ``--grouping=--``
    silently ignored. Now '--' is the value, refused by the option's own check."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("featavg: error: "), err
    assert flag in err or flag.removeprefix("--").replace("-", "_") in err, err
    assert "'--'" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("how", "named", "allowed"),
    [(["--set", ".=1"], "'': unknown key", "train, attack"),
     (["--set", "train..lr=1"], "train.'': unknown key", "dataset, data_dir"),
     (["--config", "padded.yaml"], "'seed ': unknown key", "train, attack")],
)  # fmt: skip
def test_an_empty_or_padded_key_is_shown_quoted(how, named, allowed, tmp_path, monkeypatch, capsys):
    """Once: ``featavg: error: : unknown key; allowed: ...`` named nothing (an empty key
    from ``--set .=1`` or ``""`` in a config file), and a key with a trailing space read
    like the known one."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "padded.yaml").write_text("'seed ': 1\n")
    assert main(["show-config", "mnist-robustness", *how]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"featavg: error: {named}"), err
    assert f"allowed: {allowed}" in err, err


LONG = "x" * 300  # a name longer than any file system takes (ENAMETOOLONG)


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["show-config", "mnist-linf", "--set", f"train.data_dir={LONG}"], "train.data_dir"),
        (["train", "--data-dir", LONG, "--quiet"], "data_dir"),
        (["probe", "--builtin", "mlp", "--checkpoint", "w.pt", "--data", "mnist-5k",
          "--data-dir", LONG, "--layer", "net.fc"], "data_dir"),
        (["show-config", "mnist-linf", "--set", f"train.data_dir=a/{'y' * 200}/{'z' * 200}"],
         "train.data_dir"),
    ],
)  # fmt: skip
def test_a_data_dir_too_long_to_exist_is_one_line_saying_so(
    argv, field, tmp_path, monkeypatch, capsys
):
    """Once: a 300-character data directory was an OSError traceback (File name too
    long), and a long one that can exist filled the line before saying what was wrong."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"featavg: error: {field}: "), err
    assert err.endswith(("(File name too long)", "does not exist")), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["--out", "--root"])
def test_a_probe_directory_too_long_says_why(flag, tmp_path, monkeypatch, capsys):
    """Once: ``featavg: error: --out xxxx...`` (or ``probe directory xxxx...``): the
    300-character path filled the line and the reason was cut off."""
    from featavg.models.builtin import build_model
    from featavg.models.image_classifier import MNIST_HALF

    monkeypatch.chdir(tmp_path)
    torch.save(build_model("mlp", 2, 1, 28, MNIST_HALF, seed=0).state_dict(), "w.pt")
    argv = ["probe", "--builtin", "mlp", "--checkpoint", "w.pt", "--data", "mnist-5k",
            "--layer", "net.fc", "--train-size", "100", "--test-size", "50",
            "--probe-points", "50", "--grad-points", "20", "--quiet", flag, LONG]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "xxx..." in err, err
    assert "too long" in err and err.endswith("; choose another directory"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]
