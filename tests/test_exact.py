"""Exact minimal L2 radius (featavg.attacks.two_layer.exact) against full-dimensional references.

The references live here: a bisection + PGD minimal-perturbation search in the full input
space (upper bounds), and dense-grid lower / upper bounds for tiny nets in d = 3.
"""

import math

import numpy as np
import pytest
import torch

from featavg.attacks.two_layer.exact import ExactRadiusSolver, minimal_l2_radius
from featavg.data import SyntheticConfig, sample_synthetic
from featavg.models import NetConfig, binary_ensemble, multiclass_ensemble, sum_form_net
from featavg.models.two_layer import TwoLayerNet
from featavg.training import TrainConfig, train

# ------------------------------------------------------------------ reference helpers


def _net64(net):
    w = net.linear.weight.detach().double()
    b = net.linear.bias.detach().double()
    return w, b, net.readout.double()


def _flip_objective(scores, y, readout, groups):
    """>= 0 exactly when the decision is flipped (ties count)."""
    if readout == "margin":
        return -y * scores[:, 0]
    if groups is None:  # plain argmax: every output is its own group
        groups = torch.arange(scores.shape[1])
    own = groups[None, :] == y[:, None]
    other_best = scores.masked_fill(own, -math.inf).max(1).values
    own_best = scores.masked_fill(~own, -math.inf).max(1).values
    return other_best - own_best


def _pgd_upper_bound(net, x, y, readout, groups=None, steps=60, restarts=4, bisections=22):
    """Smallest ||delta|| seen to flip each point, searching the FULL input space: bisection
    on eps, each eps attacked by normalised-gradient ascent on the flip objective projected
    onto the eps-ball (one start at 0, the others random). inf if nothing flipped."""
    w, b, a = _net64(net)
    x = x.double()
    n, d = x.shape
    y = y.double() if readout == "margin" else y.long()
    gen = torch.Generator().manual_seed(0)

    def objective(delta):
        scores = torch.relu((x.repeat(restarts, 1) + delta) @ w.T + b) @ a.T
        return _flip_objective(scores, y.repeat(restarts), readout, groups)

    best = torch.where(objective(torch.zeros(n * restarts, d))[:n] >= 0, 0.0, math.inf)
    lo = torch.zeros(n, dtype=torch.float64)
    hi = torch.full((n,), 4.0 * x.norm(dim=1).max().item(), dtype=torch.float64)
    for _ in range(bisections):
        eps = torch.where(torch.isfinite(best), (lo + hi) / 2, hi).repeat(restarts)
        start = torch.randn(n * restarts, d, generator=gen, dtype=torch.float64)
        start = start / start.norm(dim=1, keepdim=True) * eps[:, None] / 2
        start[:n] = 0.0
        delta = start.requires_grad_(True)
        found = torch.full((n * restarts,), math.inf, dtype=torch.float64)
        for t in range(steps):
            value = objective(delta)
            ok = value.detach() >= 0
            found = torch.where(ok, torch.minimum(found, delta.detach().norm(dim=1)), found)
            (grad,) = torch.autograd.grad(value.sum(), delta)
            step = eps * (0.5 * (1 - t / steps) + 0.02)
            with torch.no_grad():
                unit = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-30)
                delta = delta + step[:, None] * unit
                delta = delta * (eps / delta.norm(dim=1).clamp_min(1e-30)).clamp(max=1.0)[:, None]
            delta.requires_grad_(True)
        with torch.no_grad():
            last = torch.where(objective(delta) >= 0, delta.norm(dim=1), math.inf)
        found = torch.minimum(found, last).view(restarts, n).min(0).values
        best = torch.minimum(best, found)
        hi = torch.where(torch.isfinite(found), torch.minimum(hi, found), hi)
        lo = torch.where(torch.isfinite(found), lo, torch.maximum(lo, eps[:n]))
    return best


