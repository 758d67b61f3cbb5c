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
        "he_init": True,
        "lrs": [0.003],
        "ns": [300],
        "n_lrs": [[300, 0.003]],
        "noise_stds": [0.5],
        "max_cosines": [0.1],
        "norm_ranges": [[0.8, 1.2]],
        "adversarial_eps": [3.0],
        "adversarial_m": 5,
        "adversarial_steps": 20,
    }
    s = run_experiment("synthetic-ablations", overrides=overrides, out=tmp_path / "a").summary
    table = pd.read_csv(tmp_path / "a" / "ablations.csv")
    # paper, init std, He, lr, n, (n, lr), noise, near-orthogonal, norms, adversarial
    assert len(table) == 10
    settings = s["settings"]
    names = [
        "paper config",
        "init std 0.1",
        "He init (std 0.129)",
        "lr 0.003",
        "n = 300",
        "n = 300, lr 0.003",
        "noise std 0.5 (authors' 'SNR = 0.5')",
        "nearly orthogonal (|cos| <= 0.1)",
        "norms 0.8, 1.2 sqrt(d) per class (ladder)",  # k = 4: two clusters per class
        "adversarial training eps 3",
    ]
    assert list(settings) == names == list(table["setting"])
    # the claim's list of what ran is built from the config: exactly these settings
    assert s["notes"][0].startswith("Settings in this run (1 seed each): " + "; ".join(names) + ".")
    # the large init leaves the small-init regime, and a note says so with the measurement
    assert settings["init std 0.1"]["weight_change_binary"] < 1
    assert settings["paper config"]["weight_change_binary"] > 1
    assert any(n.startswith("init std 0.1: GD moved") for n in s["notes"][1:])
    he = [n for n in s["notes"] if n.startswith("He init (std 0.129) is a large init")]
    assert len(he) == 1 and "GD moved them by only" in he[0]
    assert not any(n.startswith("paper config") for n in s["notes"])
    # one seed: no interval anywhere
    assert not any(k.endswith("_ci95") for row in settings.values() for k in row)
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
    n_lr_alone = run_experiment(
        "synthetic-alignment",
        overrides={"data": {**DATA, "n_train": 300}, "train": {**TRAIN, "lr": 0.003}},
        out=tmp_path / "d",
    ).summary
    assert settings["n = 300, lr 0.003"]["cos_same_class_mean_binary"] == pytest.approx(
        n_lr_alone["cos_same_class_mean_binary"], rel=1e-4
    )
    # large init destroys the averaging pattern (SPEC §3)
    assert (
        settings["init std 0.1"]["cos_same_class_mean_binary"]
        < 0.5 * settings["paper config"]["cos_same_class_mean_binary"]
    )
    assert "adversarial training eps 3" in settings
    assert (tmp_path / "a" / "ablations.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"max_cosines": [0.5]}, "max_cosine"),
        ({"noise_stds": [0.0]}, "noise_stds"),
        ({"n_lrs": [[100, -1.0]]}, "n_lrs"),
        # the ablations set each setting's init themselves: another init is refused
        ({"net": {"init": "he"}}, "net.init"),
        # the old name, whose meaning (1 / noise std) was the opposite of the authors' label
        ({"snrs": [2.0]}, "snrs"),
    ],
)
def test_ablation_settings_are_validated(overrides, match):
    from featavg.config import ConfigError

    with pytest.raises(ConfigError, match=match):
        run_experiment(
            "synthetic-ablations",
            overrides={"data": DATA, **overrides},
            out="/nonexistent/never",
        )


def test_norm_ladder_is_the_authors_within_each_class():
    from featavg.data.synthetic import SyntheticConfig, make_centers, norm_ladder

    cfg = SyntheticConfig(d=50, norm_range=(0.8, 1.2), norm_spread="ladder")
    ladder = [0.8, 0.9, 1.0, 1.1, 1.2]
    assert norm_ladder(cfg).tolist() == pytest.approx(ladder * 2)
    norms = make_centers(cfg, 3).double().norm(dim=1) / math.sqrt(50)
    assert norms.tolist() == pytest.approx(ladder * 2, rel=1e-6)
    odd = SyntheticConfig(d=50, k=3, norm_range=(0.6, 1.4), norm_spread="ladder")
    assert norm_ladder(odd).tolist() == pytest.approx([1.0, 0.6, 1.4])  # J+ = {0}
    # the default draws uniformly: every norm inside the range, not on the ladder
    drawn = make_centers(cfg.model_copy(update={"norm_spread": "uniform"}), 3).norm(dim=1)
    assert ((drawn >= 0.8 * math.sqrt(50) - 1e-4) & (drawn <= 1.2 * math.sqrt(50) + 1e-4)).all()


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
