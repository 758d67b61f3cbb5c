"""Training against independent references: plain autograd, separate single runs, and the
exact equivalence of the direct and Gram formulations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from featavg.data import SyntheticConfig, sample_synthetic, stack_datasets
from featavg.models import NetConfig, binary_ensemble, multiclass_ensemble
from featavg.models.two_layer import TwoLayerEnsemble
from featavg.training import (
    DirectEngine,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    TwoLayerGD,
    backprop,
    gram_matrices,
    train,
    train_many,
)

SMALL = SyntheticConfig(d=40, k=4, n_train=60, n_test=20)


class PlainNet(nn.Module):
    """Reference: one network as nn.Linear + fixed readout, differentiated by autograd."""

    def __init__(self, w, b, readout):
        super().__init__()
        self.lin = nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            self.lin.weight.copy_(w)
            self.lin.bias.copy_(b)
        self.readout = readout.double()

    def forward(self, x):
        return torch.relu(self.lin(x)) @ self.readout.T


def loss_and_gradients(model: TwoLayerEnsemble, x: torch.Tensor, targets: torch.Tensor):
    """Loss (S,) and the trainer's exact gradients dL/dW (S, M, d), dL/db (S, M) (direct
    formulation)."""
    engine = DirectEngine([model], x)
    loss, _, dpt = backprop(model.kind, model.readout, engine.preactivations(None)[0], targets)
    return loss, engine.weight_gradient(None, dpt), dpt.sum(-1)


def plain_loss(kind, z, t):
    if kind == "binary":
        return F.softplus(-t * z[:, 0]).mean()
    return F.cross_entropy(z, t)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
@pytest.mark.parametrize("shared", [True, False])
def test_gradient_matches_autograd(kind, shared):
    ds = stack_datasets([sample_synthetic(SMALL, s) for s in range(3)]).to("cpu", torch.float64)
    net_cfg = NetConfig(m=3, h=2, init_std=0.1)
    if kind == "binary":
        ens, targets = binary_ensemble([0, 1, 2], 40, net_cfg), ds.y_train
    else:
        ens, targets = multiclass_ensemble([0, 1, 2], 40, 4, net_cfg), ds.c_train
    ens = ens.to_dtype(torch.float64)
    ens.bias.normal_(0, 0.1)
    x = ds.x_train[0] if shared else ds.x_train
    t = targets[0] if shared else targets
    loss, dw, db = loss_and_gradients(ens, x, t)
    for s in range(3):
        ref = PlainNet(ens.weight[s], ens.bias[s], ens.readout)
        xs, ts = (x if shared else x[s]), (t if shared else t[s])
        ref_loss = plain_loss(kind, ref(xs), ts)
        ref_loss.backward()
        assert torch.allclose(loss[s], ref_loss, rtol=1e-10)
        assert torch.allclose(dw[s], ref.lin.weight.grad, rtol=1e-8, atol=1e-12)
        assert torch.allclose(db[s], ref.lin.bias.grad, rtol=1e-8, atol=1e-12)


def plain_gd(w, b, readout, kind, x, t, lr, steps):
    """Reference GD loop: nn.Linear + torch.optim.SGD on the plain autograd loss."""
    net = PlainNet(w, b, readout)
    opt = torch.optim.SGD(net.lin.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        plain_loss(kind, net(x), t).backward()
        opt.step()
    return net.lin.weight.detach(), net.lin.bias.detach()


@pytest.mark.parametrize("formulation", ["direct", "gram"])
def test_training_matches_plain_sgd_loop(formulation):
    ds = sample_synthetic(SMALL, 0).to("cpu", torch.float64)
    ens = binary_ensemble([3], 40, NetConfig(m=2, init_std=0.01)).to_dtype(torch.float64)
    w0, b0 = ens.weight[0].clone(), ens.bias[0].clone()
    train(ens, ds.x_train, ds.y_train, TrainConfig(steps=30, lr=0.05, formulation=formulation))
    w_ref, b_ref = plain_gd(w0, b0, ens.readout, "binary", ds.x_train, ds.y_train, 0.05, 30)
    assert torch.allclose(ens.weight[0], w_ref, rtol=1e-9, atol=1e-12)
    assert torch.allclose(ens.bias[0], b_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
@pytest.mark.parametrize("batch_size", [None, 16])
def test_gram_equals_direct(kind, batch_size):
    ds = stack_datasets([sample_synthetic(SMALL, s) for s in range(2)]).to("cpu", torch.float64)
    make = (
        (lambda: binary_ensemble([0, 1], 40, NetConfig(m=3, init_std=1e-3)))
        if kind == "binary"
        else (lambda: multiclass_ensemble([0, 1], 40, 4, NetConfig(init_std=1e-3)))
    )
    targets = ds.y_train if kind == "binary" else ds.c_train
    results = {}
    for form in ("direct", "gram"):
        for shared in (True, False):
            ens = make().to_dtype(torch.float64)
            x, t = (ds.x_train[0], targets[0]) if shared else (ds.x_train, targets)
            cfg = TrainConfig(steps=40, lr=0.02, batch_size=batch_size, formulation=form)
            train(ens, x, t, cfg, seed=1)
            results[form, shared] = ens
    for shared in (True, False):
        a, b = results["direct", shared], results["gram", shared]
        assert torch.allclose(a.weight, b.weight, rtol=1e-9, atol=1e-12)
        assert torch.allclose(a.bias, b.bias, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("shared", [True, False])
def test_ensemble_equals_separate_single_runs(shared):
    seeds = [11, 12, 13, 14]
    data = [sample_synthetic(SMALL, 0 if shared else s) for s in seeds]
    ens = binary_ensemble(seeds, 40, NetConfig(m=2))
    x = data[0].x_train if shared else stack_datasets(data).x_train
    y = data[0].y_train if shared else stack_datasets(data).y_train
    cfg = TrainConfig(steps=50, lr=0.01)
    train(ens, x, y, cfg)
    for i, seed in enumerate(seeds):
        single = binary_ensemble([seed], 40, NetConfig(m=2))
        train(single, data[i].x_train, data[i].y_train, cfg)
        assert torch.allclose(ens.weight[i], single.weight[0], rtol=1e-4, atol=1e-7)
        assert torch.allclose(ens.bias[i], single.bias[0], rtol=1e-4, atol=1e-7)


def test_per_member_learning_rates():
    ds = sample_synthetic(SMALL, 0)
    ens = binary_ensemble([0, 0], 40, NetConfig(m=2))
    train(ens, ds.x_train, ds.y_train, TrainConfig(steps=20), lr=torch.tensor([0.01, 0.03]))
    for i, lr in enumerate([0.01, 0.03]):
        single = binary_ensemble([0], 40, NetConfig(m=2))
        train(single, ds.x_train, ds.y_train, TrainConfig(steps=20, lr=lr))
        assert torch.allclose(ens.weight[i], single.weight[0], rtol=1e-4, atol=1e-7)


def test_mean_and_unit_second_layer_are_the_same_function():
    """+-1/m with init x m and lr x m^2 follows +-1 exactly (ReLU homogeneity)."""
    ds = sample_synthetic(SMALL, 0).to("cpu", torch.float64)
    m = 4
    unit = binary_ensemble([0], 40, NetConfig(m=m, second_layer="unit", init_std=1e-3))
    mean = binary_ensemble([0], 40, NetConfig(m=m, second_layer="mean", init_std=m * 1e-3))
    unit, mean = unit.to_dtype(torch.float64), mean.to_dtype(torch.float64)
    train(unit, ds.x_train, ds.y_train, TrainConfig(steps=30, lr=0.01))
    train(mean, ds.x_train, ds.y_train, TrainConfig(steps=30, lr=0.01 * m**2))
    assert torch.allclose(mean.weight, m * unit.weight, rtol=1e-8)
    assert torch.allclose(mean(ds.x_test), unit(ds.x_test), rtol=1e-8, atol=1e-12)


def test_records_and_sgd_reduces_loss():
    ds = sample_synthetic(SMALL, 0)
    ens = multiclass_ensemble([0], 40, 4, NetConfig(init_std=1e-3))
    recs = train(
        ens, ds.x_train, ds.c_train, TrainConfig(steps=25, lr=0.01, batch_size=8, record_every=10)
    )
    assert [r["step"] for r in recs] == [0, 10, 20, 25]
    assert recs[-1]["loss"][0] < 0.5 * recs[0]["loss"][0]
    assert recs[-1]["train_acc"][0] == 1.0


def test_sgd_is_reproducible_and_depends_on_seed():
    ds = sample_synthetic(SMALL, 0)
    outs = []
    for seed in (0, 0, 1):
        ens = binary_ensemble([0], 40, NetConfig(m=2, init_std=1e-3))
        train(ens, ds.x_train, ds.y_train, TrainConfig(steps=10, lr=0.01, batch_size=7), seed=seed)
        outs.append(ens.weight.clone())
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_divergence_names_the_step():
    ds = sample_synthetic(SMALL, 0)
    ens = multiclass_ensemble([0], 40, 4, NetConfig(init_std=1.0))
    with pytest.raises(TrainingDiverged, match=r"diverged at step \d+"):
        train(ens, ds.x_train * 1e18, ds.c_train, TrainConfig(steps=20, lr=1e30))


def test_bad_input_shape_is_reported():
    ens = binary_ensemble([0, 1], 40)
    with pytest.raises(ValueError, match="x: expected"):
        train(ens, torch.zeros(3, 10, 40), torch.ones(10), TrainConfig(steps=1))


@pytest.mark.parametrize("formulation", ["direct", "gram"])
@pytest.mark.parametrize("batch_size", [None, 16])
def test_joint_training_equals_separate_training(formulation, batch_size):
    ds = stack_datasets([sample_synthetic(SMALL, s) for s in range(2)]).to("cpu", torch.float64)
    cfg = TrainConfig(steps=30, lr=0.02, formulation=formulation, batch_size=batch_size)

    def nets():
        b = binary_ensemble([0, 1], 40, NetConfig(m=3, init_std=1e-3)).to_dtype(torch.float64)
        m = multiclass_ensemble([0, 1], 40, 4, NetConfig(init_std=1e-3)).to_dtype(torch.float64)
        return b, m

    b_joint, m_joint = nets()
    rec_b, rec_m = train_many([b_joint, m_joint], ds.x_train, [ds.y_train, ds.c_train], cfg, seed=3)
    b_alone, m_alone = nets()
    ref_b = train(b_alone, ds.x_train, ds.y_train, cfg, seed=3)
    ref_m = train(m_alone, ds.x_train, ds.c_train, cfg, seed=3)
    for joint, alone in ((b_joint, b_alone), (m_joint, m_alone)):
        assert torch.allclose(joint.weight, alone.weight, rtol=1e-10, atol=1e-13)
        assert torch.allclose(joint.bias, alone.bias, rtol=1e-10, atol=1e-13)
    for got, ref in ((rec_b, ref_b), (rec_m, ref_m)):
        assert [r["step"] for r in got] == [r["step"] for r in ref]
        assert torch.allclose(got[-1]["loss"], ref[-1]["loss"], rtol=1e-10)


@pytest.mark.parametrize("n", [100, 300, 513])
def test_blockwise_gram_matrices_equal_the_plain_product(n):
    """Only the lower block triangle is multiplied; the result is G = x x^T, exactly
    symmetric."""
    x = torch.randn(3, n, 37, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    gram = gram_matrices(x, block=128)
    assert torch.allclose(gram, torch.bmm(x, x.transpose(1, 2)), rtol=1e-12, atol=1e-12)
    assert torch.equal(gram, gram.transpose(1, 2))


def test_two_layer_gd_is_a_trainer_and_equals_train_many():
    """The Trainer protocol's two-layer implementation is train_many behind fit()."""
    ds = stack_datasets([sample_synthetic(SMALL, s) for s in range(2)]).to("cpu", torch.float64)
    cfg = TrainConfig(steps=20, lr=0.02, batch_size=16, record_every=5)

    def nets():
        b = binary_ensemble([0, 1], 40, NetConfig(m=3, init_std=1e-3)).to_dtype(torch.float64)
        m = multiclass_ensemble([0, 1], 40, 4, NetConfig(init_std=1e-3)).to_dtype(torch.float64)
        return [b, m]

    def norm(step, model):
        return {"w_norm": model.weight.norm(dim=(1, 2))}

    trainer = TwoLayerGD(cfg, lr=torch.tensor([0.02, 0.01], dtype=torch.float64))
    assert isinstance(trainer, Trainer)
    fitted, ref = nets(), nets()
    targets = [ds.y_train, ds.c_train]
    got = trainer.fit(fitted, ds.x_train, targets, seed=2, on_record=[norm, None])
    want = train_many(ref, ds.x_train, targets, cfg, lr=trainer.lr, seed=2, on_record=[norm, None])
    for a, b in zip(fitted, ref, strict=True):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert [[r.keys() for r in rs] for rs in got] == [[r.keys() for r in rs] for rs in want]
    for rs_got, rs_want in zip(got, want, strict=True):
        for r_got, r_want in zip(rs_got, rs_want, strict=True):
            assert r_got["step"] == r_want["step"]
            for key in ("loss", "train_acc"):
                assert torch.equal(r_got[key], r_want[key])
    assert "w_norm" in got[0][-1] and "w_norm" not in got[1][-1]
