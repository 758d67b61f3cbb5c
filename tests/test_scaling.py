"""synthetic-scaling: the k- and d-scaling laws of the averaging net (the slope fit itself
is tested in test_curves.py)."""

from featavg.experiments.runner import run_experiment


def test_scaling_run_recovers_theory_slopes(tmp_path):
    overrides = {
        "ks": [2, 4, 8],
        "d_for_k": 600,
        "ds": [150, 600],
        "k_for_d": 4,
        "points_per_cluster": 40,
        "n_test": 80,
        "seeds": 2,
    }
    s = run_experiment("synthetic-scaling", overrides=overrides, out=tmp_path).summary
    # exact radii of the averaging net follow sqrt(d/k); the decoupled argmax read-out
    # does not shrink with k
    assert -0.65 < s["slope_k_exact_binary"] < -0.35
    assert abs(s["slope_k_exact_derived_argmax"]) < 0.15
    assert 0.35 < s["slope_d_exact_binary"] < 0.65
    lo, hi = s["slope_k_binary_ci95"]
    assert lo <= s["slope_k_binary"] <= hi
    assert (tmp_path / "scaling_k.png").is_file() and (tmp_path / "scaling_d.png").is_file()
