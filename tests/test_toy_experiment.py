"""Adding an experiment touches one module: a toy experiment registered from
tests/toy_experiment.py runs through run, sweep, reproduce and report."""

import json

import pytest

import featavg
from featavg.api import run_sweep
from featavg.experiments.registry import EXPERIMENTS, register, reproduce_plan, unregister
from featavg.reproduction import reproduce
from toy_experiment import EXPERIMENT


@pytest.fixture
def toy():
    register(EXPERIMENT)
    yield EXPERIMENT
    unregister(EXPERIMENT.name)


def test_toy_experiment_end_to_end(toy, tmp_path):
    # run: the summary, the main table and the cache
    out = featavg.run("toy-norms", out=tmp_path / "run", seeds=2)
    assert not out.cached and out.summary["theory_norm_ratio"] == 1.0
    assert list(out.metrics.columns) == ["seed", "draw", "ratio"]
    assert featavg.run("toy-norms", out=tmp_path / "run", seeds=2).cached

    # sweep: one cell per grid value, each an ordinary run of the toy experiment
    sweep = run_sweep("toy-norms", {"d": [10, 40]}, out=tmp_path / "sweep", progress=False)
    assert [c.values["d"] for c in sweep.cells] == [10, 40]
    assert {c.summary["experiment"] for c in sweep.cells} == {"toy-norms"}

    # reproduce: the registry's plan picks it up with its preset
    assert ("toy-norms", {"seeds": 2}) in reproduce_plan()
    results, report = reproduce(
        tmp_path / "repro", device="cpu", progress=False, experiments=[("toy-norms", {"seeds": 2})]
    )
    html = report.read_text(encoding="utf-8")
    assert "Gaussian norms (toy)" in html and "mean ||x||^2 / d" in html
    assert "Histogram of ||x||^2 / d." in html
    summary = json.loads((results[0].directory / "summary.json").read_text())
    assert len(summary["per_seed"]["norm_ratio"]) == 2


def test_register_refuses_a_second_experiment_under_a_taken_name(toy):
    from dataclasses import replace

    with pytest.raises(ValueError, match="exists already"):
        register(replace(toy, description="another"))
    assert EXPERIMENTS["toy-norms"] is toy
