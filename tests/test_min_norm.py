"""Minimum-norm attacks (featavg.attacks.min_norm): FMN (L2, L-inf) and DDN (L2).

Invariants on a small trained MLP (every returned x_adv is misclassified, its distance is
the reported norm, box and bookkeeping respected), and an independent reference: on linear
models the exact minimal distance to the decision boundary is known in closed form (binary)
or by a small quadratic program (10 classes read out by parity), so the attacks must land
within 2 % of it and can never go below it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import nn

from featavg.attacks import AttackSettings, BinaryMargin, CrossEntropy, GroupCrossEntropy
from featavg.attacks.min_norm import ddn, fmn, lp_norm, margin

D, K = 16, 10
PARITY = torch.arange(K) % 2
METHODS = [("fmn", "l2"), ("fmn", "linf"), ("ddn", "l2")]
ATTACKS = {"fmn": fmn, "ddn": ddn}


def clusters(n: int, seed: int, noise: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """n points (n, D) float64 around K fixed Gaussian centres, and their classes (n,)."""
    centers = torch.randn(K, D, generator=torch.Generator().manual_seed(123), dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(0, K, (n,), generator=g)
    return centers[c] + noise * torch.randn(n, D, generator=g, dtype=torch.float64), c


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    """A 10-class ReLU MLP (float64) trained to ~100 % on the clusters."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(D, 64), nn.ReLU(), nn.Linear(64, K)).double()
    x, c = clusters(600, seed=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), c).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def test_points() -> tuple[torch.Tensor, torch.Tensor]:
    """60 test points; the first 4 carry a wrong label, so they are misclassified clean."""
    x, c = clusters(60, seed=2)
    c[:4] = (c[:4] + 1) % K
    return x, c


def run(method, model, x, y, steps=None, **kw):
    """FMN or DDN by name, ``steps`` of it."""
    return ATTACKS[method](model, x, y, AttackSettings(min_norm_steps=steps, **kw))


@pytest.mark.parametrize("group", [False, True], ids=["classes", "parity-groups"])
@pytest.mark.parametrize(("method", "norm"), METHODS)
def test_returned_points_are_adversarial_at_the_reported_norm(
    mlp, test_points, method, norm, group
):
    x, c = test_points
    objective = GroupCrossEntropy(PARITY) if group else CrossEntropy()
    y = c % 2 if group else c
    steps = 40
    result = run(method, mlp, x, y, norm=norm, steps=steps, objective=objective)
    with torch.no_grad():
        clean_correct = objective.correct(mlp(x), y)
        adv_logits = mlp(result.x_adv)
    found = torch.isfinite(result.norms)
    assert found.float().mean() >= 0.95
    # success is the objective's: for the group read-out, the group of the argmax changed
    assert not objective.correct(adv_logits, y)[found].any()
    if group:
        assert (PARITY[adv_logits.argmax(1)] != y)[found].all()
    distance = lp_norm(result.x_adv - x, norm)
    assert torch.all(distance[found] <= result.norms[found] + 1e-5)
    assert torch.allclose(distance[found], result.norms[found], atol=1e-9)
    # misclassified clean: norm 0, x itself; not found: x itself
    assert torch.equal(result.norms[~clean_correct], torch.zeros(int((~clean_correct).sum())))
    assert torch.equal(result.x_adv[~found | ~clean_correct], x[~found | ~clean_correct])
    assert (result.norms[clean_correct] > 0).all()
    # cost: one gradient evaluation per step and point attacked, two forward passes
    n_attacked = int(clean_correct.sum())
    assert result.gradient_evaluations == steps * n_attacked
    assert result.forward_evaluations == x.shape[0] + n_attacked
    assert result.wall_s > 0 and result.method == method and result.norm == norm


@pytest.mark.parametrize(("method", "norm"), METHODS)
def test_linear_binary_model_reaches_the_exact_distance(method, norm):
    """For logits W x + b with 2 classes the boundary is the hyperplane w.x + b' = 0, w the
    row difference: the exact minimal distance is |w.x + b'| / ||w||_2 (L2) or / ||w||_1
    (L-inf, the dual norm)."""
    torch.manual_seed(3)
    linear = nn.Linear(D, 2).double()
    x = torch.randn(100, D, dtype=torch.float64)
    with torch.no_grad():
        y = linear(x).argmax(1)
        w = linear.weight[1] - linear.weight[0]
        f = x @ w + linear.bias[1] - linear.bias[0]
    exact = f.abs() / (w.norm() if norm == "l2" else w.abs().sum())
    result = run(method, linear, x, y, norm=norm, steps=100)
    ratio = result.norms / exact
    assert torch.isfinite(ratio).all()
    assert ratio.min() >= 1 - 1e-9  # no attack beats the exact minimum
    assert ratio.max() <= 1.02


def test_binary_margin_model_reaches_the_exact_distance():
    torch.manual_seed(4)
    linear = nn.Linear(D, 1).double()
    x = torch.randn(50, D, dtype=torch.float64)
    with torch.no_grad():
        f = linear(x)[:, 0]
    y = torch.where(f > 0, 1, -1)
    exact = f.abs() / linear.weight.norm()
    result = fmn(
        linear, x, y, AttackSettings(norm="l2", min_norm_steps=60, objective=BinaryMargin())
    )
    ratio = result.norms / exact
    assert ratio.min() >= 1 - 1e-9 and ratio.max() <= 1.02


