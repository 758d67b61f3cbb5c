"""A seeded sample of scripts/fuzz_probe_and_configs.py (``featavg probe`` options and the
real-data experiments' configs, hostile values everywhere: every case ends in a valid result
or a one-line refusal naming what was wrong, never a traceback, a hang or a half-written
directory), the script's judge shown able to fail, and what the fuzzing found, each pinned
as a one-line refusal naming what was wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from featavg.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import fuzz_probe_and_configs as fz  # noqa: E402

SAMPLE = 15  # cases per surface, seed 0: the same inputs every run


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return fz.make_fixtures(tmp_path_factory.mktemp("fuzz-fixtures"))


def test_a_seeded_sample_of_probe_options_and_real_data_configs(fixtures, tmp_path):
    threads = torch.get_num_threads()
    try:
        tallies = fz.run_cases(fz.make_cases(SAMPLE, seed=0, fx=fixtures), tmp_path)
    finally:
        torch.set_num_threads(threads)  # the runner leaves one thread, as the script runs
    failures = [f for t in tallies.values() for f in t.failures]
    assert not failures, "\n" + fz.report(tallies) + "\n" + "\n".join(failures[:10])
    for surface, tally in tallies.items():
        assert sum(tally.verdicts.values()) == SAMPLE, surface
        # the sample reaches both outcomes: valid commands run, hostile ones are refused
        assert tally.verdicts["exit 0"] > 0 and tally.verdicts["exit 2"] > 0, tally.verdicts


def _judged(surface, outcome, tmp_path, names=(), leave=None):
    case = fz.Case(surface, ["probe"], names=names)
    before = fz.snapshot(tmp_path)
    if leave is not None:
        (tmp_path / leave).write_text("half")
    return fz.judge(case, outcome, tmp_path, before)[0]


def test_the_judge_is_not_vacuous(tmp_path):
    """Each must-be-zero column is reachable: what a broken command would do is caught."""
    probe, configs = fz.SURFACES
    assert _judged(probe, fz.Outcome(None, "", "", TypeError("x")), tmp_path) == "traceback"
    assert _judged(probe, fz.Outcome(1, "", "boom"), tmp_path) == "other exit"
    two_lines = fz.Outcome(2, "", "featavg: error: a: b\nmore")
    assert _judged(probe, two_lines, tmp_path) == "malformed"
    cut = fz.Outcome(2, "", "featavg: error: --out " + "x" * 280 + "...")
    assert _judged(probe, cut, tmp_path) == "malformed"
    other = fz.Outcome(2, "", "featavg: error: seed: must be >= 0")
    assert _judged(configs, other, tmp_path, names=("train.lr", "lr")) == "unnamed"
    assert _judged(configs, other, tmp_path, names=("seed", "seed")) == "exit 2"
    refused = fz.Outcome(2, "", "featavg: error: --layer: no layer 'x'")
    assert _judged(probe, refused, tmp_path, leave="partial.json") == "half-written"
    no_line = fz.Outcome(0, "done\n", "")
    assert _judged(probe, no_line, tmp_path) == "half-written"


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


@pytest.mark.parametrize("top", [10, 10**12, 10**30])
def test_a_group_id_far_out_of_range_is_refused_at_once(top):
    """Once: ``--grouping 0,1,0,1,0,1,0,1,0,999999999999`` built the set of every id up to
    it, tens of GiB, until the kernel killed the process (probe, run, train, show-config)."""
    from featavg.config import ConfigError
    from featavg.data.groupings import get_grouping

    with pytest.raises(ConfigError, match=rf"^grouping: group id {top} is out of range"):
        get_grouping(f"0,1,0,1,0,1,0,1,0,{top}")


@pytest.mark.parametrize("name", [LONG, f"a/{'y' * 200}/{'z' * 200}.pt"], ids=["300", "long"])
def test_a_checkpoint_path_too_long_is_one_line_saying_so(name, tmp_path, monkeypatch):
    """Once: ``probe --checkpoint`` (and a cifar10-features backbone) with a 300-character
    name was an OSError traceback (File name too long); a long path that can exist filled
    the line before saying it is not there."""
    from featavg.config import MAX_MESSAGE, ConfigError, error_line
    from featavg.models.backbone_file import load_backbone_file
    from featavg.models.model_file import load_trained_model
    from featavg.probing.loading import load_model

    monkeypatch.chdir(tmp_path)
    loaders = [
        lambda: load_model(factory=None, builtin="mlp", checkpoint=name, data=None,
                           dataset_name=None),
        lambda: load_backbone_file(name),
        lambda: load_trained_model(name),
    ]  # fmt: skip
    for load in loaders:
        with pytest.raises(ConfigError) as caught:
            load()
        line = "featavg: error: " + error_line(str(caught.value), MAX_MESSAGE - 16)
        assert line.endswith(("(File name too long)", "checkpoint file not found")), line


@pytest.mark.parametrize("grouping", ["0,1", "0,1,0,1,0"])
def test_fewer_group_ids_than_the_data_has_classes_is_refused_before_any_pass(
    grouping, tmp_path, monkeypatch, capsys
):
    """Once: ``--grouping 0,1`` (ids for 2 classes on 10-class data) was found while the
    first pass read its labels: a progress line, then the error (two lines on stderr)."""
    from featavg.models.builtin import build_model
    from featavg.models.image_classifier import MNIST_HALF

    monkeypatch.chdir(tmp_path)
    torch.save(build_model("mlp", 2, 1, 28, MNIST_HALF, seed=0).state_dict(), "w.pt")
    argv = ["probe", "--builtin", "mlp", "--checkpoint", "w.pt", "--data", "mnist-5k",
            "--layer", "net.fc", "--train-size", "100", "--test-size", "50",
            "--probe-points", "50", "--grad-points", "20", "--grouping", grouping]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("featavg: error: grouping: "), err
    assert "expected one per class (10)" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


@pytest.mark.parametrize(
    ("name", "text"),
    [("bad.json", "{"), ("bad.toml", "groups = [0, 1"), ("nokey.json", '{"grups": [0, 1]}'),
     ("short.json", "[0, 1]"), ("dir.json", None)],
)  # fmt: skip
def test_a_bad_grouping_file_is_refused_naming_the_field(name, text, tmp_path, capsys):
    """Once: ``--set grouping=bad.json`` gave ``featavg: error: .../bad.json: not valid
    JSON (...)``, naming the file but not the field it was given as."""
    path = tmp_path / name
    path.mkdir() if text is None else path.write_text(text)
    assert main(["show-config", "mnist-robustness", "--set", f"grouping={path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("featavg: error: grouping: "), err
    assert name in err, err


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "synthetic-alignment", "--preset", "tiny", "--out", LONG],
        ["train", "--data", "mnist-5k", "--model", "mlp", "--root", LONG],
    ],
)
def test_a_run_or_model_directory_too_long_says_why(argv, tmp_path, monkeypatch, capsys):
    """Once: the run's and the model cache's refusals showed the whole 300-character path
    and the reason fell off the line (as the probe's did)."""
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "xxx..." in err and len(err) < 300, err
    assert "too long" in err, err
    assert list(tmp_path.iterdir()) == []
