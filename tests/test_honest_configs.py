"""Off the default config the synthetic experiments stay honest: fields an experiment sets
itself are refused, exact radii that cannot be computed are said so, the radius grid
follows sqrt(d), slopes share one grid, and labels name the actual k."""

import math

import pytest

from featavg.config import ConfigError, build_config
from featavg.experiments.registry import get_experiment
from featavg.experiments.runner import run_experiment
from featavg.experiments.synthetic_attack import (
    PAPER_RADII,
    AttackConfig,
    attack_radii,
    scaled_paper_radii,
)
from featavg.experiments.synthetic_common import TINY_DATA
from featavg.experiments.synthetic_scaling import fit_grid
from featavg.runs.context import open_context

SCALING = get_experiment("synthetic-scaling").config_cls


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"data": {"d": 100}}, "data.d"),
        ({"data": {"k": 4}}, "data.k"),
        ({"data": {"n_train": 50}}, "data.n_train"),
        ({"data": {"positive": [0]}}, "data.positive"),
        ({"attack": {"radii": [0.0, 1.0]}}, "attack.radii"),
    ],
)
def test_scaling_refuses_fields_it_sets_itself(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_config(SCALING, overrides)


def test_scaling_honours_the_other_data_fields():
    cfg = build_config(SCALING, {"data": {"noise_std": 0.5}, "ks": [2, 4]})
    assert cfg.setting_data(60, 4).noise_std == 0.5 and cfg.setting_data(60, 4).k == 4
    with pytest.raises(ConfigError, match="max_cosine"):  # invalid at k = 16: caught up front
        build_config(SCALING, {"data": {"max_cosine": 0.1}})


def test_dynamics_refuses_nets_without_exact_radii():
    cls = get_experiment("synthetic-dynamics").config_cls
    with pytest.raises(ConfigError, match="at most 16 hidden units"):
        build_config(cls, {"net": {"m": 9}})


def test_default_radius_grid_follows_sqrt_d():
    assert attack_radii(AttackConfig(), 3072) == PAPER_RADII  # the paper's grid, exactly
    small = attack_radii(AttackConfig(), 48)
    assert len(small) == len(PAPER_RADII)
    assert small[-1] == pytest.approx(58 * math.sqrt(48 / 3072))
    assert scaled_paper_radii(48)[1] == pytest.approx(2 / 8)
    assert attack_radii(AttackConfig(radii=(0.0, 3.0)), 48) == (0.0, 3.0)


def test_slopes_share_one_grid():
    full = {"pgd_binary": [1.0], "exact_binary": [1.0]}
    pgd_only = {"pgd_binary": [1.0]}
    assert fit_grid([2, 4, 8], [full, full, pgd_only]) == ([0, 1], ["pgd_binary", "exact_binary"])
    assert fit_grid([2, 4, 8], [full, pgd_only, pgd_only]) == ([0, 1, 2], ["pgd_binary"])


def test_robustness_says_which_exact_radii_are_missing(tmp_path):
    result = run_experiment(
        "synthetic-robustness",
        overrides={
            "data": TINY_DATA,
            "net": {"m": 9},  # 18 binary units: beyond the exact solver
            "train": {"steps": 5},
            "attack": {"radii": [0.0, 4.0]},
        },
        out=tmp_path / "r",
        ctx=open_context("cpu"),
    )
    summary = result.summary
    assert "exact_median_radius_binary" not in summary
    assert "exact_median_radius_multiclass" in summary  # 4 fine-grained units: exact
    (note,) = summary["notes"]
    assert "binary net (18 units)" in note and "at most 16" in note


def test_figure_labels_name_the_actual_k():
    from featavg.plots.robustness import readout_label

    assert readout_label("multiclass", 4) == "4-class net, 4-way accuracy"
    assert "10-class" not in readout_label("derived_argmax", 4)
