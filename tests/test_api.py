"""The notebook API: featavg.load reads a run back, short reprs, one device default."""

import inspect
import json
import math
import shutil

import pandas as pd
import pytest

import featavg
from featavg import runs
from featavg.config import ConfigError
from featavg.experiments.registry import get_experiment
from featavg.report.checks import check_counts

EXP = "synthetic-robustness"
TINY = {
    "data": {"d": 60, "k": 4, "n_train": 80, "n_test": 40},
    "train": {"steps": 20},
    "attack": {"radii": [0.0, 2.0, 4.0, 8.0]},
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished three-seed run of the tiny robustness config."""
    out = tmp_path_factory.mktemp("api") / "run"
    featavg.run(EXP, out=out, seeds=3, device="cpu", **TINY)
    return out


def test_load_round_trips_a_run(run_dir):
    run = featavg.load(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert run.experiment == EXP and run.summary == summary and run.directory == run_dir
    assert run.config == json.loads((run_dir / "config.json").read_text())
    # per-seed: one row per seed, one column per metric; the means are the summary's
    assert list(run.per_seed.index) == [0, 1, 2] and run.per_seed.index.name == "seed"
    assert set(run.per_seed.columns) == set(summary["per_seed"])
    for key in ("radius50_binary", "exact_median_radius_binary", "clean_acc_multiclass"):
        assert run.per_seed[key].tolist() == summary["per_seed"][key]
        assert math.isclose(run.per_seed[key].mean(), summary[key], rel_tol=1e-12)
    # every CSV, the main table first; every figure by name
    exp = get_experiment(EXP)
    assert set(run.tables) == {p.stem for p in run_dir.glob("*.csv")}
    assert next(iter(run.tables)) == exp.main_table == run.main_table
    pd.testing.assert_frame_equal(run.metrics, pd.read_csv(run_dir / f"{exp.main_table}.csv"))
    assert list(run.figures) == list(exp.figures)
    assert all(path.is_file() and path.parent == run_dir for path in run.figures.values())


def test_main_table_comes_first_whatever_the_file_names(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    pd.DataFrame({"x": [1, 2]}).to_csv(copy / "aaa_extra.csv", index=False)
    (copy / "empty.csv").write_text("\n")
    (copy / ".robustness.csv.tmp.csv").write_text("half,written\n")  # hidden: not the run's
    runs.write_manifest(copy)  # load reads only the files the manifest vouches for
    run = featavg.load(copy)
    assert list(run.tables)[0] == get_experiment(EXP).main_table
    assert list(run.tables)[1:] == ["aaa_extra", "empty"]
    assert run.tables["aaa_extra"]["x"].tolist() == [1, 2] and run.tables["empty"].empty


def test_a_one_seed_run_without_per_seed_values_gets_its_scalars(run_dir, tmp_path):
    copy = tmp_path / "one"
    shutil.copytree(run_dir, copy)
    summary = json.loads((copy / "summary.json").read_text())
    del summary["per_seed"]
    summary["provenance"]["seeds"] = [7]
    (copy / "summary.json").write_text(json.dumps(summary))
    runs.write_manifest(copy)  # as a run written this way would have it
    frame = featavg.load(copy).per_seed
    assert list(frame.index) == [7]
    assert frame.loc[7, "radius50_binary"] == summary["radius50_binary"]


def test_missing_or_unfinished_directory_is_one_line_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such directory") as err:
        featavg.load(tmp_path / "nowhere")
    assert "\n" not in str(err.value)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="no finished run"):
        featavg.load(tmp_path / "half")
    (tmp_path / "half" / "summary.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        featavg.load(tmp_path / "half")
    (tmp_path / "half" / "summary.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a featavg run"):
        featavg.load(tmp_path / "half")


def test_reprs_are_a_few_lines(run_dir, tmp_path):
    run = featavg.load(run_dir)
    text = repr(run)
    lines = text.splitlines()
    assert 4 <= len(lines) <= 10 and len(text) < 1200
    assert lines[0] == f"LoadedRun {EXP}: 3 seeds (0 .. 2)"
    assert str(run_dir) in lines[1]
    agree, deviate, missing = check_counts(run.summary)  # the report's count
    assert f"checks: {agree} agree, {deviate} deviate, {missing} missing" in text
    assert f"tables: {get_experiment(EXP).main_table} (" in text and "main" in text
    assert "figures: robustness" in text
    assert "per_seed" not in text and "provenance" not in text  # not the whole summary

    out = featavg.run(EXP, out=run_dir, seeds=3, device="cpu", **TINY)
    assert out.cached and isinstance(out, featavg.LoadedRun)
    out_lines = repr(out).splitlines()
    assert out_lines[0] == f"RunOutput {EXP} (cached): 3 seeds (0 .. 2)"
    assert out_lines[1:] == lines[1:]
    pd.testing.assert_frame_equal(out.per_seed, run.per_seed)

    sweep = featavg.run_sweep(
        "synthetic-alignment",
        {"train.lr": [0.001, 0.002]},
        overrides={"data": TINY["data"], "train": {"steps": 5}},
        out=tmp_path / "sweep",
        device="cpu",
        progress=False,
    )
    sweep_lines = repr(sweep).splitlines()
    assert len(sweep_lines) <= 10 and "cos_same" not in repr(sweep)
    assert sweep_lines[0] == "SweepResult synthetic-alignment: 2 cells (0 cached)"
    assert "train.lr = 0.001, 0.002" in sweep_lines[1]


def test_cached_run_still_checks_the_device(run_dir):
    before = (run_dir / "summary.json").stat().st_mtime_ns
    for device in ("gpu", "cuda:99"):
        with pytest.raises(ConfigError, match="^device:"):
            featavg.run(EXP, out=run_dir, seeds=3, device=device, **TINY)
    assert (run_dir / "summary.json").stat().st_mtime_ns == before


def test_one_device_default_everywhere():
    from featavg.api import RunOptions
    from featavg.cli import build_parser
    from featavg.device import DEFAULT_DEVICE
    from featavg.reproduction import reproduce
    from featavg.runs.context import open_context
    from featavg.sweep import SweepOptions

    assert DEFAULT_DEVICE == "auto"
    # the runner takes a RunContext: its default comes from open_context; featavg.run and
    # featavg.run_sweep take their device keyword into RunOptions / SweepOptions
    assert RunOptions().device == SweepOptions().device == DEFAULT_DEVICE
    for fn in (featavg.reproduce, open_context):
        assert inspect.signature(fn).parameters["device"].default == DEFAULT_DEVICE, fn
    assert inspect.signature(reproduce).parameters["device"].default == DEFAULT_DEVICE
    parser = build_parser()
    for argv in (["run", EXP], ["sweep", EXP, "--grid", "seed=1"], ["reproduce"]):
        assert parser.parse_args(argv).device == DEFAULT_DEVICE
