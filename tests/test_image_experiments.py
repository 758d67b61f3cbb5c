"""The real-data robustness experiments: mnist-robustness, mnist-linf, cifar10-robustness.

References are independent of the code under test: the sum form is the formula
F = sum_{J+} f_j - sum_{J-} f_j written out, the argmax read-out the group of a plain
argmax; the incremental curve is checked against the paper's per-radius protocol run on
the same model (same flip radii, never a higher curve). The CI test runs
``mnist-robustness --preset quick`` on real Fashion-MNIST (a stand-in for MNIST).
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch import nn

from featavg.attacks.core import CurveResult
from featavg.config import ConfigError, build_config
from featavg.data.images import load_dataset
from featavg.experiments.image_attack import (
    ReadoutCurves,
    attack_readouts,
    more_robust,
    more_robust_statement,
    pixel_units,
)
from featavg.experiments.image_common import ImageAttackSection
from featavg.experiments.registry import get_experiment
from featavg.experiments.runner import run_experiment
from featavg.models.image_classifier import CIFAR_AUTHORS, MNIST_HALF
from featavg.models.readouts import READOUTS, SumReadout, build_readouts, membership_matrix
from featavg.trained_models import load_job_data

NAMES = ("mnist-robustness", "mnist-linf", "cifar10-robustness")
PARITY = [c % 2 for c in range(10)]
HALVES = [int(c >= 5) for c in range(10)]


def fashion_available() -> bool:
    try:
        load_dataset("fashion-mnist")
    except ConfigError:
        return False
    return True


needs_fashion = pytest.mark.skipif(not fashion_available(), reason="no Fashion-MNIST files")


# ------------------------------------------------------------------ read-outs


@pytest.mark.parametrize("groups", [PARITY, HALVES])
def test_sum_readout_is_the_sum_form(groups):
    net = nn.Linear(7, 10)
    x = torch.randn(32, 7)
    f = net(x)
    plus = [j for j in range(10) if groups[j] == 1]
    minus = [j for j in range(10) if groups[j] == 0]
    big_f = f[:, plus].sum(1) - f[:, minus].sum(1)  # F(x) of SPEC §1, written out
    out = SumReadout(net, groups)(x)
    assert out.shape == (32, 2)
    torch.testing.assert_close(out[:, 1] - out[:, 0], big_f)
    # its 2-logit cross-entropy is the logistic loss softplus(-y F) with y = +-1
    y = torch.randint(0, 2, (32,))
    ce = nn.functional.cross_entropy(out, y, reduction="none")
    torch.testing.assert_close(ce, nn.functional.softplus(-(2 * y - 1) * big_f))


def test_membership_matrix_and_readout_targets():
    m = membership_matrix(HALVES)
    assert m.shape == (10, 2) and m.sum(0).tolist() == [5.0, 5.0]
    assert m[:5, 0].tolist() == [1.0] * 5 and m[5:, 1].tolist() == [1.0] * 5
    readouts = build_readouts(nn.Linear(4, 2), nn.Linear(4, 10), PARITY)
    assert list(readouts) == list(READOUTS)
    y_fine = torch.tensor([0, 1, 2, 3, 9])
    assert readouts["tenway"].labels(y_fine, PARITY).tolist() == [0, 1, 2, 3, 9]
    for name in ("binary", "group_argmax", "sum"):
        assert readouts[name].labels(y_fine, PARITY).tolist() == [0, 1, 0, 1, 1]
    with pytest.raises(ValueError, match="unknown"):
        build_readouts(nn.Linear(4, 2), nn.Linear(4, 10), PARITY, names=["nope"])


def test_group_argmax_correct_is_the_group_of_the_argmax():
    fine = nn.Linear(5, 10)
    readout = build_readouts(nn.Linear(5, 2), fine, HALVES)["group_argmax"]
    x = torch.randn(200, 5)
    y = torch.randint(0, 2, (200,))
    logits = readout.module(x)
    expected = torch.tensor(HALVES)[fine(x).argmax(1)] == y
    assert torch.equal(readout.objective.correct(logits, y), expected)
    # the group loss: -log of the summed softmax over the true group
    probs = logits.softmax(1)
    mask = torch.tensor(HALVES)[None, :] == y[:, None]
    ref = -torch.log((probs * mask).sum(1))
    torch.testing.assert_close(readout.objective.loss(logits, y), ref)


# ------------------------------------------------------------------ units and verdicts


def test_pixel_units():
    mnist = pixel_units(MNIST_HALF, "l2")
    assert mnist.exact and mnist.to_pixel(1.0) == pytest.approx(0.5)
    cifar = pixel_units(CIFAR_AUTHORS, "l2")
    assert not cifar.exact and "approx" in cifar.axis_label
    # the typical factor lies within the exact bounds 1/max std .. 1/min std
    assert cifar.lo < cifar.factor < cifar.hi
    assert cifar.lo == pytest.approx(1 / 0.2023) and cifar.hi == pytest.approx(1 / 0.1994)


def _curve(flip: list[float], eps: list[float]) -> CurveResult:
    return CurveResult.from_flip_radius(
        torch.tensor(eps, dtype=torch.float64),
        torch.tensor(flip, dtype=torch.float64),
        gradient_evaluations=0,
        forward_evaluations=0,
        wall_s=0.0,
        method="incremental",
        norm="l2",
    )


def test_more_robust_states_the_verdict_per_radius():
    eps = [0.0, 1.0, 2.0, 3.0]
    readouts = build_readouts(nn.Linear(1, 2), nn.Linear(1, 10), PARITY)
    curves = {
        "binary": ReadoutCurves(readouts["binary"], 1.0, {"incremental": _curve([1.5, 2.5], eps)}),
        "group_argmax": ReadoutCurves(
            readouts["group_argmax"], 1.0, {"incremental": _curve([0.5, 3.5], eps)}
        ),
    }
    rows, fraction = more_robust(curves, "incremental", pixel_units(MNIST_HALF, "l2"))
    # binary: 1, 1, 0.5, 0; 10-class: 1, 0.5, 0.5, 0.5
    assert [r["verdict"] for r in rows] == [
        "tie",
        "binary more robust",
        "tie",
        "10-class more robust",
    ]
    assert [r["radius_pixel"] for r in rows] == [0.0, 0.5, 1.0, 1.5]
    assert fraction == pytest.approx(1 / 3)
    text = more_robust_statement(rows)
    assert "at 1 of 3 radii > 0, the binary model at 1 (ties: 1)" in text
    # |gap| 0.5 at radii 1 and 3: the first is named
    assert "largest gap -0.500" in text and "radius 1 (normalised) = 0.5 (pixels)" in text
    # paired differences over the 2 points: radius 1: (-1, 0), radius 3: (0, +1), so
    # 2 SE = 2 * std([-1, 0]) / sqrt(2) = 1 > 0.5: neither gap is beyond noise
    assert [r["two_se"] for r in rows] == pytest.approx([0.0, 1.0, 0.0, 1.0])
    assert not any(r["beyond_noise"] for r in rows)
    assert "Beyond twice the standard error of the paired difference: 10-class at 0, " in text


def test_more_robust_noise_band_is_the_paired_standard_error():
    """With many points a consistent gap is beyond noise, and two_se is 2 std(d) / sqrt(B)
    of the per-point differences."""
    eps = [0.0, 1.0]
    readouts = build_readouts(nn.Linear(1, 2), nn.Linear(1, 10), PARITY)
    # 100 points: the binary model falls at radius 1 on 30 of them, the 10-class on 5
    flip_bin = [0.5] * 30 + [9.0] * 70
    flip_ten = [0.5] * 5 + [9.0] * 95
    curves = {
        "binary": ReadoutCurves(readouts["binary"], 1.0, {"m": _curve(flip_bin, eps)}),
        "group_argmax": ReadoutCurves(readouts["group_argmax"], 1.0, {"m": _curve(flip_ten, eps)}),
    }
    rows, _ = more_robust(curves, "m", pixel_units(MNIST_HALF, "l2"))
    d = torch.tensor([0.0] * 5 + [1.0] * 25 + [0.0] * 70, dtype=torch.float64)
    assert rows[1]["difference"] == pytest.approx(0.25)
    assert rows[1]["two_se"] == pytest.approx(float(2 * d.std() / 10))
    assert rows[1]["beyond_noise"] and not rows[0]["beyond_noise"]


# ------------------------------------------------------------------ attacks


def test_incremental_matches_the_per_radius_protocol():
    """Same flip radii as the paper's per-radius PGD for every read-out, a curve never
    above it, and monotone; at a fraction of the gradient evaluations."""
    torch.manual_seed(0)
    binary = nn.Sequential(nn.Flatten(), nn.Linear(49, 16), nn.ReLU(), nn.Linear(16, 2)).eval()
    fine = nn.Sequential(nn.Flatten(), nn.Linear(49, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    x = torch.randn(60, 1, 7, 7)
    y = torch.randint(0, 10, (60,))
    attack = ImageAttackSection(
        radii=[0.0, 0.2, 0.5, 1.0, 2.0, 4.0], method="incremental", also_per_radius=True
    )
    readouts = build_readouts(binary, fine, PARITY)
    curves = attack_readouts(readouts, x, y, PARITY, attack, seed=3)
    for name, rc in curves.items():
        inc, per = rc.curves["incremental"], rc.curves["per-radius"]
        assert torch.equal(inc.flip_radius, per.flip_radius), name
        assert bool((inc.robust_accuracy <= per.robust_accuracy + 1e-12).all()), name
        assert bool((inc.robust_accuracy.diff() <= 0).all()), name
        assert inc.gradient_evaluations < per.gradient_evaluations, name
        assert inc.robust_accuracy[0] == pytest.approx(rc.clean_acc), name
    # the comparison is not vacuous: the attacks flip points
    assert all(
        rc.curves["incremental"].robust_accuracy[-1] < rc.clean_acc for rc in curves.values()
    )


# ------------------------------------------------------------------ configs and presets


@pytest.mark.parametrize("name", NAMES)
def test_presets_resolve_and_validate(name):
    exp = get_experiment(name)
    assert {"paper", "quick"} <= set(exp.presets)
    for preset in exp.presets:
        cfg = build_config(exp.config_cls, exp.preset(preset))
        assert cfg.attack.radii[0] == 0.0
    # the default is the quick preset (a laptop run)
    assert build_config(exp.config_cls, exp.preset("quick")) == exp.config_cls()
    assert exp.reproduce is None


@pytest.mark.parametrize("name", NAMES)
def test_show_config_prints_every_preset(name, capsys):
    from featavg.cli import main

    for preset in get_experiment(name).presets:
        assert main(["show-config", name, "--preset", preset]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["grouping"] == "parity" and shown["attack"]["radii"][0] == 0.0


def test_paper_presets_follow_the_spec():
    mnist = build_config(
        get_experiment("mnist-robustness").config_cls,
        get_experiment("mnist-robustness").preset("paper"),
    )
    assert mnist.train.train_size is None and mnist.train.sgd.epochs == 10
    assert mnist.train.sgd.lr == 0.01 and mnist.train.sgd.batch_size == 128
    assert mnist.attack.points is None and mnist.attack.methods == ("fmn+descend", "per-radius")
    assert len(mnist.attack.radii) == 21 and mnist.attack.radii[-1] == pytest.approx(2.0)
    linf_exp = get_experiment("mnist-linf")
    linf = build_config(linf_exp.config_cls, linf_exp.preset("paper"))
    assert linf.attack.norm == "linf" and linf.attack.random_start == "box"
    assert linf.attack.steps == 5 and linf.attack.radii[1] == pytest.approx(0.004)
    assert len(linf.attack.radii) == 26 and linf.attack.radii[-1] == pytest.approx(0.1)
    cifar_exp = get_experiment("cifar10-robustness")
    authors = build_config(cifar_exp.config_cls, cifar_exp.preset("authors"))
    assert authors.train.model == "resnet18-imagenet" and authors.train.sgd.lr == 1e-3
    assert authors.attack.random_start == "box" and authors.attack.radii[-1] == pytest.approx(4)
    paper = build_config(cifar_exp.config_cls, cifar_exp.preset("paper"))
    assert paper.train.model == "resnet18-cifar" and paper.train.sgd.schedule == "cosine"
    assert paper.attack.radii[-1] == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"attack": {"radii": [0.0, 0.2, 0.1]}}, "attack.radii: must be strictly increasing"),
        ({"attack": {"radii": []}}, "attack.radii: need at least one"),
        ({"attack": {"radii": [0.0, -0.1]}}, "attack.radii: must be finite and >= 0"),
        ({"attack": {"radii": [0.0, math.inf]}}, "attack.radii"),
        ({"attack": {"norm": "linf", "method": "ddn"}}, "attack.method: ddn is an L2"),
        ({"grouping": "0,1,2,0,1,2,0,1,2,0"}, "grouping: need 2 groups"),
        ({"train": {"model": "vgg"}}, "train.model: must be auto or one of"),
        ({"attack": {"points": 0}}, "attack.points"),
    ],
)
def test_bad_configs_are_one_line_config_errors(override, message):
    cls = get_experiment("mnist-robustness").config_cls
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("+", r"\+")):
        build_config(cls, override)


def test_cifar_quick_is_on_the_labelled_stand_in():
    exp = get_experiment("cifar10-robustness")
    cfg = build_config(exp.config_cls, exp.preset("quick"))
    data = load_job_data(cfg.train.job("coarse", cfg.grouping, cfg.seed))
    assert data.name == "cifar10-synthetic" and "stand-in" in (data.stand_in or "")


# ------------------------------------------------------------------ whole runs


def _rows(path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_cifar_tiny_run_is_labelled_and_gives_pixel_bounds(tmp_path):
    exp = get_experiment("cifar10-robustness")
    result = run_experiment(exp.name, overrides=dict(exp.tiny), root=tmp_path, device="cpu")
    summary = result.summary
    assert summary["stand_in"] is True and "stand-in" in summary["data"]
    rows = _rows(result.directory / "robustness.csv")
    for row in rows:
        r, lo, mid, hi = (
            float(row[k]) for k in ("radius", "radius_pixel_lo", "radius_pixel", "radius_pixel_hi")
        )
        assert lo <= mid <= hi and lo == pytest.approx(r * 0.1994)
    assert "approx" in summary["pixel_units"]


@needs_fashion
@pytest.mark.slow
def test_mnist_quick_on_fashion_mnist(tmp_path):
    """CI: ``mnist-robustness --preset quick`` on real Fashion-MNIST (a stand-in for MNIST):
    clean accuracy of every read-out above its floor, monotone curves, labelled stand-in,
    pixel radius = normalised / 2, the alignment tables of both models."""
    from featavg.cli import main

    out = tmp_path / "run"
    assert main(["run", "mnist-robustness", "--preset", "quick", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stand_in"] is True
    assert summary["stand_in_label"] == "Fashion-MNIST (stand-in for MNIST)"
    assert summary["grouping"]["name"] == "parity"
    # measured here: 0.91, 0.965, 0.92, 0.785 (200 points); the floors leave room for other
    # CPUs, whose kernels round differently during training
    floors = {"binary": 0.85, "group_argmax": 0.85, "sum": 0.85, "tenway": 0.70}
    for readout, floor in floors.items():
        assert summary[f"clean_acc_{readout}"] >= floor, readout
    rows = _rows(out / "robustness.csv")
    for readout in READOUTS:
        acc = [float(r["robust_acc"]) for r in rows if r["readout"] == readout]
        assert len(acc) == 21 and all(b <= a for a, b in zip(acc, acc[1:], strict=False))
        assert acc[0] == pytest.approx(summary[f"clean_acc_{readout}"])
    for r in rows:
        assert float(r["radius_pixel"]) == pytest.approx(float(r["radius"]) / 2)
    align = _rows(out / "alignment.csv")
    assert sum(r["model"] == "binary" for r in align) == 2 * 10
    assert sum(r["model"] == "tenclass" for r in align) == 10 * 10
    assert len(summary["more_robust"]) == 21
    assert 0.0 <= summary["tenclass_more_robust_fraction"] <= 1.0