def _assert_minimisers_flip(net, x, y, result, readout, groups=None):
    """x + delta flips (to tolerance) with ||delta|| = radius, and (1 - 1e-6) delta does not:
    a strictly shorter perturbation on the same ray would contradict minimality."""
    w, b, a = _net64(net)
    x = x.double().flatten(1)
    delta = result.delta.flatten(1)
    r = result.radius
    inside = torch.isfinite(r) & (r > 0)
    assert torch.allclose(delta[inside].norm(dim=1), r[inside], rtol=1e-12)
    y = y.double() if readout == "margin" else y.long()
    acts = torch.relu((x + delta) @ w.T + b)
    tol = 1e-8 * (1 + (acts @ a.abs().T).max(1).values)
    obj = _flip_objective(acts @ a.T, y, readout, groups)
    assert (obj[inside] >= -tol[inside]).all()
    short = _flip_objective(
        torch.relu((x + (1 - 1e-6) * delta) @ w.T + b) @ a.T, y, readout, groups
    )
    assert (short[inside] < 0).all()


# ------------------------------------------------------------------ trained nets


@pytest.fixture(scope="module")
def trained():
    cfg = SyntheticConfig(d=60, k=4, n_train=200, n_test=120)
    ds = sample_synthetic(cfg, seed=3)
    tcfg = TrainConfig(steps=200, lr=1e-2)
    binary = binary_ensemble([0], cfg.d, NetConfig(m=3))
    train(binary, ds.x_train, ds.y_train, tcfg)
    multi = multiclass_ensemble([0], cfg.d, cfg.k, NetConfig(h=2))
    train(multi, ds.x_train, ds.c_train, tcfg)
    return ds, binary.member(0), multi.member(0)


