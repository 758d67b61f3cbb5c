"""synthetic-ablations and synthetic-dynamics on small configs."""

import math

import pandas as pd
import pytest

from featavg.experiments.runner import run_experiment

DATA = {"d": 120, "k": 4, "n_train": 200, "n_test": 100}
TRAIN = {"steps": 60, "lr": 0.01}


def test_ablations_batched_settings_match_a_plain_run(tmp_path):
    overrides = {
        "data": DATA,
        "train": TRAIN,
        "net": {"init_std": 1e-5},
        "init_stds": [0.1],
        "he_init": False,
        "lrs": [0.003],
        "ns": [300],
        "snrs": [2.0],
        "max_cosines": [0.1],
        "norm_ranges": [[0.8, 1.2]],
        "adversarial_eps": [3.0],
        "adversarial_m": 5,
        "adversarial_steps": 20,
    }
    s = run_experiment("synthetic-ablations", overrides=overrides, out=tmp_path / "a").summary
    table = pd.read_csv(tmp_path / "a" / "ablations.csv")
    assert len(table) == 8  # paper, init std, lr, n, SNR, near-orthogonal, norms, adversarial
    settings = s["settings"]
    # a setting trained inside the batched ensemble equals the same config trained alone
    alone = run_experiment(
        "synthetic-alignment", overrides={"data": DATA, "train": TRAIN}, out=tmp_path / "b"
    ).summary
    for key in ("cos_same_class_mean_binary", "cos_diag_mean_multiclass"):
        assert settings["paper config"][key] == pytest.approx(alone[key], rel=1e-4)
    lr_alone = run_experiment(
        "synthetic-alignment",
        overrides={"data": DATA, "train": {**TRAIN, "lr": 0.003}},
        out=tmp_path / "c",
    ).summary
    assert settings["lr 0.003"]["cos_same_class_mean_binary"] == pytest.approx(
        lr_alone["cos_same_class_mean_binary"], rel=1e-4
    )
    # large init destroys the averaging pattern (SPEC §3)
    assert (
        settings["init std 0.1"]["cos_same_class_mean_binary"]
        < 0.5 * settings["paper config"]["cos_same_class_mean_binary"]
    )
    assert "adversarial training eps 3" in settings
    assert (tmp_path / "a" / "ablations.png").stat().st_size > 10_000


def test_ablation_settings_are_validated():
    from featavg.config import ConfigError

    with pytest.raises(ConfigError, match="max_cosine"):
        run_experiment(
            "synthetic-ablations",
            overrides={"data": DATA, "max_cosines": [0.5]},
            out="/nonexistent/never",
        )


def test_dynamics_records_every_step_and_converges(tmp_path):
    overrides = {
        "data": DATA,
        "train": {**TRAIN, "steps": 20},
        "n_attack": 50,
        "radii": [float(r) for r in range(0, 30)],
    }
    s = run_experiment("synthetic-dynamics", overrides=overrides, out=tmp_path).summary
    table = pd.read_csv(tmp_path / "dynamics.csv")
    assert sorted(table["step"].unique()) == list(range(21))
    assert 0 < s["averaging_onset_step"] <= 20
    # exact radius <= PGD 50% radius at every recorded step (PGD is an upper bound; the PGD
    # crossing is interpolated on a grid of spacing 1)
    assert (table["exact_median_radius_binary"] <= table["pgd_radius50_binary"] + 1.0).all()
    assert s["final_exact_median_radius_binary"] < s["final_exact_median_radius_argmax"]
    assert math.isclose(s["theory_radius_feature_averaging"], math.sqrt(120 / 4))
    assert (tmp_path / "dynamics.png").is_file()
