"""Sweeps: grid parsing, the results table, caching, SIGKILL resume, and equal numbers from
the local, process-pool and Dask executors."""

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch

from featavg.api import run_sweep
from featavg.cli import build_parser, main
from featavg.config import ConfigError
from featavg.experiments.runner import run_experiment
from featavg.sweep import (
    DASK_MISSING,
    EXECUTORS,
    LocalExecutor,
    parse_grid,
    plan_sweep,
)
from float_agreement import REL, disagreements
from kill_points import hold_cells, wait_until_waiting

EXP = "synthetic-alignment"
# tiny cells (~0.3-1 s each) so the whole file stays fast on 2 cores
SMALL = {"data": {"d": 60, "n_train": 80, "n_test": 40}, "train": {"steps": 20}}
SMALL_ARGS = [
    "--set=data.d=60",
    "--set=data.n_train=80",
    "--set=data.n_test=40",
    "--set=train.steps=20",
]
GRID = {"train.lr": [0.001, 0.01], "data.k": [3, 4]}
GRID_ARGS = ["--grid", "train.lr=0.001,0.01", "--grid", "data.k=3,4"]
METRIC = "cos_same_class_mean_binary"


def _metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """The numeric result columns (grid values and cell names dropped)."""
    drop = [c for c in frame.columns if c in ("cell", *GRID)]
    return frame.drop(columns=drop).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted 2x2 sweep, seeds=2, local executor."""
    out = tmp_path_factory.mktemp("sweep") / "reference"
    return run_sweep(EXP, GRID, seeds=2, overrides=SMALL, out=out, progress=False)


def test_parse_grid_values_and_errors():
    assert parse_grid(["train.lr=0.001,1e-2", "data.k=4"]) == {
        "train.lr": [0.001, 0.01],
        "data.k": [4],
    }
    assert parse_grid(["x=[1,2],[3,4]", "flag=true,null,none,abc"]) == {
        "x": [[1, 2], [3, 4]],
        "flag": [True, None, "none", "abc"],  # null is None; none a name (featavg.config)
    }
    for bad, match in [
        ("train.lr", "expected KEY=V1,V2"),
        ("=1,2", "expected KEY=V1,V2"),
        ("train.lr=", "expected KEY=V1,V2"),
        ("train.lr=1,,2", "empty value"),
        ("train.lr=0.01,1e-2", "repeated"),
        ("seeds=1,2", "--seeds"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_grid([bad])
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["data.k=3", "data.k=4"])


def test_bad_grid_value_fails_before_running(tmp_path):
    out = tmp_path / "bad"
    with pytest.raises(ConfigError, match=r"train\.lr") as err:
        run_sweep(EXP, {"train.lr": [0.01, -1.0]}, overrides=SMALL, out=out, progress=False)
    assert "\n" not in str(err.value)
    assert not out.exists()  # validated up front: nothing ran, nothing written
    with pytest.raises(ConfigError, match=r"train\.nope: unknown key"):
        run_sweep(EXP, {"train.nope": [1]}, out=out, progress=False)
    with pytest.raises(ConfigError, match="also given with --set"):
        run_sweep(EXP, {"train.steps": [1, 2]}, overrides=SMALL, out=out, progress=False)
    assert main(["sweep", EXP, "--grid", "data.k=0", "--out", str(out), "--quiet"]) == 2
    assert main(["sweep", EXP, "--grid", "data.k=3", "--out", str(out), "--device", "gpu"]) == 2
    assert not out.exists()


def test_dask_missing_and_executor_errors(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import now raises ImportError
    with pytest.raises(ConfigError) as err:
        run_sweep(EXP, GRID, executor="dask", scheduler="tcp://127.0.0.1:1", out=tmp_path)
    assert str(err.value) == DASK_MISSING
    with pytest.raises(ConfigError, match="--scheduler: required"):
        run_sweep(EXP, GRID, executor="dask", out=tmp_path)
    with pytest.raises(ConfigError, match="--executor: unknown"):
        run_sweep(EXP, GRID, executor="ray", out=tmp_path)
    with pytest.raises(ConfigError, match="--scheduler: not used by --executor process"):
        run_sweep(EXP, GRID, executor="process", scheduler="tcp://127.0.0.1:1", out=tmp_path)
    with pytest.raises(ConfigError, match="--workers: need at least 1"):
        run_sweep(EXP, GRID, executor="process", workers=0, out=tmp_path)
    assert not tmp_path.joinpath("sweep.json").exists()  # all checked before any work


def test_sweep_table_figure_and_cache(reference):
    frame = pd.read_csv(reference.csv_path)
    assert len(reference.cells) == len(frame) == 4
    assert list(frame.columns[:2]) == ["train.lr", "data.k"]
    assert sorted(zip(frame["train.lr"], frame["data.k"], strict=True)) == [
        (0.001, 3),
        (0.001, 4),
        (0.01, 3),
        (0.01, 4),
    ]
    for key in (METRIC, "test_acc_binary", "cos_diag_mean_multiclass"):
        assert {key, f"{key}_lo", f"{key}_hi"} <= set(frame.columns)
        assert (frame[f"{key}_lo"] <= frame[key]).all() and (frame[key] <= frame[f"{key}_hi"]).all()
    assert (frame[f"{METRIC}_lo"] < frame[f"{METRIC}_hi"]).all()  # two seeds: real intervals
    pd.testing.assert_frame_equal(reference.to_frame(), frame)
    assert reference.figure_path.stat().st_size > 10_000
    described = json.loads((reference.directory / "sweep.json").read_text())
    assert described["experiment"] == EXP and described["seeds"] == 2
    assert len(described["cells"]) == 4
    for cell in reference.cells:
        assert not cell.cached and cell.summary["config"]["seeds"] == 2
        assert (cell.directory / "summary.json").is_file()

    # a second run is all cache hits: nothing recomputed, same table
    mtimes = [(c.directory / "summary.json").stat().st_mtime_ns for c in reference.cells]
    again = run_sweep(EXP, GRID, seeds=2, overrides=SMALL, out=reference.directory, progress=False)
    assert all(c.cached for c in again.cells)
    assert [(c.directory / "summary.json").stat().st_mtime_ns for c in again.cells] == mtimes
    pd.testing.assert_frame_equal(pd.read_csv(again.csv_path), frame)


def test_default_directory_is_content_addressed(reference, tmp_path):
    first = run_sweep(EXP, {"data.k": [4]}, overrides=SMALL, root=tmp_path, progress=False)
    assert first.directory.parent == tmp_path and first.directory.name.startswith("sweep-")
    same = run_sweep(EXP, {"data.k": [4]}, overrides=SMALL, root=tmp_path, progress=False)
    assert same.directory == first.directory and same.cells[0].cached
    other = run_sweep(
        EXP, {"data.k": [4]}, seeds=1, overrides=SMALL, root=tmp_path, progress=False,
        metrics=["test_acc_binary"],
    )  # fmt: skip
    assert other.directory == first.directory  # seeds=1 is the default: the same sweep
    with pytest.raises(ConfigError, match="--metric nope: not a scalar result"):
        run_sweep(
            EXP, {"data.k": [4]}, overrides=SMALL, root=tmp_path, progress=False, metrics=["nope"]
        )


# no batchable field (train.lr, net.init_std): every cell is its own computation, so a
# resumed sweep must equal an uninterrupted one exactly
UNBATCHED = {"net.m": [2, 3], "data.k": [3, 4]}
UNBATCHED_ARGS = ["--grid", "net.m=2,3", "--grid", "data.k=3,4"]


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume(tmp_path):
    """Kill -9 ``featavg sweep`` after its third cell (of four), resume, and get the table
    of an uninterrupted sweep. The kill point is fixed, not timed: this test claims the
    last cell (as another process computing it would), so the sweep finishes the cells
    before it and then waits for the claim; it is killed while it waits."""
    reference = run_sweep(
        EXP, UNBATCHED, seeds=2, overrides=SMALL, out=tmp_path / "ref", progress=False
    )
    out = tmp_path / "killed"
    _, _, cells = plan_sweep(EXP, UNBATCHED, seeds=2, overrides=SMALL, out=out)
    cmd = [sys.executable, "-m", "featavg.cli", "sweep", EXP, *UNBATCHED_ARGS, "--seeds", "2"]
    cmd.append(f"--threads={torch.get_num_threads()}")  # the reference's count: same bits
    with hold_cells([cells[-1].directory]) as locks:
        proc = subprocess.Popen(
            [*cmd, *SMALL_ARGS, "--out", str(out), "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_waiting(proc.pid, locks)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    # the local executor runs the cells in grid order: all but the held one are finished
    finished = sorted(p.parent for p in out.glob("cells/*/summary.json"))
    assert finished == sorted(c.directory for c in cells[:-1])
    assert not (out / "sweep.csv").exists()
    # a cell cut off mid-write: files but no summary.json; it must be redone, not trusted
    described = json.loads((out / "sweep.json").read_text())
    partial = out / described["cells"][-1]["directory"]
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "metrics.csv").write_text("garbage\n")

    resumed = run_sweep(EXP, UNBATCHED, seeds=2, overrides=SMALL, out=out, progress=False)
    assert [c.cached for c in resumed.cells] == [True] * 3 + [False]  # finished: not redone
    # no cell of this grid is trained in an ensemble with another: equal bit for bit
    assert resumed.csv_path.read_bytes() == reference.csv_path.read_bytes()


@pytest.mark.slow
def test_cells_differing_in_lr_are_one_ensemble(reference, tmp_path):
    """The reference grid varies train.lr: its cells per data.k train as one ensemble, which
    agrees to float rounding (README, Determinism) with the same cells run alone; a
    half-finished group resumes by training only its unfinished cells."""
    assert all(c.summary["provenance"].get("batched_with_cells") == 2 for c in reference.cells)
    first = reference.cells[0]
    run_experiment(EXP, overrides=first.config, out=tmp_path / "alone")
    assert disagreements(first.directory, tmp_path / "alone") == []
    # finish one cell of a group alone, then sweep: the other cell is trained by itself
    partial = tmp_path / "partial"
    plan = run_sweep(EXP, GRID, seeds=2, overrides=SMALL, out=partial, progress=False)
    for cell in plan.cells[1:]:
        (cell.directory / "summary.json").unlink()
    resumed = run_sweep(EXP, GRID, seeds=2, overrides=SMALL, out=partial, progress=False)
    assert [c.cached for c in resumed.cells] == [True] + [False] * (len(resumed.cells) - 1)
    for cell, ref in zip(resumed.cells, reference.cells, strict=True):
        assert disagreements(cell.directory, ref.directory) == [], cell.name
    pd.testing.assert_frame_equal(
        _metrics(resumed.to_frame()), _metrics(reference.to_frame()), rtol=REL, atol=0
    )


@pytest.mark.slow
def test_process_executor_equals_local(reference, tmp_path):
    result = run_sweep(
        EXP,
        GRID,
        seeds=2,
        overrides=SMALL,
        out=tmp_path / "pool",
        executor="process",
        workers=2,
        progress=False,
    )
    assert not any(c.cached for c in result.cells)
    pd.testing.assert_frame_equal(result.to_frame(), reference.to_frame())


@pytest.mark.slow
def test_dask_executor_equals_local(reference, tmp_path):
    import distributed  # a declared test dependency: fail, never skip, if it is missing

    # loopback only: a real scheduler and two worker processes on this machine
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        result = run_sweep(
            EXP,
            {"train.lr": GRID["train.lr"]},
            seeds=2,
            overrides={**SMALL, "data": {**SMALL["data"], "k": 4}},
            out=tmp_path / "dask",
            executor="dask",
            scheduler=cluster.scheduler_address,
            progress=False,
        )
    assert len(result.cells) == 2 and not any(c.cached for c in result.cells)
    for cell in result.cells:  # the workers' files landed in our cell directories
        assert {"summary.json", "config.json", "metrics.csv", "heatmap.png"} <= {
            p.name for p in cell.directory.iterdir()
        }
    expected = reference.to_frame()
    expected = expected[expected["data.k"] == 4]
    pd.testing.assert_frame_equal(_metrics(result.to_frame()), _metrics(expected))


def test_sweep_command(reference, capsys):
    args = build_parser().parse_args(
        ["sweep", EXP, *GRID_ARGS, "--seeds", "2", *SMALL_ARGS, "--out", str(reference.directory)]
    )
    assert (args.executor, args.workers, args.device, args.metrics) == ("local", None, "auto", None)
    out = ["--out", str(reference.directory), "--quiet", "--metric", METRIC]
    assert main(["sweep", EXP, *GRID_ARGS, "--seeds", "2", *SMALL_ARGS, *out]) == 0
    assert "4 cells (4 cached)" in capsys.readouterr().out


def test_an_executor_is_one_class_and_one_table_entry(reference, tmp_path, monkeypatch):
    """A new backend: a class with keyword options and ``run``, one entry in EXECUTORS."""
    calls = []

    class Recording:
        def __init__(self, label: str = "default"):
            self.label = label

        def run(self, experiment, groups, device, done):
            calls.append((self.label, experiment, [len(g) for g in groups], device))
            LocalExecutor().run(experiment, groups, device, done)

    monkeypatch.setitem(EXECUTORS, "recording", Recording)
    grid = {"train.lr": GRID["train.lr"]}
    small = {**SMALL, "data": {**SMALL["data"], "k": 4}}
    result = run_sweep(
        EXP, grid, seeds=2, overrides=small, out=tmp_path, executor="recording", device="cpu",
        progress=False,
    )  # fmt: skip
    assert calls == [("default", EXP, [2], "cpu")]  # cells differing in train.lr: one ensemble
    expected = reference.to_frame()
    expected = expected[expected["data.k"] == 4]
    pd.testing.assert_frame_equal(_metrics(result.to_frame()), _metrics(expected))
    with pytest.raises(ConfigError, match="--workers: not used by --executor recording"):
        run_sweep(EXP, grid, executor="recording", workers=3, out=tmp_path)
    again = run_sweep(
        EXP, grid, seeds=2, overrides=small, out=tmp_path, executor=Recording("object"),
        progress=False,
    )  # fmt: skip
    assert all(c.cached for c in again.cells) and len(calls) == 1  # all cached: not called
