"""reproduce (every experiment + report, then all cached) and the notebook API."""

import time

import featavg
from featavg.experiments.registry import EXPERIMENTS, reproduce_plan
from featavg.reproduction import reproduce

TINY_DATA = {"d": 60, "k": 4, "n_train": 80, "n_test": 40}


def test_reproduce_plan_comes_from_the_experiments():
    plan = reproduce_plan()
    assert [name for name, _ in plan] == [
        n for n, e in EXPERIMENTS.items() if "reproduce" in e.presets
    ]
    assert dict(plan)["synthetic-robustness"] == {"seeds": 10}


def test_reproduce_runs_everything_then_is_cached(tiny_runs):
    runs, report = tiny_runs
    assert all(not r.cached for r in runs.values()) and report.is_file()
    html = report.read_text()
    for name in runs:
        assert name in html
    root = report.parent
    plan = [(name, dict(exp.tiny)) for name, exp in EXPERIMENTS.items()]
    start = time.perf_counter()
    again, _ = reproduce(root, device="cpu", progress=False, experiments=plan)
    assert all(r.cached for r in again)
    assert [r.directory for r in again] == [r.directory for r in runs.values()]
    assert time.perf_counter() - start < 5


def test_python_api_mirrors_the_cli(tmp_path):
    out = featavg.run(
        "synthetic-alignment", out=tmp_path / "a", seeds=2, data=TINY_DATA, train__steps=20
    )
    assert not out.cached and len(out.summary["per_seed"]["cos_diag_mean_multiclass"]) == 2
    assert {"step", "net", "cos_same_class_mean"} <= set(out.metrics.columns)
    assert featavg.run(
        "synthetic-alignment", out=tmp_path / "a", seeds=2, data=TINY_DATA, train__steps=20
    ).cached
    cfg = featavg.show_config("synthetic-robustness", attack__pgd_steps=20)
    assert cfg["attack"]["pgd_steps"] == 20 and cfg["data"]["d"] == 3072
    assert {e["name"] for e in featavg.list_experiments()} >= set(EXPERIMENTS)


# the real-data experiments: `featavg reproduce --real` runs them, `featavg reproduce` never
REAL_EXPERIMENTS = ("mnist-robustness", "mnist-linf", "cifar10-robustness", "cifar10-features")


def test_real_plan_adds_the_real_experiments_after_the_synthetic_ones():
    default = reproduce_plan()
    full = reproduce_plan(real=True)
    names = [name for name, _ in full]
    assert full[: len(default)] == default  # the synthetic plan first, unchanged
    assert set(REAL_EXPERIMENTS) <= set(names[len(default) :])
    assert not set(REAL_EXPERIMENTS) & {name for name, _ in default}
    for name in REAL_EXPERIMENTS:
        assert dict(full)[name] == EXPERIMENTS[name].preset("reproduce-real")


def test_real_plan_follows_the_reproduce_real_preset():
    # a user's experiment with a reproduce_real preset only: in the --real plan alone
    from dataclasses import replace

    from featavg.experiments.registry import register, unregister

    fake = replace(
        EXPERIMENTS["synthetic-alignment"],
        name="zz-real-fake",
        presets={"reproduce-real": {"seeds": 2}, "tiny": {}},
    )
    register(fake)
    try:
        assert ("zz-real-fake", {"seeds": 2}) in reproduce_plan(real=True)
        assert "zz-real-fake" not in dict(reproduce_plan())
    finally:
        unregister("zz-real-fake")


def test_cli_reproduce_real_flag_reaches_the_api(monkeypatch, tmp_path):
    from featavg import cli, reproduction

    calls = []

    def fake_reproduce(out, device, force, progress=True, real=False):
        calls.append(real)
        return [], tmp_path / "reproduce.html"  # (run results, the page), as reproduce returns

    # the CLI calls featavg.reproduction.reproduce (it needs the run results for its headline)
    monkeypatch.setattr(reproduction, "reproduce", fake_reproduce)
    args = ["reproduce", "--out", str(tmp_path), "--quiet", "--threads", "1"]
    assert cli.main([*args, "--real"]) == 0
    assert cli.main(args) == 0
    assert calls == [True, False]
