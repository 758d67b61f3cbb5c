"""PGD (featavg.attacks.pgd) and the attack objectives: invariants, seeding, bookkeeping."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from featavg.attacks import (
    BinaryMargin,
    CrossEntropy,
    GroupCrossEntropy,
    Objective,
    PGDResult,
    check_model_output,
    flip_radius_from_grid,
    pgd,
)
from featavg.attacks.core import AttackSettings, start_directions
from featavg.data.synthetic import SyntheticConfig, sample_synthetic
from featavg.models.two_layer import NetConfig, binary_ensemble, multiclass_ensemble
from featavg.training import TrainConfig, train

D, K = 50, 4
L2_RADII = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0]
LINF_RADII = [0.0, 0.1, 0.2, 0.3, 0.5, 0.8]


@pytest.fixture(scope="module")
def data():
    cfg = SyntheticConfig(d=D, k=K, n_train=200, n_test=200)
    return cfg, sample_synthetic(cfg, seed=0)


@pytest.fixture(scope="module")
def binary_net(data):
    _, ds = data
    ens = binary_ensemble([0], D, NetConfig(m=5))
    train(ens, ds.x_train, ds.y_train, TrainConfig(steps=100, lr=1e-2))
    return ens.member(0)


@pytest.fixture(scope="module")
def binary_net64(binary_net):
    return copy.deepcopy(binary_net).double()


@pytest.fixture(scope="module")
def multiclass_net(data):
    _, ds = data
    ens = multiclass_ensemble([0], D, K, NetConfig(h=1))
    train(ens, ds.x_train, ds.c_train, TrainConfig(steps=100, lr=1e-2))
    return ens.member(0)


def class_index(y_pm: torch.Tensor) -> torch.Tensor:
    """+-1 labels -> class index of the binary TwoLayerNet's logits [-f/2, f/2]."""
    return ((y_pm + 1) / 2).long()


