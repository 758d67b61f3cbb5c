"""Closed forms of featavg.theory against the exact solver and a full-dimensional optimiser.

Setting of SPEC section 2: d = 100, k = 10, J+ = the first 5 clusters, exactly orthogonal
centers of norm sqrt(d), every radius measured at cluster centers.
"""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from featavg.attacks.two_layer.exact import minimal_l2_radius
from featavg.data import SyntheticConfig, make_centers
from featavg.models import sum_form_net
from featavg.models.idealised import (
    feature_averaging_net,
    feature_decoupling_multiclass,
    feature_decoupling_net,
)
from featavg.theory import (
    radius_decoupling_argmax,
    radius_decoupling_sum,
    radius_feature_averaging,
    radius_optimal,
)

D, K = 100, 10


@pytest.fixture(scope="module")
def setting():
    cfg = SyntheticConfig(d=D, k=K, n_train=10, n_test=10)
    centers = make_centers(cfg, seed=0).double()
    signs = cfg.cluster_signs.double()
    return centers, signs


# ------------------------------------------------------------- the nets are what they say


def test_idealised_nets_compute_the_stated_formulas(setting):
    centers, signs = setting
    x = torch.randn(7, D, dtype=torch.float64) * 3 + centers[3]
    pos, neg = centers[signs > 0], centers[signs < 0]
    fa = 5 * torch.relu(x @ pos.mean(0)) - 5 * torch.relu(x @ neg.mean(0))  # |J+| = |J-| = 5
    assert torch.allclose(feature_averaging_net(centers, signs).margin(x), fa)
    b = -3.0
    units = torch.relu(x @ centers.T + b)
    fd = units[:, signs > 0].sum(1) - units[:, signs < 0].sum(1)
    assert torch.allclose(feature_decoupling_net(centers, signs, b).margin(x), fd)
    multi = feature_decoupling_multiclass(centers, b)
    assert torch.allclose(multi(x), units)
    assert torch.allclose(sum_form_net(multi, signs).margin(x), fd)


def test_idealised_nets_reject_bad_signs(setting):
    centers, _ = setting
    with pytest.raises(ValueError):
        feature_averaging_net(centers, torch.ones(K))
    with pytest.raises(ValueError):
        feature_decoupling_net(centers, torch.zeros(K))
    with pytest.raises(ValueError):
        radius_decoupling_sum(D, 5, bias=1.0)


# ------------------------------------------------------------- exact solver, every center


def _exact_at_centers(net, centers, labels, readout="margin", groups=None):
    return minimal_l2_radius(net, centers, labels, readout=readout, groups=groups).radius


def test_feature_averaging_radius_is_sqrt_d_over_k(setting):
    centers, signs = setting
    r = _exact_at_centers(feature_averaging_net(centers, signs), centers, signs)
    assert torch.allclose(r, torch.full_like(r, radius_feature_averaging(D, K)), rtol=1e-3)
    assert radius_feature_averaging(D, K) == pytest.approx(math.sqrt(D / K))


def test_feature_averaging_radius_unbalanced_split():
    cfg = SyntheticConfig(d=D, k=K, n_train=10, n_test=10, positive=(0, 1, 2))
    centers, signs = make_centers(cfg, seed=1).double(), cfg.cluster_signs.double()
    r = _exact_at_centers(feature_averaging_net(centers, signs), centers, signs)
    assert torch.allclose(r, torch.full_like(r, math.sqrt(D / K)), rtol=1e-3)


def test_decoupling_zero_bias_sum_form(setting):
    centers, signs = setting
    r = _exact_at_centers(feature_decoupling_net(centers, signs), centers, signs)
    expected = radius_decoupling_sum(D, n_opposite=5)
    assert expected == pytest.approx(math.sqrt(D / 6))
    assert torch.allclose(r, torch.full_like(r, expected), rtol=1e-3)


def test_decoupling_half_bias_sum_form(setting):
    centers, signs = setting
    r = _exact_at_centers(feature_decoupling_net(centers, signs, -D / 2), centers, signs)
    expected = radius_decoupling_sum(D, n_opposite=5, bias=-D / 2)
    assert expected == pytest.approx(math.sqrt(D) / 2)
    assert torch.allclose(r, torch.full_like(r, expected), rtol=1e-3)


def test_decoupling_argmax_forms(setting):
    centers, signs = setting
    multi = feature_decoupling_multiclass(centers)
    expected = radius_decoupling_argmax(D)
    assert expected == pytest.approx(math.sqrt(D / 2))
    r_kway = _exact_at_centers(multi, centers, torch.arange(K), "argmax")
    groups = (signs > 0).long()  # label = the group id of the cluster's binary class
    r_group = _exact_at_centers(multi, centers, groups, "group_argmax", groups)
    for r in (r_kway, r_group):
        assert torch.allclose(r, torch.full_like(r, expected), rtol=1e-3)
    # the sum form of the same fine-grained net is the binary f_FD
    r_sum = _exact_at_centers(sum_form_net(multi, signs), centers, signs)
    assert torch.allclose(r_sum, torch.full_like(r_sum, math.sqrt(D / 6)), rtol=1e-3)


