"""AutoAttack as a check on a curve (featavg.attacks.autoattack), against closed forms.

On a linear model the exact L2 distance of each point to the decision boundary is known
(binary: |w.x + b| / ||w||; a 10-class model read out by parity: a small QP per class of the
other group), so AutoAttack's per-point flip radius must never lie below it (every success
is a verified adversarial) and must reach the smallest grid radius above it (APGD on a
linear model crosses the boundary whenever the ball does); and verify_autoattack's gap of a
curve is the number of points the curve calls robust above their exact distance.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import nn

from featavg.attacks import AttackSettings, CrossEntropy, CurveResult, GroupCrossEntropy
from featavg.attacks.autoattack import (
    AutoAttackBudget,
    autoattack_flip_radius,
    verify_autoattack,
)
from featavg.config import ConfigError

pytest.importorskip(
    "pyautoattack",
    reason="optional extra absent: pip install --no-deps pyautoattack==0.2.0 (make install)",
)

D, K = 12, 10
GRID = [round(0.1 * i, 1) for i in range(13)]
BUDGET = AutoAttackBudget(n_iter=30)  # a linear model needs few iterations


def linear_binary(n: int = 40) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 2-logit linear model [0, w.x + b], n points in float64, their predicted labels
    (all correct clean) and the exact distance of each to the boundary."""
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(D, 1).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(1, D, generator=g, dtype=torch.float64))
        lin.bias.fill_(0.1)
    net = nn.Sequential(lin, nn.ConstantPad1d((1, 0), 0.0)).eval()
    x = 0.25 * torch.randn(n, D, generator=g, dtype=torch.float64)
    with torch.no_grad():
        f = lin(x)[:, 0]
    return net, x, (f > 0).long(), f.abs() / lin.weight.norm()


def grid_above(dist: torch.Tensor) -> torch.Tensor:
    """The smallest grid radius >= each distance (inf beyond the grid)."""
    grid = torch.tensor(GRID, dtype=torch.float64)
    at = torch.searchsorted(grid, dist)
    return torch.where(at < len(GRID), grid[at.clamp_max(len(GRID) - 1)], math.inf)


def test_flip_radius_of_a_linear_model_is_the_grid_radius_above_the_distance():
    net, x, y, dist = linear_binary()
    flip, grads = autoattack_flip_radius(net, CrossEntropy(), x, y, GRID, BUDGET)
    assert torch.all(flip >= dist - 1e-9)  # never fooled inside the exact ball
    assert torch.equal(flip, grid_above(dist))
    assert grads > 0


def test_linf_flip_radius_is_the_grid_radius_above_the_linf_distance():
    """In L-inf the distance of a linear model's point to its boundary is |w.x + b| / ||w||_1
    (the dual norm): AutoAttack's L-inf APGD must never succeed inside it and must succeed
    at the first grid radius beyond it."""
    net, x, y, dist_l2 = linear_binary()
    weight = net[0].weight.detach()[0]
    dist = dist_l2 * weight.norm() / weight.abs().sum()
    budget = AutoAttackBudget(n_iter=30, norm="linf")
    flip, _ = autoattack_flip_radius(net, CrossEntropy(), x, y, GRID, budget)
    assert torch.all(flip >= dist - 1e-9)
    assert torch.equal(flip, grid_above(dist))
    with pytest.raises(ConfigError, match="AutoAttack norm: l2 or linf"):
        autoattack_flip_radius(net, CrossEntropy(), x, y, GRID, AutoAttackBudget(norm="l1"))


def test_verify_reports_the_points_a_curve_overstates():
    """A curve that calls every point robust at every radius overstates exactly the points
    whose distance is below the radius; the exact curve overstates none."""
    net, x, y, dist = linear_binary()
    eps = torch.tensor(GRID, dtype=torch.float64)

    def curve_of(flip: torch.Tensor) -> CurveResult:
        return CurveResult.from_flip_radius(
            eps, flip, gradient_evaluations=0, forward_evaluations=0, wall_s=0.0,
            method="test", norm="l2",
        )  # fmt: skip

    blind = curve_of(torch.full_like(dist, math.inf))
    checks = verify_autoattack(net, CrossEntropy(), x, y, blind, [0.3, 0.6, 1.2], BUDGET)
    for check in checks:
        expected = float((dist <= check.eps).double().mean())
        assert check.curve_accuracy == 1.0
        assert check.gap == pytest.approx(expected, abs=1e-12)
        assert check.verified_accuracy == pytest.approx(1.0 - expected, abs=1e-12)
    # once broken at 0.3, a point is not attacked again at 0.6
    assert checks[1].checked == x.shape[0] - checks[0].broken
    exact = curve_of(grid_above(dist))
    default = verify_autoattack(net, CrossEntropy(), x, y, exact, budget=BUDGET)
    assert [c.eps for c in default] == GRID[-3:]
    assert all(c.gap == 0.0 for c in default)


