"""Every knob that scales the work of a real-data run is in its resource estimate, so the
guard refuses (one line, exit 2, before any training) a config that would run for weeks:
once ``attack.min_norm_steps=1000000000`` trained both models, then attacked until killed,
and ``head.width`` of cifar10-features allocated its head after training the backbone."""

from __future__ import annotations

import copy

import pytest

from featavg.cli import main
from featavg.config import build_config, deep_merge, nest
from featavg.experiments.registry import EXPERIMENTS, get_experiment

REAL = ("mnist-robustness", "mnist-linf", "cifar10-robustness", "cifar10-features")


def _flops(name: str, **changes: object) -> float:
    exp = get_experiment(name)
    overrides = deep_merge(copy.deepcopy(dict(exp.tiny)), nest(changes))
    return exp.estimate([build_config(exp.config_cls, overrides)]).flops


def _more_radii(name: str) -> list[float]:
    radii = list(EXPERIMENTS[name].tiny["attack"]["radii"])
    return sorted({*radii, *(r / 2 + radii[-1] / 7 for r in radii[1:])})


# (dotted key, a larger value than the tiny config's): each must raise the estimate
KNOBS = {
    "attack.min_norm_steps": 1000,
    "attack.points": 150,
    "attack.also_per_radius": True,
    "attack.verify": "autoattack",
    "train.sgd.epochs": 3,
    "train.train_size": 1200,
    "train.test_size": 400,
    "seeds": 3,
}
FEATURE_KNOBS = {"head.sgd.epochs": 20, "head.width": 30, "head.sgd.batch_size": 1}


@pytest.mark.parametrize("name", REAL)
def test_every_knob_that_scales_the_work_raises_the_estimate(name):
    base = _flops(name)
    knobs = {**KNOBS, **(FEATURE_KNOBS if name == "cifar10-features" else {})}
    if name == "cifar10-features":
        knobs["attack.points"] = 50  # its tiny config attacks 20 of 100 test points
    for key, value in knobs.items():
        assert _flops(name, **{key: value}) > base, key
    assert _flops(name, **{"attack.radii": _more_radii(name)}) > base, "attack.radii"
    # PGD's steps scale the methods that run PGD (fmn+apgd runs APGD's own 20 steps)
    for method in ("per-radius", "fmn+descend"):
        pgd = {"attack.method": method}
        more = _flops(name, **pgd, **{"attack.steps": 50})
        assert more > _flops(name, **pgd), ("attack.steps", method)


@pytest.mark.parametrize("name", REAL)
def test_a_billion_min_norm_steps_are_refused_before_any_training(
    name, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    argv = ["run", name, "--preset", "tiny", "--set", "attack.min_norm_steps=1000000000"]
    assert main([*argv, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("featavg: error: resources: "), err
    assert "days" in err and list(tmp_path.iterdir()) == []  # nothing trained or written


@pytest.mark.parametrize(
    ("setting", "what"),
    [("head.width=1000000000", "TiB"), ("head.sgd.epochs=1000000000", "days")],
)
def test_the_heads_of_cifar10_features_are_in_the_estimate(
    setting, what, tmp_path, monkeypatch, capsys
):
    """Once: a billion head units were allocated (a traceback) and a billion head epochs
    ran, both after the backbone had trained."""
    monkeypatch.chdir(tmp_path)
    argv = ["run", "cifar10-features", "--preset", "tiny", "--set", setting, "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("featavg: error: resources: "), err
    assert what in err and list(tmp_path.iterdir()) == []
