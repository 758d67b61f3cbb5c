"""The command line: results, cache, seeds, one-line config errors with exit code 2, bugs
with a traceback and exit code 1, and a normal interpreter exit."""

import json
import subprocess
import sys

import pytest

import featavg
from featavg.cli import main
from featavg.config import ConfigError, build_config, nest, parse_overrides
from featavg.experiments import runner
from featavg.experiments.synthetic_alignment import SyntheticAlignmentConfig

SMALL = [
    "--set",
    "data.d=60",
    "--set",
    "data.k=4",
    "--set",
    "data.n_train=80",
    "--set",
    "data.n_test=40",
    "--set",
    "train.steps=20",
    "--quiet",
]
REQUIRED = [
    "cos_same_class_mean_binary",
    "cos_other_class_max_binary",
    "cos_diag_mean_multiclass",
    "cos_offdiag_max_multiclass",
    "theory_cos_same_class",
]


def cli(*args, prelude=""):
    """``featavg ARGS`` in a fresh interpreter, through the console-script entry point;
    ``prelude``: Python run before it (e.g. to plant a bug)."""
    code = f"{prelude}\nfrom featavg.cli import entry\nentry()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )


def test_run_writes_summary_figures_and_provenance(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "synthetic-alignment", *SMALL, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in REQUIRED:
        assert isinstance(summary[key], float)
    assert summary["config"]["data"]["d"] == 60
    assert summary["provenance"]["featavg_version"]
    assert summary["provenance"]["git_commit"]
    assert (out / "heatmap.png").stat().st_size > 10_000
    assert (out / "alignment_dynamics.png").is_file()
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert "cos_same_class_mean" in header and "step" in header


def test_seeds_give_mean_and_interval(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "synthetic-alignment", *SMALL, "--seeds", "3", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    for key in REQUIRED[:4]:
        lo, hi = s[f"{key}_ci95"]
        assert lo <= s[key] <= hi
        assert len(s["per_seed"][key]) == 3
        assert abs(sum(s["per_seed"][key]) / 3 - s[key]) < 1e-9
    assert s["provenance"]["seeds"] == [0, 1, 2]


def test_same_seed_same_numbers_and_cache_hit(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["run", "synthetic-alignment", *SMALL, "--out", str(a)]) == 0
    assert main(["run", "synthetic-alignment", *SMALL, "--out", str(b)]) == 0
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    assert sa["per_seed"] == sb["per_seed"]
    before = (a / "summary.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["run", "synthetic-alignment", *SMALL, "--out", str(a)]) == 0
    assert "cached" in capsys.readouterr().out
    assert (a / "summary.json").stat().st_mtime_ns == before
    assert main(["run", "synthetic-alignment", *SMALL, "--out", str(a), "--force"]) == 0
    assert (a / "summary.json").stat().st_mtime_ns != before


@pytest.mark.parametrize(
    "args, field",
    [
        (["--set", "train.lr=-1"], "train.lr"),
        (["--set", "data.sampling=weird"], "data.sampling"),
        (["--set", "data.k=20", "--set", "data.d=10"], "k:"),
        (["--set", "trian.lr=1"], "trian"),
        (["--set", "data.noise_std=abc"], "data.noise_std"),
        (["--seeds", "0"], "seeds"),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path, args, field):
    out = tmp_path / "never"
    proc = cli("run", "synthetic-alignment", *args, "--out", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()


def test_process_exit_keeps_output_and_results(tmp_path):
    """The CLI ends through the interpreter's normal shutdown: atexit handlers run, and the
    piped (block-buffered) stdout line and every result file are complete."""
    out = tmp_path / "run"
    atexit = "import atexit, sys\natexit.register(lambda: print('atexit ran', file=sys.stderr))"
    proc = cli("run", "synthetic-alignment", *SMALL, "--quiet", "--out", str(out), prelude=atexit)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"synthetic-alignment: done -> {out}/summary.json"
    assert proc.stderr.strip() == "atexit ran"
    assert json.loads((out / "summary.json").read_text())["config"]["data"]["d"] == 60
    assert (out / "heatmap.png").stat().st_size > 10_000


def test_a_bug_exits_1_with_its_traceback(tmp_path, monkeypatch):
    """Only ConfigError is bad input: any other exception, a plain ValueError included,
    is a bug and keeps its traceback."""
    boom = (
        "import featavg.experiments.runner as runner\n"
        "def boom(*args, **kwargs):\n    raise RuntimeError('planted bug')\n"
        "runner.run_experiment = boom"
    )
    proc = cli("run", "synthetic-alignment", "--out", str(tmp_path / "x"), prelude=boom)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "RuntimeError: planted bug" in proc.stderr

    def value_error(*args, **kwargs):
        raise ValueError("not a config error")

    monkeypatch.setattr(runner, "run_experiment", value_error)
    with pytest.raises(ValueError, match="not a config error"):
        main(["run", "synthetic-alignment", "--out", str(tmp_path / "y")])


@pytest.mark.parametrize("device", ["gpu", "cuda:99", "cuda:x"])
def test_bad_device_exits_2_with_one_line(tmp_path, capsys, device):
    out = tmp_path / "never"
    assert main(["run", "synthetic-alignment", *SMALL, "--device", device, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("featavg: error: device:")
    assert not out.exists()


def test_unknown_experiment_lists_the_allowed_ones():
    proc = cli("run", "no-such-thing")
    assert proc.returncode == 2 and "synthetic-alignment" in proc.stderr


def test_show_config_and_list(capsys):
    assert main(["show-config", "synthetic-alignment", "--set", "train.lr=0.01"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["train"]["lr"] == 0.01 and cfg["data"]["d"] == 3072
    assert main(["list"]) == 0
    assert "synthetic-alignment" in capsys.readouterr().out


def test_config_file_toml_and_yaml(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("seeds = 2\n[train]\nlr = 0.02\n")
    yml = tmp_path / "c.yaml"
    yml.write_text("data:\n  d: 99\n")
    assert build_config(SyntheticAlignmentConfig, None, toml).train.lr == 0.02
    cfg = build_config(SyntheticAlignmentConfig, parse_overrides(["data.k=3"]), yml)
    assert (cfg.data.d, cfg.data.k) == (99, 3)
    with pytest.raises(ConfigError, match="--config"):
        build_config(SyntheticAlignmentConfig, None, tmp_path / "missing.toml")


def test_nest_is_the_one_dotted_key_converter():
    assert nest({"train.lr": 0.01, "seeds": 2, "train.steps": 5}) == {
        "train": {"lr": 0.01, "steps": 5},
        "seeds": 2,
    }
    assert nest({"data": {"d": 60}, "data__k": 3}, sep="__") == {"data": {"d": 60, "k": 3}}
    for flat in ({"train": 1, "train.lr": 2}, {"train.lr": 2, "train": 1}):
        with pytest.raises(ConfigError, match="train is both a value and a section"):
            nest(flat)
    with pytest.raises(ConfigError, match="^--set train.lr: train is both"):
        parse_overrides(["train=1", "train.lr=2"])
    assert parse_overrides(["train.lr=1", "seeds=2", "train.lr=3"]) == {
        "train": {"lr": 3},
        "seeds": 2,
    }
    # the API's keywords go through the same converter: nested dicts and __ mix
    cfg = featavg.show_config("synthetic-alignment", data={"d": 60}, data__k=3)
    assert (cfg["data"]["d"], cfg["data"]["k"]) == (60, 3)


def test_unknown_key_names_the_allowed_keys():
    with pytest.raises(ConfigError, match="allowed: steps, lr"):
        build_config(SyntheticAlignmentConfig, parse_overrides(["train.step=3"]))