def exact_group_distance(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: int) -> float:
    """Smallest ||delta|| moving the argmax of W (x + delta) + b out of parity group y: the
    least distance to {z_j >= z_i for all i in group y} over classes j of the other group."""
    own = [i for i in range(K) if i % 2 == y]
    best = math.inf
    for j in (j for j in range(K) if j % 2 != y):
        a = weight[own] - weight[j]
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
        best = min(best, math.sqrt(res.fun))
    return best


def test_group_readout_through_the_group_logits():
    """A 10-class linear model read out by parity: every success is a verified change of
    the group of the argmax (never inside the exact distance), and APGD-CE + APGD-T on the
    group logits reach the grid radius above the exact distance for most points. The region
    to reach is a union of polyhedra, not convex: APGD can stop at the facet of the class
    that is best where it starts (measured: 24 of 30 points exact, the others 1 or 2 grid
    steps above, at most 1.61x the distance; the same with 100 iterations as with 30)."""
    torch.manual_seed(1)
    lin = nn.Linear(D, K).double()
    x = 0.3 * torch.randn(30, D, dtype=torch.float64)
    parity = torch.arange(K) % 2
    with torch.no_grad():
        y = parity[lin(x).argmax(1)]
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    dist = torch.tensor([exact_group_distance(w, b, x[i].numpy(), int(y[i])) for i in range(30)])
    flip, _ = autoattack_flip_radius(lin, GroupCrossEntropy(parity), x, y, GRID, BUDGET)
    assert torch.all(flip >= dist - 1e-6)
    assert (flip == grid_above(dist)).double().mean() >= 0.75
    assert torch.all(flip <= grid_above(1.7 * dist))


def test_box_frame_and_global_rng_are_respected():
    """With a box the attack stays inside it (inputs in [0, 1]); without one the clamp of
    AutoAttack's [0, 1] frame never binds. Neither run moves torch's global RNG."""
    net, x, y, dist = linear_binary()
    inside = torch.sigmoid(4 * x)
    with torch.no_grad():
        y_in = net(inside).argmax(1)
    state = torch.random.get_rng_state()
    boxed = AutoAttackBudget(n_iter=30, box=(0.0, 1.0))
    flip, _ = autoattack_flip_radius(net, CrossEntropy(), inside, y_in, GRID, boxed)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.isfinite(flip).any()
    far = x + 50.0  # far from the origin: the frame follows the data
    with torch.no_grad():
        y_far = net(far).argmax(1)
    lin = net[0]
    dist_far = (lin(far)[:, 0].abs() / lin.weight.norm()).detach()
    flip_far, _ = autoattack_flip_radius(net, CrossEntropy(), far, y_far, GRID, BUDGET)
    assert torch.equal(flip_far, grid_above(dist_far))


def test_missing_extra_is_a_one_line_config_error(monkeypatch):
    net, x, y, _ = linear_binary(5)
    monkeypatch.setitem(sys.modules, "pyautoattack", None)  # import now fails
    curve = CurveResult.from_flip_radius(
        torch.tensor(GRID, dtype=torch.float64), torch.full((5,), math.inf),
        gradient_evaluations=0, forward_evaluations=0, wall_s=0.0, method="t", norm="l2",
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"featavg\[autoattack\]") as err:
        verify_autoattack(net, CrossEntropy(), x, y, curve, [0.5])
    assert "\n" not in str(err.value)


def test_radii_off_the_curve_are_refused():
    net, x, y, _ = linear_binary(5)
    curve = CurveResult.from_flip_radius(
        torch.tensor(GRID, dtype=torch.float64), torch.full((5,), math.inf),
        gradient_evaluations=0, forward_evaluations=0, wall_s=0.0, method="t", norm="l2",
    )  # fmt: skip
    with pytest.raises(ConfigError, match="verify eps"):
        verify_autoattack(net, CrossEntropy(), x, y, curve, [0.25], BUDGET)
    assert AttackSettings().norm == "l2"  # the attack space of the check: L2
