"""Exact subspace PGD (featavg.attacks.two_layer.subspace) against the plain
full-dimensional PGD."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from featavg.attacks import AttackSettings, BinaryMargin, GroupCrossEntropy, pgd
from featavg.attacks.two_layer import row_space_basis, subspace_pgd
from featavg.data.synthetic import SyntheticConfig, sample_synthetic
from featavg.models.two_layer import NetConfig, TwoLayerNet, binary_ensemble, multiclass_ensemble
from featavg.training import TrainConfig, train

D = 500
RADII = [0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 20.0, 30.0]


def assert_same_attack(full, sub, check_x=True):
    """Same verdicts, logits within relative 1e-4, same adversarial inputs."""
    assert torch.equal(full.correct, sub.correct)
    torch.testing.assert_close(full.robust_accuracy, sub.robust_accuracy, rtol=0, atol=0)
    scale = full.logits.abs().max()
    torch.testing.assert_close(sub.logits, full.logits, rtol=1e-4, atol=1e-4 * scale)
    if check_x:
        torch.testing.assert_close(sub.x_adv, full.x_adv, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def binary_setup():
    cfg = SyntheticConfig(d=D, k=4, n_train=200, n_test=100)
    ds = sample_synthetic(cfg, seed=0)
    ens = binary_ensemble([0], D, NetConfig(m=5))  # M = 10
    train(ens, ds.x_train, ds.y_train, TrainConfig(steps=100, lr=1e-2))
    net = ens.member(0).double()  # member() builds a float32 nn.Linear whatever the dtype
    return net, ds.x_test.double(), ((ds.y_test + 1) / 2).long(), ds.y_test.double()


@pytest.fixture(scope="module")
def multiclass_setup():
    cfg = SyntheticConfig(d=D, k=10, n_train=200, n_test=100)
    ds = sample_synthetic(cfg, seed=1)
    ens = multiclass_ensemble([0], D, 10, NetConfig(h=1))  # M = 10
    train(ens, ds.x_train, ds.c_train, TrainConfig(steps=100, lr=1e-2))
    net = ens.member(0).double()  # member() builds a float32 nn.Linear whatever the dtype
    return net, ds.x_test.double(), ds.c_test, cfg.cluster_signs.double(), ds.y_test.double()


def test_row_space_basis_is_orthonormal_and_spans_the_rows():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 30, generator=gen, dtype=torch.float64)
    w = torch.cat([w, w[:2] * 3.0, w[1:2] - w[3:4]])  # 7 rows of rank 4
    q = row_space_basis(w)
    assert q.shape == (4, 30)
    torch.testing.assert_close(q @ q.T, torch.eye(4, dtype=torch.float64))
    torch.testing.assert_close(w - (w @ q.T) @ q, torch.zeros_like(w), rtol=0, atol=1e-12)
    assert row_space_basis(torch.zeros(3, 5)).shape == (0, 5)


@pytest.mark.parametrize(
    ("random_start", "restarts"), [("sphere", 1), ("sphere", 3), ("ball", 2), ("none", 1)]
)
def test_binary_net_matches_full_pgd(binary_setup, random_start, restarts):
    net, x, y, _ = binary_setup
    kwargs = dict(seed=5, random_start=random_start, restarts=restarts)
    full = pgd(net, x, y, RADII, settings=AttackSettings(**kwargs))
    sub = subspace_pgd(net, x, y, RADII, settings=AttackSettings(**kwargs))
    assert_same_attack(full, sub)
    acc = full.robust_accuracy
    assert acc[0] > 0.9 and acc[-1] < 0.1  # the grid spans the whole curve


def test_binary_margin_objective_and_chunking(binary_setup):
    net, x, _, y_pm = binary_setup

    class Margin(nn.Module):
        def forward(self, inputs):
            return net.scores(inputs)  # (B, 1), as the (1, 1) read-out gives

    objective = BinaryMargin()
    full = pgd(Margin(), x, y_pm, RADII, settings=AttackSettings(objective=objective, seed=2))
    one = torch.ones(1, 1, dtype=torch.float64)  # scores -> margin: the identity read-out
    sub = subspace_pgd(
        net, x, y_pm, RADII, settings=AttackSettings(objective=objective, seed=2), readout=one
    )
    chunked = subspace_pgd(
        net,
        x,
        y_pm,
        RADII,
        settings=AttackSettings(objective=objective, seed=2, batch_size=77),
        readout=one,
    )
    assert_same_attack(full, sub)
    assert_same_attack(sub, chunked)


def test_fine_grained_net_kway_group_and_sum_forms(multiclass_setup):
    net, x, c, signs, y_pm = multiclass_setup
    # k-way accuracy under a 10-class CE attack (the authors' synthetic curve)
    assert_same_attack(
        pgd(net, x, c, RADII, settings=AttackSettings(seed=1)),
        subspace_pgd(net, x, c, RADII, settings=AttackSettings(seed=1)),
    )
    # argmax form: NLL of the summed softmax of the true group
    groups = (signs > 0).long()
    y_group = ((y_pm + 1) / 2).long()
    objective = GroupCrossEntropy(groups)
    full = pgd(net, x, y_group, RADII, settings=AttackSettings(objective=objective, seed=1))
    sub = subspace_pgd(net, x, y_group, RADII, settings=AttackSettings(objective=objective, seed=1))
    assert_same_attack(full, sub)

    # sum form F = sum_{J+} f_j - sum_{J-} f_j: a fixed linear map of the scores
    class SumForm(nn.Module):
        def forward(self, inputs):
            return net(inputs) @ signs[:, None]  # (B, 1)

    full = pgd(SumForm(), x, y_pm, RADII, settings=AttackSettings(objective=BinaryMargin(), seed=1))
    sub = subspace_pgd(
        net,
        x,
        y_pm,
        RADII,
        settings=AttackSettings(objective=BinaryMargin(), seed=1),
        readout=signs[None, :],
    )
    assert_same_attack(full, sub)


def test_rank_deficient_first_layer(binary_setup):
    net, x, y, _ = binary_setup
    w = net.linear.weight.detach().clone()
    w[5:] = w[:5] * 0.5  # rank 5 < M = 10; units stay distinct through the bias
    bias = net.linear.bias.detach() + torch.linspace(-1, 1, 10, dtype=torch.float64)
    low_rank = TwoLayerNet(w, bias, net.readout, net.kind).double()
    assert row_space_basis(w).shape[0] == 5
    assert_same_attack(pgd(low_rank, x, y, RADII), subspace_pgd(low_rank, x, y, RADII))


def test_float32_close_to_float64(binary_setup):
    net, x, y, _ = binary_setup
    net32 = TwoLayerNet(net.linear.weight, net.linear.bias, net.readout, "binary").float()
    sub32 = subspace_pgd(net32, x.float(), y, RADII)
    sub64 = subspace_pgd(net, x, y, RADII)
    assert sub32.x_adv.dtype == torch.float32
    assert (sub32.robust_accuracy - sub64.robust_accuracy).abs().max() <= 0.02


def test_refuses_inexact_settings(binary_setup):
    net, x, y, _ = binary_setup
    with pytest.raises(ValueError, match="l2"):
        subspace_pgd(net, x, y, [1.0], settings=AttackSettings(norm="linf"))
    with pytest.raises(ValueError, match="box"):
        subspace_pgd(net, x, y, [1.0], settings=AttackSettings(box=(0.0, 1.0)))
    with pytest.raises(ValueError, match="dimension"):
        subspace_pgd(net, x[:, :10], y, [1.0])