class Margin(nn.Module):
    """The binary net's margin f as a (B,) output, for BinaryMargin."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.margin(x)


# ---------------------------------------------------------------- objectives


def test_objectives_implement_the_protocol():
    for objective in (CrossEntropy(), BinaryMargin(), GroupCrossEntropy([0, 0, 1])):
        assert isinstance(objective, Objective)
    assert not isinstance(object(), Objective)


def test_loss_grad_is_the_gradient_of_loss():
    gen = torch.Generator().manual_seed(1)
    cases = [
        (
            CrossEntropy(),
            torch.randn(16, 4, generator=gen, dtype=torch.float64),
            torch.arange(16) % 4,
        ),
        (
            BinaryMargin(),
            torch.randn(16, 1, generator=gen, dtype=torch.float64),
            torch.arange(16) % 2 * 2.0 - 1,
        ),
        (
            GroupCrossEntropy([0, 1, 1, 0]),
            torch.randn(16, 4, generator=gen, dtype=torch.float64),
            torch.arange(16) % 2,
        ),
    ]
    for objective, logits, y in cases:
        y = objective.prepare(y, logits.device)
        z = logits.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(objective.loss(z, y).sum(), z)
        torch.testing.assert_close(objective.loss_grad(logits, y), auto, rtol=1e-12, atol=1e-12)


def test_group_cross_entropy_matches_naive_float64():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 6, generator=gen) * 5
    groups = torch.tensor([0, 1, 0, 2, 1, 1])
    y = torch.randint(3, (64,), generator=gen)
    ours = GroupCrossEntropy(groups).loss(logits, y)
    p = torch.softmax(logits.double(), dim=1)
    naive = torch.stack([-torch.log(p[i, groups == y[i]].sum()) for i in range(64)])
    torch.testing.assert_close(ours.double(), naive, rtol=1e-5, atol=1e-6)


def test_group_cross_entropy_is_stable_and_a_tie_across_groups_is_not_correct():
    objective = GroupCrossEntropy(torch.tensor([0, 0, 1, 1]))
    huge = torch.tensor([[1000.0, -1000.0, 0.0, -1000.0]])
    assert torch.isfinite(objective.loss(huge, torch.tensor([1]))).all()
    tie = torch.tensor([[0.0, 2.0, 2.0, 0.0]])  # classes 1 (group 0) and 2 (group 1) tie
    assert not objective.correct(tie, torch.tensor([0])).item()
    assert not objective.correct(tie, torch.tensor([1])).item()
    inside = torch.tensor([[2.0, 2.0, 1.0, 0.0]])  # a tie within group 0 is still group 0
    assert objective.correct(inside, torch.tensor([0])).item()


def test_cross_entropy_counts_a_tie_as_not_correct():
    """All logits equal (every ReLU off): fooled, not credited to class 0 by argmax."""
    objective = CrossEntropy()
    zeros = torch.zeros(3, 2)
    assert not objective.correct(zeros, torch.tensor([0, 1, 0])).any()
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0 + 1e-3]])
    assert objective.correct(logits, torch.tensor([0, 1, 1])).all()


def test_binary_margin_equals_cross_entropy_on_half_margins():
    gen = torch.Generator().manual_seed(1)
    f = torch.randn(100, generator=gen, dtype=torch.float64) * 30
    y = torch.where(torch.rand(100, generator=gen) < 0.5, -1.0, 1.0).double()
    ours = BinaryMargin().loss(f, y)
    ce = F.cross_entropy(torch.stack([-f / 2, f / 2], 1), class_index(y), reduction="none")
    torch.testing.assert_close(ours, ce)
    torch.testing.assert_close(BinaryMargin().loss(f[:, None], y), ours)
    big = BinaryMargin().loss(torch.tensor([1e4, -1e4]), torch.tensor([-1, 1]))
    torch.testing.assert_close(big, torch.tensor([1e4, 1e4]))


def test_binary_margin_counts_zero_as_not_correct():
    f = torch.tensor([0.0, 0.0, 1e-3, -1e-3])
    y = torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert BinaryMargin().correct(f, y).tolist() == [False, False, True, True]


def test_label_checks():
    with pytest.raises(ValueError, match="class indices"):
        CrossEntropy().prepare(torch.tensor([-1, 1]), torch.device("cpu"))
    with pytest.raises(ValueError, match="-1 or \\+1"):
        BinaryMargin().prepare(torch.tensor([0.0, 1.0]), torch.device("cpu"))
    with pytest.raises(ValueError, match="group ids"):
        GroupCrossEntropy([0, 1]).prepare(torch.tensor([2]), torch.device("cpu"))


def test_check_model_output_warns():
    with pytest.warns(UserWarning, match="probabilities"):
        check_model_output(torch.softmax(torch.randn(8, 3), 1))
    with pytest.warns(UserWarning, match="C >= 2"):
        check_model_output(torch.randn(8, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_model_output(torch.randn(8, 3) * 4)
        check_model_output(torch.randn(8), BinaryMargin())


# ---------------------------------------------------------------- invariants


@pytest.mark.parametrize("use_box", [False, True])
@pytest.mark.parametrize("random_start", ["sphere", "ball", "box", "none"])
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_invariants(data, binary_net64, norm, random_start, use_box):
    # BinaryMargin on f itself: with the (B, 2) logits [-f/2, f/2], a point whose units the
    # attack switches all off (f = 0) would count as class -1 (argmax tie) and the curve of
    # class -1 points could rise again at large radii
    _, ds = data
    x, y = ds.x_test.double(), ds.y_test.double()
    model, objective = Margin(binary_net64), BinaryMargin()
    box = (-2.0, 2.0) if use_box else None
    if use_box:
        x = x.clamp(*box)
    radii = torch.tensor(L2_RADII if norm == "l2" else LINF_RADII, dtype=torch.float64)
    res = pgd(
        model,
        x,
        y,
        radii,
        settings=AttackSettings(
            norm=norm, random_start=random_start, box=box, seed=3, objective=objective
        ),
    )

    assert res.x_adv.shape == (len(radii), *x.shape) and res.correct.shape == (len(radii), 200)
    delta = (res.x_adv - x).flatten(2)
    size = delta.norm(dim=2) if norm == "l2" else delta.abs().amax(dim=2)
    assert (size <= radii[:, None] * (1 + 1e-5) + 1e-12).all()
    if use_box:
        assert res.x_adv.min() >= box[0] and res.x_adv.max() <= box[1]

    clean = objective.correct(model(x), y)
    assert torch.equal(res.correct[0], clean)  # radius 0 is the clean accuracy
    assert torch.equal(res.x_adv[0], x)
    acc = res.robust_accuracy
    assert (acc <= acc[0]).all()
    assert (acc[1:] <= acc[:-1] + 0.02).all(), acc  # non-increasing up to attack noise
    assert acc[-1] < 0.5 * acc[0]  # the largest radius really attacks
    # the reported outcome is the model's verdict on the returned inputs
    with torch.no_grad():
        margins = model(res.x_adv.flatten(0, 1))
    verdict = objective.correct(margins, y.repeat(len(radii)))
    assert torch.equal(verdict.view_as(res.correct), res.correct)
    torch.testing.assert_close(res.logits, margins.view_as(res.logits))


def test_float32_norm_bound_and_image_shaped_inputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 6, 6, generator=gen)
    y = torch.randint(3, (40,), generator=gen)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    radii = [0.0, 0.05, 0.3, 1.0]
    res = pgd(
        model, x, y, radii, settings=AttackSettings(box=(0.0, 1.0), random_start="ball", steps=5)
    )
    assert res.x_adv.shape == (4, 40, 1, 6, 6)
    size = (res.x_adv - x).flatten(2).norm(dim=2)
    assert (size <= torch.tensor(radii)[:, None] * (1 + 1e-5) + 1e-6).all()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


def test_batched_radii_equal_per_radius_calls(data, binary_net64):
    _, ds = data
    x, y, net = ds.x_test.double(), class_index(ds.y_test), binary_net64
    kwargs = dict(seed=7, restarts=2)
    batched = pgd(net, x, y, L2_RADII, settings=AttackSettings(**kwargs))
    for i, eps in enumerate(L2_RADII):
        single = pgd(net, x, y, [eps], settings=AttackSettings(**kwargs))
        assert torch.equal(single.correct[0], batched.correct[i])
        torch.testing.assert_close(single.x_adv[0], batched.x_adv[i], rtol=0, atol=1e-12)


def test_chunking_and_seeding(data, binary_net64):
    _, ds = data
    x, y, net = ds.x_test.double(), class_index(ds.y_test), binary_net64
    whole = pgd(net, x, y, L2_RADII, settings=AttackSettings(seed=1))
    chunked = pgd(net, x, y, L2_RADII, settings=AttackSettings(seed=1, batch_size=333))
    again = pgd(net, x, y, L2_RADII, settings=AttackSettings(seed=1))
    other = pgd(net, x, y, L2_RADII, settings=AttackSettings(seed=2))
    assert torch.equal(whole.correct, chunked.correct)
    torch.testing.assert_close(whole.x_adv, chunked.x_adv, rtol=0, atol=1e-12)
    assert torch.equal(whole.x_adv, again.x_adv)
    assert not torch.equal(whole.x_adv[1:], other.x_adv[1:])


def test_random_starts_have_the_advertised_law():
    n, dim = 4000, 5
    sphere = start_directions(n, dim, "sphere", 0, 0, torch.float64)
    torch.testing.assert_close(sphere.norm(dim=1), torch.ones(n, dtype=torch.float64))
    ball = start_directions(n, dim, "ball", 0, 0, torch.float64).norm(dim=1)
    # uniform in the ball: P(||u|| <= t) = t^dim
    assert abs((ball <= 0.8).double().mean().item() - 0.8**dim) < 0.03
    box = start_directions(n, dim, "box", 0, 0, torch.float64)
    assert box.abs().max() <= 1 and abs(box.abs().mean().item() - 0.5) < 0.02
    assert not start_directions(3, dim, "none", 0, 0, torch.float32).any()
    # restarts use separate streams
    assert not torch.equal(sphere, start_directions(n, dim, "sphere", 0, 1, torch.float64))


def test_more_restarts_only_fool_more(data, binary_net64):
    _, ds = data
    x, y, net = ds.x_test.double(), class_index(ds.y_test), binary_net64
    one = pgd(net, x, y, L2_RADII, settings=AttackSettings(seed=4, restarts=1))
    three = pgd(net, x, y, L2_RADII, settings=AttackSettings(seed=4, restarts=3))
    assert (three.correct <= one.correct).all()
    # the first restart's success is kept: where restart 0 already fooled, same x_adv
    fooled_first = ~one.correct
    assert torch.equal(three.x_adv[fooled_first], one.x_adv[fooled_first])


def test_clean_misclassified_points_are_fooled_at_every_radius(data, binary_net):
    _, ds = data
    x, y = ds.x_test[:50], class_index(ds.y_test[:50])
    y_wrong = y.clone()
    y_wrong[:5] = 1 - y_wrong[:5]
    res = pgd(binary_net, x, y_wrong, [0.0, 0.5], settings=AttackSettings(random_start="none"))
    assert not res.correct[:, :5].any()
    assert torch.equal(res.x_adv[:, :5], x[:5].expand(2, -1, -1))


def test_model_untouched(binary_net, data):
    _, ds = data
    model = nn.Sequential(nn.Linear(D, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 2)).train()
    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        pgd(model, ds.x_test[:20], class_index(ds.y_test[:20]), [1.0, 2.0])
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_zero_radius_and_zero_gradient_are_safe():
    model = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.zero_()  # zero input gradient everywhere
        model[0].bias.copy_(torch.tensor([0.0, 3.0]))
    x = torch.randn(10, 3)
    res = pgd(
        model,
        x,
        torch.ones(10, dtype=torch.long),
        [0.0, 1.0],
        settings=AttackSettings(random_start="none"),
    )
    assert torch.isfinite(res.x_adv).all() and torch.equal(res.x_adv[1], x)
    assert res.correct.all()


def test_explicit_step_size(data, binary_net):
    _, ds = data
    x, y = ds.x_test[:30], class_index(ds.y_test[:30])
    res = pgd(binary_net, x, y, [3.0], settings=AttackSettings(step_size=0.0, random_start="none"))
    assert torch.equal(res.x_adv[0], x)
    res = pgd(
        binary_net,
        x,
        y,
        [3.0],
        settings=AttackSettings(step_size=0.5, steps=1, random_start="none"),
    )
    size = (res.x_adv[0] - x).norm(dim=1)[res.correct[0]]
    torch.testing.assert_close(size, torch.full_like(size, 0.5), rtol=1e-4, atol=1e-4)


def test_init_delta_is_used_for_first_restart(data, binary_net64):
    _, ds = data
    x, y = ds.x_test[:30].double(), class_index(ds.y_test[:30])
    net = binary_net64
    start = torch.randn(2, 30, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    res = pgd(net, x, y, [1.0, 2.0], settings=AttackSettings(steps=0), init_delta=start)
    # norms ~ sqrt(D) > eps: the start is projected onto the eps-sphere
    expected = start * torch.tensor([1.0, 2.0], dtype=torch.float64)[:, None, None]
    expected = expected / start.norm(dim=2, keepdim=True)
    clean = CrossEntropy().correct(net(x), y).expand(2, -1)  # clean-misclassified keep x
    torch.testing.assert_close((res.x_adv - x)[clean], expected[clean])


def test_binary_margin_and_group_objectives_end_to_end(data, binary_net, multiclass_net):
    cfg, ds = data
    x = ds.x_test
    margin = pgd(
        Margin(binary_net),
        x,
        ds.y_test,
        L2_RADII,
        settings=AttackSettings(objective=BinaryMargin()),
    )
    logits = pgd(binary_net, x, class_index(ds.y_test), L2_RADII)
    assert torch.equal(margin.correct[0], logits.correct[0])
    assert margin.logits.shape == (len(L2_RADII), 200)
    groups = (cfg.cluster_signs > 0).long()
    grouped = pgd(
        multiclass_net,
        x,
        class_index(ds.y_test),
        L2_RADII,
        settings=AttackSettings(objective=GroupCrossEntropy(groups)),
    )
    verdict = GroupCrossEntropy(groups).correct(
        multiclass_net(grouped.x_adv.flatten(0, 1)), class_index(ds.y_test).repeat(len(L2_RADII))
    )
    assert torch.equal(verdict.view_as(grouped.correct), grouped.correct)
    kway = pgd(multiclass_net, x, ds.c_test, L2_RADII)
    assert kway.robust_accuracy[0] > 0.9 and kway.robust_accuracy[-1] < 0.5


def test_bad_arguments(binary_net, data):
    _, ds = data
    x, y = ds.x_test[:5], class_index(ds.y_test[:5])
    with pytest.raises(ValueError, match="norm"):
        pgd(binary_net, x, y, [1.0], settings=AttackSettings(norm="l1"))
    with pytest.raises(ValueError, match="eps"):
        pgd(binary_net, x, y, [-1.0])
    with pytest.raises(ValueError, match="box"):
        pgd(binary_net, x, y, [1.0], settings=AttackSettings(box=(0.0, 1.0)))
    with pytest.raises(ValueError, match="random_start"):
        pgd(binary_net, x, y, [1.0], settings=AttackSettings(random_start="gauss"))


# ---------------------------------------------------------------- result helpers


def test_flip_radius_from_grid():
    eps = torch.tensor([0.0, 1.0, 2.0, 3.0])
    correct = torch.tensor(
        [
            [True, True, False, True],
            [True, False, False, True],
            [False, True, False, True],
            [False, False, False, True],
        ]
    )
    assert flip_radius_from_grid(eps, correct).tolist() == [2.0, 1.0, 0.0, math.inf]


def test_result_accuracy_and_flip_radius():
    res = PGDResult(
        eps=torch.tensor([0.0, 1.0]),
        x_adv=torch.zeros(2, 3, 4),
        correct=torch.tensor([[True, True, False], [True, False, False]]),
    )
    assert res.robust_accuracy.tolist() == pytest.approx([2 / 3, 1 / 3])
    assert res.flip_radius.tolist() == [math.inf, 1.0, 0.0]