@pytest.mark.parametrize("bias_frac", [-0.9, -0.6, -0.5, -0.3, -0.1, -0.02])
def test_decoupling_closed_forms_for_negative_biases(setting, bias_frac):
    centers, signs = setting
    bias = bias_frac * D
    r = _exact_at_centers(feature_decoupling_net(centers, signs, bias), centers, signs)
    expected = radius_decoupling_sum(D, 5, bias)
    assert torch.allclose(r, torch.full_like(r, expected), rtol=1e-3)
    multi = feature_decoupling_multiclass(centers, bias)
    r = _exact_at_centers(multi, centers, torch.arange(K), "argmax")
    assert torch.allclose(r, torch.full_like(r, radius_decoupling_argmax(D, bias)), rtol=1e-3)


def test_optimal_radius_is_half_the_distance_between_opposite_centers(setting):
    centers, _ = setting
    half = (centers[0] - centers[K - 1]).norm().item() / 2
    assert radius_optimal(D) == pytest.approx(half, rel=1e-5)
    # the decoupled argmax read-out reaches it; the averaged net is k^(1/2)/2 times worse
    assert radius_decoupling_argmax(D) == pytest.approx(radius_optimal(D))


# ------------------------------------------------------------- full-dimensional reference


def _slsqp_radius(w, b, coef, x, starts, rng):
    """Smallest ||delta|| found by SLSQP for  min ||delta||^2  s.t.  coef @ relu(w (x + delta)
    + b) >= 0  (every row), from random starts in the full d-dimensional space. Each returned
    point is checked to satisfy the constraints, so this is an upper bound on the radius of
    that flip condition, equal to it when SLSQP reaches the global minimum."""

    def value(delta):
        return coef @ np.maximum(w @ (x + delta) + b, 0.0)

    def jac(delta):
        return (coef * (w @ (x + delta) + b > 0)) @ w

    best = math.inf
    for _ in range(starts):
        start = rng.standard_normal(x.shape[0]) * rng.uniform(0.3, 3.0)
        res = minimize(
            lambda z: (z @ z, 2 * z),
            start,
            jac=True,
            method="SLSQP",
            constraints=[{"type": "ineq", "fun": value, "jac": jac}],
            options={"maxiter": 500, "ftol": 1e-12},
        )
        if value(res.x).min() >= -1e-7:
            best = min(best, float(np.linalg.norm(res.x)))
    return best


def _full_dim_radius(net, x, conditions, starts=4, seed=0):
    """min over flip conditions (one per target output) of the SLSQP radius."""
    w = net.linear.weight.detach().double().numpy()
    b = net.linear.bias.detach().double().numpy()
    rng = np.random.default_rng(seed)
    return min(_slsqp_radius(w, b, coef, x.numpy(), starts, rng) for coef in conditions)


@pytest.mark.parametrize("center", [0, 7])
def test_closed_forms_by_full_dimensional_optimisation(setting, center):
    """Each closed form = the best of SLSQP runs in R^d on the raw flip conditions:
    margin y f <= 0; k-way: s_l >= s_y for some l; group: s_l >= s_j for all own j."""
    centers, signs = setting
    x, y = centers[center], float(signs[center])
    own = (signs == y).nonzero().flatten()
    other = (signs != y).nonzero().flatten()
    multi = feature_decoupling_multiclass(centers)
    eye = torch.eye(K, dtype=torch.float64)

    def margin(net):
        return [(-y * net.readout.double()).numpy()]

    kway = [(eye[l] - eye[center])[None].numpy() for l in range(K) if l != center]
    group = [(eye[l][None] - eye[own]).numpy() for l in other]
    cases = [
        (feature_averaging_net(centers, signs), None, radius_feature_averaging(D, K)),
        (feature_decoupling_net(centers, signs), None, radius_decoupling_sum(D, 5)),
        (
            feature_decoupling_net(centers, signs, -D / 2),
            None,
            radius_decoupling_sum(D, 5, -D / 2),
        ),
        (
            feature_decoupling_net(centers, signs, -D / 4),
            None,
            radius_decoupling_sum(D, 5, -D / 4),
        ),
        (multi, kway, radius_decoupling_argmax(D)),
        (multi, group, radius_decoupling_argmax(D)),
    ]
    for net, conditions, expected in cases:
        starts = 60 if conditions is None else 3
        found = _full_dim_radius(net, x, conditions or margin(net), starts=starts)
        assert found == pytest.approx(expected, rel=1e-2), (expected, found)