def _rough_net(d=60, units=8, outputs=4, seed=0):
    """Random weights and biases: activation patterns that trained nets rarely show."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(units, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    b = torch.randn(units, generator=g, dtype=torch.float64) * 0.5
    a = torch.randn(outputs, units, generator=g, dtype=torch.float64)
    return TwoLayerNet(w, b, a, "binary" if outputs == 1 else "multiclass").double()


def _cases(trained):
    ds, binary, multi = trained
    groups = (ds.signs > 0).long()
    x = ds.x_test
    rough = _rough_net()
    rough_groups = torch.tensor([0, 0, 1, 1])
    rough_x = torch.randn(80, 60, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rough_pred = rough.scores(rough_x).argmax(1)
    rough_bin = _rough_net(outputs=1, seed=2)
    rough_bin_y = torch.sign(rough_bin.margin(rough_x)).detach()
    return {
        "binary-margin": (binary, x, ds.y_test, "margin", None),
        "sum-form-margin": (sum_form_net(multi, ds.signs), x, ds.y_test, "margin", None),
        "multi-argmax": (multi, x, ds.c_test, "argmax", None),
        "multi-group": (multi, x, groups[ds.c_test], "group_argmax", groups),
        "rough-margin": (rough_bin, rough_x, rough_bin_y, "margin", None),
        "rough-argmax": (rough, rough_x, rough_pred, "argmax", None),
        "rough-group": (rough, rough_x, rough_groups[rough_pred], "group_argmax", rough_groups),
    }


CASES = [
    "binary-margin",
    "sum-form-margin",
    "multi-argmax",
    "multi-group",
    "rough-margin",
    "rough-argmax",
    "rough-group",
]


@pytest.mark.parametrize("case", CASES)
def test_exact_radius_below_full_dimensional_attack(trained, case):
    net, x, y, readout, groups = _cases(trained)[case]
    result = minimal_l2_radius(net, x, y, readout=readout, groups=groups, return_delta=True)
    _assert_minimisers_flip(net, x, y, result, readout, groups)
    attack = _pgd_upper_bound(net, x.flatten(1), y, readout, groups)
    r = result.radius
    assert (r <= attack * (1 + 1e-7) + 1e-9).all(), (r - attack).max()
    # the attack is a decent reference: it gets close to the exact radius on most points
    finite = torch.isfinite(r) & (r > 0)
    assert finite.sum() >= 0.5 * len(r)
    ratio = attack[finite] / r[finite]
    assert ratio.median() < 1.02, ratio.median()


# ------------------------------------------------------------------ brute force, d = 3


def _lipschitz(net, y, readout, groups):
    """Lipschitz constant of the flip objective: |s_l - s_j| varies by at most
    sum_r |A_lr - A_jr| ||w_r|| per unit step, and max / min do not increase it."""
    w, _, a = _net64(net)
    norms = w.norm(dim=1)
    if readout == "margin":
        return (a[0].abs() @ norms).item()
    if groups is None:
        groups = torch.arange(a.shape[0])
    own, other = groups == y, groups != y
    diffs = (a[other][:, None, :] - a[own][None, :, :]).abs()
    return (diffs @ norms).max().item()


def _branch_and_bound(net, x, y, readout, groups, half_width, levels=10, n=31):
    """Lower and upper bounds on the radius in d = 3 by dense cubes, refined where needed.

    Upper: the smallest norm among evaluated points that flip. Lower: the flip objective is
    L-Lipschitz, so a cube (center p, covering radius c) that meets the flip region has
    objective >= -L c at p; every cube that could hold a flip closer than the upper bound is
    split in 8 and re-checked; the lower bound is min ||p|| - c over the surviving cubes (or
    the half width: flips outside the box are farther than that)."""
    w, b, a = _net64(net)
    lip = _lipschitz(net, y, readout, groups)
    s = half_width / n  # half side of the cubes
    axis = -half_width + s * (2 * torch.arange(n, dtype=torch.float64) + 1)
    cells = torch.cartesian_prod(axis, axis, axis)
    offsets = torch.cartesian_prod(*[torch.tensor([-0.5, 0.5], dtype=torch.float64)] * 3)
    upper, lower = math.inf, half_width
    for _ in range(levels):
        obj = _flip_objective(
            torch.relu((x + cells) @ w.T + b) @ a.T, y.expand(len(cells)), readout, groups
        )
        norms = cells.norm(dim=1)
        if (obj >= 0).any():
            upper = min(upper, norms[obj >= 0].min().item())
        c = s * math.sqrt(3)
        keep = (obj >= -lip * c) & (norms - c < upper)
        lower = min(half_width, upper, (norms[keep] - c).min().item() if keep.any() else math.inf)
        if not keep.any() or 8 * keep.sum() > 2_000_000:
            break
        s = s / 2
        cells = (cells[keep][:, None, :] + 2 * s * offsets[None]).reshape(-1, 3)
    return lower, upper


def _tiny_instances(readout, count):
    g = torch.Generator().manual_seed({"margin": 0, "argmax": 1, "group_argmax": 2}[readout])
    outputs = 1 if readout == "margin" else 3
    groups = torch.tensor([0, 0, 1]) if readout == "group_argmax" else torch.arange(outputs)
    made = 0
    while made < count:
        w = torch.randn(3, 3, generator=g, dtype=torch.float64)
        b = torch.randn(3, generator=g, dtype=torch.float64)
        a = torch.randn(outputs, 3, generator=g, dtype=torch.float64)
        x = torch.randn(1, 3, generator=g, dtype=torch.float64)
        net = TwoLayerNet(w, b, a, "binary" if outputs == 1 else "multiclass").double()
        scores = net.scores(x).detach()
        if readout == "margin":
            if scores[0, 0] == 0:
                continue
            y = torch.sign(scores[:, 0])
        else:
            y = groups[scores.argmax(1)]
        r = minimal_l2_radius(net, x, y, readout=readout, groups=groups).radius.item()
        if 0 < r < 3:  # skip misclassified and unflippable draws
            made += 1
            yield net, x, y, groups, r


@pytest.mark.parametrize("readout", ["margin", "argmax", "group_argmax"])
def test_exact_radius_matches_brute_force_in_three_dimensions(readout):
    for net, x, y, groups, r in _tiny_instances(readout, count=4):
        groups = None if readout == "margin" else groups
        _, coarse = _branch_and_bound(net, x, y, readout, groups, half_width=4.0, levels=1)
        lower, upper = _branch_and_bound(net, x, y, readout, groups, half_width=1.05 * coarse)
        assert lower - 1e-9 <= r <= upper + 1e-9, (lower, r, upper)
        assert upper - lower < 2e-2 * upper, (lower, upper)  # tight enough to mean something
        assert upper - r < 2e-3 * upper  # the grid's best flip is (nearly) as close


# ------------------------------------------------------------------ the QP solver


def test_least_distance_solver_against_slsqp_and_linprog():
    """The per-piece QP min ||z|| s.t. g z <= h, on random (also degenerate) polyhedra."""
    from scipy.optimize import linprog, minimize

    from featavg.attacks.two_layer.least_distance import least_distance

    rng = np.random.default_rng(0)
    for trial in range(150):
        r, rows = int(rng.integers(1, 9)), int(rng.integers(1, 40))
        g = rng.standard_normal((rows, r))
        if trial % 3 == 0:  # rows in a lower-dimensional subspace, some repeated
            k = max(1, r - 2)
            g = g[:, :k] @ rng.standard_normal((k, r))
            g = np.vstack([g, g[:2]])
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        if trial % 5 == 0:  # often empty
            h = rng.standard_normal(len(g))
        else:  # feasible by construction, the optimum usually on several rows
            h = g @ (rng.standard_normal(r) * rng.uniform(0.5, 5)) + rng.exponential(1, len(g))
        z = least_distance(g, h)
        lp = linprog(np.zeros(r), A_ub=g, b_ub=h, bounds=[(None, None)] * r, method="highs")
        assert (z is None) == (lp.status == 2), trial
        if z is None:
            continue
        ref = minimize(
            lambda q: (q @ q, 2 * q),
            lp.x,
            jac=True,
            method="SLSQP",
            constraints=[
                {"type": "ineq", "fun": lambda q, g=g, h=h: h - g @ q, "jac": lambda q, g=g: -g}
            ],
            options={"ftol": 1e-15, "maxiter": 2000},
        ).x
        assert np.max(g @ z - h) <= 1e-9 * (1 + np.linalg.norm(z))
        assert np.linalg.norm(z) <= np.linalg.norm(ref) * (1 + 1e-8) + 1e-12, trial
        assert np.linalg.norm(z) >= np.linalg.norm(ref) * (1 - 1e-6) - 1e-9, trial


# ------------------------------------------------------------------ structure and edges


def test_orthogonal_component_does_not_change_radius(trained):
    ds, binary, _ = trained
    w = binary.linear.weight.detach().double()
    x = ds.x_test[:40].double()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    q, _ = torch.linalg.qr(w.T)  # (d, M) basis of the row space
    noise = 10 * (noise - noise @ q @ q.T)
    base = minimal_l2_radius(binary, x, ds.y_test[:40]).radius
    moved = minimal_l2_radius(binary, x + noise, ds.y_test[:40]).radius
    assert torch.allclose(base, moved, rtol=1e-8)


def test_rank_deficient_first_layer():
    g = torch.Generator().manual_seed(7)
    w = torch.randn(2, 5, generator=g, dtype=torch.float64)
    w = torch.cat([w, (w[0] + 2 * w[1])[None], w[:1]])  # rank 2, M = 4
    b = torch.randn(4, generator=g, dtype=torch.float64)
    a = torch.tensor([[1.0, -1.0, 0.5, -2.0]], dtype=torch.float64)
    net = TwoLayerNet(w, b, a, "binary").double()
    x = torch.randn(30, 5, generator=g, dtype=torch.float64) * 2
    y = torch.where(net.margin(x) > 0, 1.0, -1.0).detach()  # f = 0: already flipped
    result = minimal_l2_radius(net, x, y, return_delta=True)
    _assert_minimisers_flip(net, x, y, result, "margin")
    attack = _pgd_upper_bound(net, x, y, "margin")
    assert (result.radius <= attack * (1 + 1e-7) + 1e-9).all()
    # the minimiser lies in the row space of W
    q, _ = torch.linalg.qr(w[:2].T)
    assert torch.allclose(result.delta @ q @ q.T, result.delta, atol=1e-9)


def test_misclassified_unflippable_and_inputs_of_any_shape():
    w = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    a = torch.tensor([[1.0, 1.0]], dtype=torch.float64)  # f >= 0: y = -1 is always wrong
    net = TwoLayerNet(w, torch.tensor([1.0, -5.0], dtype=torch.float64), a, "binary").double()
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    r = minimal_l2_radius(net, x, torch.tensor([-1.0, 1.0]), return_delta=True)
    assert r.radius[0] == 0  # f(x) = 2 > 0 with y = -1: already wrong
    assert r.radius[1] == pytest.approx(4.0)  # y = +1: only the tie f = 0 at x_0 = -1 flips
    assert torch.equal(r.delta[0], torch.zeros(4))
    zero = TwoLayerNet(torch.zeros(2, 4), torch.tensor([1.0, 0.0]), a, "binary").double()
    r = minimal_l2_radius(zero, x.view(2, 2, 2), torch.tensor([1.0, 1.0]), return_delta=True)
    assert torch.isinf(r.radius).all() and r.delta.shape == (2, 2, 2)


def test_label_validation():
    net = _rough_net(d=5, units=3, outputs=3)
    x = torch.randn(2, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="binary"):
        minimal_l2_radius(net, x, torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="labels"):
        minimal_l2_radius(net, x, torch.tensor([0, 3]), readout="argmax")
    with pytest.raises(ValueError, match="groups"):
        minimal_l2_radius(net, x, torch.tensor([0, 1]), readout="group_argmax")
    with pytest.raises(ValueError, match="readout"):
        minimal_l2_radius(net, x, torch.tensor([0, 1]), readout="softmax")


def test_paper_size_binary_net_radii_are_finite_and_verified():
    """M = 10 units, d = 3072, 1000 points (the paper's binary net): every point gets a
    finite radius whose minimiser flips the net (speed lives in benchmarks/)."""
    g = torch.Generator().manual_seed(0)
    centers = torch.linalg.qr(torch.randn(3072, 10, generator=g))[0].T * math.sqrt(3072)
    signs = torch.tensor([1.0] * 5 + [-1.0] * 5)
    c = torch.arange(1000) % 10
    x = centers[c] + torch.randn(1000, 3072, generator=g)
    # a feature-averaging-like net: each class's units near that class's mean center
    means = torch.stack([centers[:5].mean(0), centers[5:].mean(0)]).repeat_interleave(5, 0)
    w = 1e-2 * means + 1e-3 * torch.randn(10, 3072, generator=g)
    net = TwoLayerNet(w, torch.full((10,), 1e-3), torch.tensor([[1.0] * 5 + [-1.0] * 5]), "binary")
    result = minimal_l2_radius(net.double(), x.double(), signs[c], return_delta=True)
    assert np.isfinite(result.radius.numpy()).all()
    _assert_minimisers_flip(net.double(), x.double(), signs[c], result, "margin")


def test_shared_solver_equals_one_call_per_readout(trained):
    """One ExactRadiusSolver per first layer serves the k-way, group-argmax and sum forms
    with exactly the radii of separate minimal_l2_radius calls."""
    ds, _, multi = trained
    x, c, y = ds.x_test.double(), ds.c_test, ds.y_test
    signs = ds.signs
    groups = (signs > 0).long()
    solver = ExactRadiusSolver(multi.linear.weight, multi.linear.bias, x)
    sum_net = sum_form_net(multi, signs)
    cases = [
        (multi, c, "argmax", None),
        (multi, (y > 0).long(), "group_argmax", groups),
        (sum_net, y, "margin", None),
    ]
    for net, labels, readout, grp in cases:
        shared = solver.radius(net.readout, labels, readout, groups=grp).radius
        alone = minimal_l2_radius(net, x, labels, readout, groups=grp).radius
        assert torch.equal(shared, alone), readout
        assert (shared > 0).float().mean() > 0.5  # a non-trivial case
