"""The analytic attack along the negative averaged feature direction."""

import math

import torch

from featavg.attacks.two_layer.analytic import (
    averaged_direction,
    line_search_flip_radius,
    margin_flip_on_ray,
    module_flip_on_ray,
)
from featavg.data import SyntheticConfig, make_centers, sample_synthetic
from featavg.models import NetConfig, binary_ensemble
from featavg.models.two_layer import TwoLayerNet
from featavg.training import TrainConfig, train


def feature_averaging_reference(mu, signs):
    """f_FA(x) = |J+| relu(<mean_+, x>) - |J-| relu(<mean_-, x>), built here from scratch."""
    w = torch.stack([mu[signs > 0].mean(0), mu[signs < 0].mean(0)])
    readout = torch.tensor([[float((signs > 0).sum()), -float((signs < 0).sum())]])
    return TwoLayerNet(w.double(), torch.zeros(2, dtype=torch.float64), readout, "binary")


def test_direction_is_unit_and_points_to_the_other_class():
    cfg = SyntheticConfig(d=60, k=6)
    mu, signs = make_centers(cfg, 0), cfg.cluster_signs
    y = torch.tensor([1.0, -1.0])
    u = averaged_direction(mu, signs, y)
    assert torch.allclose(u.norm(dim=1), torch.ones(2))
    assert (u[0] @ mu[signs > 0].T < 0).all() and (u[0] @ mu[signs < 0].T > 0).all()
    assert torch.allclose(u[1], -u[0])


def test_flip_radius_of_feature_averaging_net_is_sqrt_d_over_k():
    d, k = 100, 10
    cfg = SyntheticConfig(d=d, k=k)
    mu, signs = make_centers(cfg, 0).double(), cfg.cluster_signs.double()
    net = feature_averaging_reference(mu, signs)
    u = averaged_direction(mu, signs, signs)
    radius = line_search_flip_radius(
        margin_flip_on_ray(net, mu, signs, u), k, 3 * math.sqrt(d), dtype=torch.float64
    )
    assert torch.allclose(
        radius, torch.full((k,), math.sqrt(d / k), dtype=torch.float64), rtol=1e-6
    )


def test_two_layer_ray_equals_generic_module_ray():
    cfg = SyntheticConfig(d=50, k=4, n_train=100, n_test=60)
    ds = sample_synthetic(cfg, 1)
    ens = binary_ensemble([0], cfg.d, NetConfig(m=3))
    train(ens, ds.x_train, ds.y_train, TrainConfig(steps=60, lr=0.01))
    net = ens.member(0)
    u = averaged_direction(ds.centers, ds.signs, ds.y_test)
    fast = line_search_flip_radius(margin_flip_on_ray(net, ds.x_test, ds.y_test, u), 60, 40.0)
    slow = line_search_flip_radius(
        module_flip_on_ray(lambda v: ds.y_test * net.margin(v) <= 0, ds.x_test, u), 60, 40.0
    )
    assert torch.isfinite(fast).all()
    assert torch.allclose(fast, slow, rtol=1e-4)
    # the decision really flips just beyond the radius and not before it
    assert (ds.y_test * net.margin(ds.x_test + (fast * 1.001)[:, None] * u) <= 0).all()
    assert (ds.y_test * net.margin(ds.x_test + (fast * 0.99)[:, None] * u) > 0).all()


def test_no_flip_gives_inf():
    radius = line_search_flip_radius(lambda t: torch.zeros_like(t, dtype=torch.bool), 3, 5.0)
    assert torch.isinf(radius).all()