def exact_group_distance(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: int) -> float:
    """Smallest ||delta||_2 that moves the argmax of W (x + delta) + b out of parity group y:
    min over classes j of the other group of the distance to the polyhedron
    {z_j >= z_i for every i of group y}, each a small QP (solved by SLSQP)."""
    own = [i for i in range(K) if i % 2 == y]
    best = math.inf
    for j in (j for j in range(K) if j % 2 != y):
        a = weight[own] - weight[j]  # need a (x + delta) + (b_own - b_j) <= 0
        c = -(a @ x + bias[own] - bias[j])
        res = minimize(
            lambda d: d @ d,
            np.zeros(D),
            jac=lambda d: 2 * d,
            constraints=[
                {"type": "ineq", "fun": lambda d, a=a, c=c: c - a @ d, "jac": lambda d, a=a: -a}
            ],
            method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 500},
        )
        assert res.success
        best = min(best, math.sqrt(res.fun))
    return best


@pytest.mark.parametrize("method", ["fmn", "ddn"])
def test_group_readout_of_a_linear_model_never_beats_the_exact_distance(method):
    """A 10-class linear model read out by parity: the region to reach is a union of
    polyhedra (one per class of the other group), not convex, so a gradient attack can stop
    at a local minimum (the nearest facet of the class that is best when it starts). Found
    here: most points within 2 % of the exact distance, a few up to ~30 % above (PGD-7 with
    the paper's sphere start is ~50 % above on average); never below."""
    torch.manual_seed(5)
    linear = nn.Linear(D, K).double()
    x = torch.randn(24, D, dtype=torch.float64)
    with torch.no_grad():
        y = PARITY[linear(x).argmax(1)]
    weight, bias = linear.weight.detach().numpy(), linear.bias.detach().numpy()
    exact = torch.tensor(
        [exact_group_distance(weight, bias, x[i].numpy(), int(y[i])) for i in range(len(x))]
    )
    result = run(method, linear, x, y, steps=100, objective=GroupCrossEntropy(PARITY))
    ratio = result.norms / exact
    assert ratio.min() >= 1 - 1e-6  # the QP's tolerance, not the attack's
    assert (ratio <= 1.02).float().mean() >= 0.6
    assert ratio.max() <= 1.5


@pytest.mark.parametrize(("method", "norm"), METHODS)
def test_box_is_respected(mlp, method, norm):
    """Inputs in [0, 1]^D (the clusters squashed by a sigmoid) stay there."""
    x, c = clusters(40, seed=6)
    x = torch.sigmoid(x)
    with torch.no_grad():
        y = mlp(x).argmax(1)  # labels the model gets right: every point is attacked
    result = run(method, mlp, x, y, norm=norm, steps=40, box=(0.0, 1.0))
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    found = torch.isfinite(result.norms)
    assert found.float().mean() >= 0.9
    assert not CrossEntropy().correct(mlp(result.x_adv), y)[found].any()


@pytest.mark.parametrize(("method", "norm"), METHODS)
def test_chunks_do_not_change_the_result(mlp, test_points, method, norm):
    x, c = test_points
    whole = run(method, mlp, x, c, norm=norm, steps=20)
    chunked = run(method, mlp, x, c, norm=norm, steps=20, batch_size=7)
    assert torch.allclose(whole.norms, chunked.norms, rtol=1e-9)
    assert whole.gradient_evaluations == chunked.gradient_evaluations


def test_image_shaped_inputs_and_float32():
    """A small CNN on (B, 1, 6, 6) float32 images: the attacks flatten and restore shapes."""
    torch.manual_seed(7)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    x = torch.rand(10, 1, 6, 6)
    y = cnn(x).argmax(1)
    for method, norm in METHODS:
        result = run(method, cnn, x, y, norm=norm, steps=30, box=(0.0, 1.0))
        assert result.x_adv.shape == x.shape and result.x_adv.dtype == torch.float32
        found = torch.isfinite(result.norms)
        assert found.all()
        assert not CrossEntropy().correct(cnn(result.x_adv), y).any()


def test_margin_sign_is_the_objectives_correctness():
    """margin > 0 exactly where the objective counts the prediction correct (no ties in
    continuous random logits), and it equals its definition, written out per row."""
    g = torch.Generator().manual_seed(8)
    logits = torch.randn(500, K, generator=g, dtype=torch.float64)
    y = torch.randint(0, K, (500,), generator=g)
    m = margin(CrossEntropy(), logits, y)
    assert torch.equal(m > 0, CrossEntropy().correct(logits, y))
    other = [
        max(v for j, v in enumerate(row.tolist()) if j != t)
        for row, t in zip(logits, y, strict=True)
    ]
    assert torch.allclose(
        m, logits[torch.arange(500), y] - torch.tensor(other, dtype=torch.float64)
    )
    group = GroupCrossEntropy(PARITY)
    m = margin(group, logits, y % 2)
    assert torch.equal(m > 0, group.correct(logits, y % 2))
    own = logits[:, PARITY == 0].amax(1), logits[:, PARITY == 1].amax(1)
    expected = torch.where(y % 2 == 0, own[0] - own[1], own[1] - own[0])
    assert torch.allclose(m, expected)


def test_bad_arguments():
    linear = nn.Linear(D, 2).double()
    x = torch.randn(4, D, dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="norm"):
        ddn(linear, x, y, AttackSettings(norm="linf"))
    with pytest.raises(ValueError, match="norm"):
        fmn(linear, x, y, AttackSettings(norm="l1"))
    with pytest.raises(ValueError, match="box"):
        fmn(linear, x, y, AttackSettings(box=(0.0, 1.0)))  # x has negative entries

    with pytest.raises(TypeError, match="objective"):
        margin(object(), torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
