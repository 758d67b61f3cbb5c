"""synthetic-robustness: invariants between PGD and exact curves, and the paper's claim."""

import math

import pytest

from featavg.experiments.runner import run_experiment

SMALL = {
    "data": {"d": 120, "k": 4, "n_train": 200, "n_test": 80},
    "train": {"steps": 60, "lr": 0.01},
    "attack": {"radii": [float(r) for r in range(0, 30, 2)]},
}
READOUTS = ("binary", "multiclass", "derived_sum", "derived_argmax")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rob")
    return run_experiment("synthetic-robustness", overrides={**SMALL, "seeds": 2}, out=out)


def test_certified_curve_never_exceeds_pgd_curve(small_run):
    curves = small_run.summary["curves"]
    for name in READOUTS:
        pgd, exact = curves["pgd"][name], curves["exact"][name]
        assert all(e <= p + 1e-12 for e, p in zip(exact, pgd, strict=True)), name
        assert pgd[0] == small_run.summary[f"clean_acc_{name}"]


def test_summary_keys_and_consistency(small_run):
    s = small_run.summary
    for name in READOUTS:
        assert f"radius50_{name}" in s and f"exact_median_radius_{name}" in s
        # the exact 50% radius on the grid cannot exceed PGD's
        if s[f"radius50_{name}"] is not None:
            assert s[f"radius50_exact_{name}"] <= s[f"radius50_{name}"]
    # the analytic attack is one direction, the exact radius the best of all directions
    assert s["exact_median_radius_binary"] <= s["analytic_median_radius_binary"] + 1e-6
    assert len(s["per_seed"]["radius50_binary"]) == 2
    assert math.isclose(s["theory_radius_feature_averaging"], math.sqrt(120 / 4))
    assert (small_run.directory / "robustness.png").stat().st_size > 10_000
    assert (small_run.directory / "robustness.csv").is_file()


def test_paper_config_fine_grained_at_least_twice_as_robust(tmp_path):
    """SPEC §2 / Fig. 3 left at the paper config (d=3072, k=10, 1000 test points)."""
    s = run_experiment(
        "synthetic-robustness", overrides={"attack": {"exact": False}}, out=tmp_path
    ).summary
    assert s["clean_acc_binary"] > 0.99 and s["clean_acc_multiclass"] > 0.99
    assert s["radius50_multiclass"] >= 2 * s["radius50_binary"]
    # the binary net breaks near the feature-averaging radius sqrt(d/k) = 17.5
    assert 0.8 * math.sqrt(3072 / 10) <= s["radius50_binary"] <= 1.4 * math.sqrt(3072 / 10)
