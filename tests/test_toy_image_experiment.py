"""Adding a real-data experiment touches one module: tests/toy_image_experiment.py (two
small MLPs on 400 real digits) registered at run time runs through run, the trained-model
cache, sweep and report."""

import json

import pytest

import featavg
from featavg.api import run_sweep
from featavg.experiments.registry import register, unregister
from toy_image_experiment import EXPERIMENT


@pytest.fixture
def toy():
    register(EXPERIMENT)
    yield EXPERIMENT
    unregister(EXPERIMENT.name)


@pytest.mark.slow
def test_toy_real_data_experiment_end_to_end(toy, tmp_path):
    root = tmp_path / "runs"
    first = featavg.run("toy-image", root=root, device="cpu")
    assert not first.cached and first.summary["models_cached"] == [False, False]
    # a chance-level binary task would be 0.5: both models learnt something from 400 digits
    assert first.summary["clean_acc_binary"] > 0.6
    assert first.summary["clean_acc_group_argmax"] > 0.6
    models = sorted(p.name for p in (root / "models").iterdir() if not p.name.startswith("."))
    assert len(models) == 2 and all(m.startswith("mnist-5k-") for m in models)
    assert featavg.run("toy-image", root=root, device="cpu").cached

    # another run of the same training config (the attack side differs) is served the
    # cached models; another seed trains its own
    again = featavg.run("toy-image", root=root, device="cpu", centre_features=True)
    assert not again.cached and again.summary["models_cached"] == [True, True]
    sweep = run_sweep("toy-image", {"seed": [0, 1]}, root=root, progress=False, device="cpu")
    # the seed-0 cell is the plain run's config: served from it, never computed again
    assert sweep.cells[0].summary == first.summary
    assert sweep.cells[1].summary["models_cached"] == [False, False]
    assert len([p for p in (root / "models").iterdir() if not p.name.startswith(".")]) == 4

    page = featavg.write_report([first.directory], out=tmp_path / "report.html")
    html = page.read_text(encoding="utf-8")
    assert "Binary task, two models (toy)" in html and "clean accuracy" in html
    summary = json.loads((first.directory / "summary.json").read_text())
    assert summary["config"]["train"]["dataset"] == "mnist-5k"
