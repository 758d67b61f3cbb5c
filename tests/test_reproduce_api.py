"""reproduce (every experiment + report, then all cached) and the notebook API."""

import time

import featavg
from featavg.reproduction import SYNTHETIC, reproduce

TINY_DATA = {"d": 60, "k": 4, "n_train": 80, "n_test": 40}
TINY = {
    "synthetic-alignment": {"data": TINY_DATA, "train": {"steps": 20}},
    "synthetic-robustness": {
        "data": TINY_DATA,
        "train": {"steps": 20},
        "seeds": 2,
        "attack": {"radii": [0.0, 2.0, 4.0, 8.0]},
    },
    "synthetic-scaling": {
        "ks": [2, 4],
        "d_for_k": 60,
        "ds": [30, 60],
        "k_for_d": 4,
        "points_per_cluster": 20,
        "n_test": 20,
        "seeds": 1,
        "train": {"steps": 20},
    },
    "synthetic-ablations": {
        "data": TINY_DATA,
        "train": {"steps": 20},
        "init_stds": [0.1],
        "lrs": [],
        "ns": [],
        "snrs": [],
        "max_cosines": [],
        "norm_ranges": [],
        "adversarial_eps": [3.0],
        "adversarial_m": 2,
        "adversarial_steps": 5,
    },
    "synthetic-dynamics": {"data": TINY_DATA, "train": {"steps": 5}, "n_attack": 20},
    "synthetic-adversarial": {
        "data": TINY_DATA,
        "net": {"m": 2},
        "train": {"steps": 5},
        "eps": [0.0, 3.0],
        "attack": {"radii": [0.0, 4.0]},
    },
}


def test_reproduce_runs_everything_then_is_cached(tmp_path):
    assert [name for name, _ in SYNTHETIC] == list(TINY)  # the tiny plan mirrors the real one
    plan = list(TINY.items())
    results, report = reproduce(tmp_path, device="cpu", progress=False, experiments=plan)
    assert all(not r.cached for r in results) and report.is_file()
    html = report.read_text()
    for name in TINY:
        assert name in html
    start = time.perf_counter()
    again, _ = reproduce(tmp_path, device="cpu", progress=False, experiments=plan)
    assert all(r.cached for r in again)
    assert [r.directory for r in again] == [r.directory for r in results]
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
    assert {e["name"] for e in featavg.list_experiments()} >= set(TINY)
