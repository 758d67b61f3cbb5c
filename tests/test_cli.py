"""The command line: results, cache, seeds, one-line config errors with exit code 2, bugs
with a traceback and exit code 1, a normal interpreter exit; what it tells (numbers beside
the theory, --version, show-config --explain / --reproduce) and clean progress logs."""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import featavg
from featavg import progress
from featavg.cli import build_parser, main
from featavg.config import ConfigError, build_config, nest, parse_overrides
from featavg.experiments import runner
from featavg.experiments.synthetic_alignment import SyntheticAlignmentConfig
from featavg.report.checks import check_counts

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


# ---------------------------------------------------------------- what the CLI tells

ROBUST = [
    "synthetic-robustness",
    "--set=data.d=60",
    "--set=data.k=4",
    "--set=data.n_train=80",
    "--set=data.n_test=40",
    "--set=train.steps=20",
    "--set=attack.radii=[0,2,4,8]",
    "--seeds=2",
    "--device=cpu",
]


def test_run_prints_headline_numbers_beside_theory_and_figures(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *ROBUST, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    summary = json.loads((out / "summary.json").read_text())
    assert lines[-1] == f"synthetic-robustness: done -> {out}/summary.json"
    assert lines[0].startswith("synthetic-robustness: 2 seeds (0 .. 1) on cpu in ")
    header = next(i for i, line in enumerate(lines) if line.startswith("verdict"))
    # the exact median radius of the binary net against sqrt(d/k) = sqrt(60/4)
    row = next(line for line in lines if "binary net: exact median radius;" in line)
    verdict, measured, theory = re.split(r"\s{2,}", row)[:3]  # cells: 2+ spaces apart
    assert measured.startswith(f"{summary['exact_median_radius_binary']:.4g} [")
    measured = measured.split()[0]
    assert float(measured) == pytest.approx(summary["exact_median_radius_binary"], rel=1e-3)
    assert float(theory) == pytest.approx((60 / 4) ** 0.5, rel=1e-3)
    ratio = summary["exact_median_radius_binary"] / (60 / 4) ** 0.5 - 1
    assert verdict == ("agrees" if abs(ratio) <= 0.15 else "deviates")
    assert row.index(measured) == lines[header].index("measured")  # aligned columns
    agree, deviate, missing = check_counts(summary)
    assert f"checks: {agree} agree, {deviate} deviate, {missing} missing" in lines
    assert agree + deviate >= 10  # every check with a closed form has a row
    assert sum(line.startswith(("agrees ", "deviates ")) for line in lines) == agree + deviate
    assert lines[-3:-1] == ["figures:", f"  {out / 'robustness.png'}"]

    assert main(["run", *ROBUST, "--out", str(out)]) == 0  # a cache hit tells the same
    cached = capsys.readouterr().out.splitlines()
    assert cached[0].startswith("synthetic-robustness: cached run of 2 seeds (0 .. 1) on cpu (")
    assert cached[1:-1] == lines[1:-1]
    assert cached[-1] == f"synthetic-robustness: cached -> {out}/summary.json"
    assert main(["run", *ROBUST, "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines() == cached[-1:]


def test_invalid_device_on_a_cache_hit_exits_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *ROBUST, "--out", str(out), "--quiet"]) == 0
    before = (out / "summary.json").stat().st_mtime_ns
    unavailable = [] if torch.cuda.is_available() else ["cuda"]
    for device in ("gpu", "cuda:99", *unavailable):
        capsys.readouterr()
        assert main(["run", *ROBUST, "--out", str(out), "--quiet", f"--device={device}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("featavg: error: device:")
    assert (out / "summary.json").stat().st_mtime_ns == before


def test_progress_in_a_log_has_no_carriage_returns(tmp_path):
    """stderr is a pipe here, as in a CI log: each bar is one plain line when it ends."""
    proc = cli("run", *ROBUST, "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\r" not in proc.stdout
    stages = proc.stderr.splitlines()
    assert any(line.startswith("train binary+multiclass: ") for line in stages), stages
    assert all(line.endswith(" s") for line in stages)


def test_bars_redraw_only_on_a_terminal(monkeypatch):
    class Stream(io.StringIO):
        def __init__(self, tty):
            super().__init__()
            self.tty = tty

        def isatty(self):
            return self.tty

    for tty in (False, True):
        stream = Stream(tty)
        monkeypatch.setattr(sys, "stderr", stream)
        for _ in progress.bar(range(3), desc="stage"):
            pass
        with progress.bar(total=2, desc="cells", unit="cell") as bar:
            bar.update(2)
        for _ in progress.bar(range(3), desc="off", enabled=False):
            pass
        text = stream.getvalue()
        if tty:  # a live bar redraws in place
            assert "\r" in text and "stage" in text
        else:
            assert text.splitlines()[0].startswith("stage: 3/3 it in ")
            assert text.splitlines()[1].startswith("cells: 2/2 cell in ")
            assert len(text.splitlines()) == 2 and "\r" not in text
        assert "off" not in text


def test_version_names_package_and_commit():
    proc = cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"featavg {featavg.__version__}")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=Path(featavg.__file__).parent,
        capture_output=True,
        text=True,
    )
    if head.returncode == 0:
        assert f"(git {head.stdout.strip()}" in proc.stdout


def test_show_config_explain_lists_every_field_with_its_meaning(capsys):
    assert main(["show-config", "synthetic-alignment", "--explain", "--set", "train.lr=0.02"]) == 0
    lines = capsys.readouterr().out.splitlines()
    lr = next(i for i, line in enumerate(lines) if line.strip().startswith("train.lr = "))
    assert lines[lr].strip() == "train.lr = 0.02  (float; > 0)"
    assert lines[lr + 1].strip() == "learning rate"
    sampling = next(line for line in lines if line.strip().startswith("data.sampling = "))
    assert "one of: balanced, iid" in sampling
    cosine = next(line for line in lines if line.strip().startswith("data.max_cosine = "))
    assert ">= 0, < 1" in cosine
    cfg = build_config(SyntheticAlignmentConfig, None).model_dump(mode="json")
    leaves = [f"{s}.{k}" for s, v in cfg.items() if isinstance(v, dict) for k in v]
    leaves += [k for k, v in cfg.items() if not isinstance(v, dict)]
    listed = {line.split(" = ")[0].strip() for line in lines if " = " in line}
    assert set(leaves) <= listed


def test_show_config_reproduce_shows_what_reproduce_runs(capsys):
    assert main(["show-config", "synthetic-robustness", "--reproduce"]) == 0
    text = capsys.readouterr().out
    head, _, config = text.partition("effective config:\n")
    assert "featavg reproduce runs synthetic-robustness with: seeds=10" in head
    assert "featavg run synthetic-robustness --set seeds=10" in head
    assert "seeds: 10 (seeds 0 .. 9)" in head
    assert json.loads(config)["seeds"] == 10
    assert main(["show-config", "synthetic-robustness", "--reproduce", "--explain"]) == 0
    assert "\nseeds = 10  (int; >= 1)\n" in capsys.readouterr().out
    assert main(["show-config", "synthetic-robustness", "--reproduce", "--seeds", "2"]) == 2


def test_list_names_no_file_outside_the_repository(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "SPEC" not in text and "../" not in text and "shared/" not in text


def test_threads_option_is_applied_by_every_running_command(tmp_path, monkeypatch):
    import featavg.threads

    seen = []
    monkeypatch.setattr(featavg.threads, "configure", lambda n: seen.append(n) or (n or 1))
    out = tmp_path / "run"
    assert main(["run", *ROBUST, "--out", str(out), "--quiet", "--threads", "1"]) == 0
    assert main(["run", *ROBUST, "--out", str(out), "--quiet"]) == 0
    assert seen == [1, None]
    parser = build_parser()
    for argv in (["sweep", "x", "--grid", "seed=1"], ["reproduce"]):
        assert parser.parse_args([*argv, "--threads", "3"]).threads == 3


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["run", "synthetic-alignmnt"], "did you mean 'synthetic-alignment'?"),
        (["show-config", "mnist-robustness", "--preset", "quik"], "did you mean 'quick'?"),
        (["show-config", "synthetic-alignment", "--set", "train.lrr=0.1"], "did you mean 'lr'?"),
        (["show-config", "synthetic-alignment", "--set", "trian.lr=0.1"], "did you mean 'train'?"),
    ],
)
def test_a_typo_gets_a_did_you_mean(argv, hint, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert hint in err and len(err.splitlines()) == 1


def test_too_many_threads_are_refused_before_anything_runs(tmp_path, capsys):
    # thousands of OpenMP threads segfault torch: refused with the allowed range
    out = tmp_path / "run"
    assert main(["run", "synthetic-alignment", *SMALL, "--threads", "2500", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--threads: need a whole number in 1.." in err and "got 2500" in err
    assert not tmp_path.joinpath("run").exists() and not list(tmp_path.iterdir())


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    from featavg import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "list", interrupted)
    assert main(["list"]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("featavg: interrupted") and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["mnist-robustness", "--set", "attack.rel_step=1e300"], "attack.rel_step"),
        (["mnist-robustness", "--set", "attack.radii=[0,1e300]"], "attack.radii[1]"),
        (["synthetic-robustness", "--set", "train.lr=1e39"], "train.lr"),
        (["synthetic-alignment", "--set", "net.init_std=1e39"], "net.init_std"),
    ],
)
def test_a_float_outside_float32_is_refused_by_name_before_anything_runs(
    argv, field, tmp_path, capsys
):
    # every config float reaches a float32 tensor: 1e300 overflowed to inf there (a PGD step
    # of inf once gave robust accuracy 0 at every radius, the clean one included)
    out = tmp_path / "run"
    assert main(["run", *argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"featavg: error: {field}: ") and "float32" in err
    assert not out.exists()


@pytest.mark.parametrize("cmd", [["run", "mnist-robustness"], ["train"]])
@pytest.mark.parametrize("missing", ["empty", "absent"])
def test_an_explicit_data_dir_without_the_files_exits_2_before_any_compute(
    cmd, missing, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # nothing may be left behind, not even an empty runs/
    data_dir = tmp_path / "data"
    if missing == "empty":
        data_dir.mkdir()
    assert main([*cmd, "--data-dir", str(data_dir), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    field = "train.data_dir" if cmd[0] == "run" else "data_dir"
    assert err.startswith(f"featavg: error: {field}: ") and len(err.splitlines()) == 1
    assert ("train-images-idx3-ubyte" in err) if missing == "empty" else ("does not exist" in err)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["data"] if missing == "empty" else [])


def test_data_dir_is_for_the_experiments_that_read_image_files(capsys):
    assert main(["run", "synthetic-alignment", "--data-dir", "x"]) == 2
    assert "--data-dir: synthetic-alignment reads no image files" in capsys.readouterr().err


def test_a_config_too_large_is_refused_naming_the_real_limit(capsys):
    radii = ",".join(str(i / 10_000) for i in range(10_001))
    assert main(["show-config", "mnist-robustness", "--set", f"attack.radii=[{radii}]"]) == 2
    err = capsys.readouterr().err
    assert "more than 10000 values in all" in err and "alias" not in err
