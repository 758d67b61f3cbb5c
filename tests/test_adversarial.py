"""Adversarial training: the row-space PGD equals a plain full-dimensional PGD."""

import torch
import torch.nn.functional as F

from featavg.data import SyntheticConfig, sample_synthetic
from featavg.experiments.runner import run_experiment
from featavg.models import NetConfig, binary_ensemble, multiclass_ensemble
from featavg.training import FactoredInputs, TrainConfig, train
from featavg.training.adversarial import RowSpaceInputs, adversarial_perturb, row_space_pgd

SMALL = SyntheticConfig(d=80, k=4, n_train=40, n_test=20)


def materialise(adv: RowSpaceInputs) -> torch.Tensor:
    """x_adv = x + W^T beta itself, (S, n, d)."""
    s = adv.weight.shape[0]
    xs = adv.x.expand(s, *adv.x.shape[-2:]) if adv.x.ndim == 2 else adv.x
    return torch.baddbmm(xs, adv.beta.transpose(1, 2), adv.weight)


def ensemble_l2_pgd(model, x, targets, eps, steps=7, step_size=10.0) -> torch.Tensor:
    """The training attack's adversarial examples as a plain (S, n, d) tensor."""
    return materialise(row_space_pgd(model, x, targets, eps, steps, step_size))


def plain_pgd(w, b, readout, kind, x, t, eps, steps, alpha):
    """Reference: autograd L2 PGD from the clean point on the mean training loss."""
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        z = torch.relu((x + delta) @ w.T + b) @ readout.T
        loss = F.softplus(-t * z[:, 0]).mean() if kind == "binary" else F.cross_entropy(z, t)
        (g,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = delta + alpha * g / g.norm(dim=1, keepdim=True).clamp_min(1e-30)
            n = delta.norm(dim=1, keepdim=True)
            delta = delta * torch.where(n > eps, eps / n, torch.ones_like(n))
    return (x + delta).detach()


def test_row_space_pgd_matches_full_dimensional_pgd():
    ds = sample_synthetic(SMALL, 0).to("cpu", torch.float64)
    for kind in ("binary", "multiclass"):
        if kind == "binary":
            ens, t = binary_ensemble([0, 1], 80, NetConfig(m=3, init_std=0.3)), ds.y_train
        else:
            ens, t = multiclass_ensemble([0, 1], 80, 4, NetConfig(init_std=0.3)), ds.c_train
        ens = ens.to_dtype(torch.float64)
        ens.bias.normal_(0, 0.5)
        eps = torch.tensor([3.0, 6.0], dtype=torch.float64)
        adv = ensemble_l2_pgd(ens, ds.x_train, t, eps, steps=5, step_size=2.0)
        for s in range(2):
            ref = plain_pgd(
                ens.weight[s], ens.bias[s], ens.readout, kind, ds.x_train, t, eps[s], 5, 2.0
            )
            assert torch.allclose(adv[s], ref, rtol=1e-8, atol=1e-8)
            assert ((adv[s] - ds.x_train).norm(dim=1) <= eps[s] * (1 + 1e-9)).all()


def test_zero_radius_leaves_inputs_unchanged():
    ds = sample_synthetic(SMALL, 0)
    ens = binary_ensemble([0], 80, NetConfig(m=2, init_std=0.1))
    adv = ensemble_l2_pgd(ens, ds.x_train, ds.y_train, torch.tensor([0.0]))
    assert torch.equal(adv[0], ds.x_train)


def test_adversarial_training_makes_the_net_more_robust(tmp_path):
    overrides = {
        "data": {"d": 300, "k": 4, "n_train": 200, "n_test": 100},
        "net": {"m": 10},
        "train": {"steps": 100, "lr": 0.01},
        "eps": [0.0, 6.0],
        "pgd_step_size": 2.0,
        "attack": {"radii": [float(r) for r in range(0, 24, 1)]},
    }
    s = run_experiment("synthetic-adversarial", overrides=overrides, out=tmp_path).summary
    assert s["clean_test_acc_eps0"] > 0.95
    assert s["radius50_eps6"] > s["radius50_eps0"]
    assert s["cos_same_class_mean_eps6"] < s["cos_same_class_mean_eps0"]
    assert s["decoupled_fraction_eps6"] > s["decoupled_fraction_eps0"] + 0.2
    assert (tmp_path / "adversarial.png").is_file()


def test_training_on_factored_inputs_equals_training_on_materialised_ones():
    """A GD step on RowSpaceInputs (never forming x_adv) equals one on x_adv itself."""
    ds = sample_synthetic(SMALL, 0).to("cpu", torch.float64)
    eps = torch.tensor([0.0, 4.0, 8.0], dtype=torch.float64)
    cfg = TrainConfig(steps=30, lr=0.05)
    for batch_size, x in ((None, ds.x_train), (16, ds.x_train.expand(3, -1, -1).contiguous())):
        cfg = cfg.model_copy(update={"batch_size": batch_size})
        factored = binary_ensemble([0, 1, 2], 80, NetConfig(m=3)).to_dtype(torch.float64)
        full = binary_ensemble([0, 1, 2], 80, NetConfig(m=3)).to_dtype(torch.float64)

        def materialised(step, model, x, targets):
            return ensemble_l2_pgd(model, x, targets, eps, 5, 2.0)

        train(factored, x, ds.y_train, cfg, perturb=adversarial_perturb(eps, 5, 2.0))
        train(full, x, ds.y_train, cfg, perturb=materialised)
        adv = row_space_pgd(factored, x, ds.y_train, eps)
        assert isinstance(adv, RowSpaceInputs) and isinstance(adv, FactoredInputs)
        assert torch.allclose(factored.weight, full.weight, rtol=1e-9, atol=1e-12)
        assert torch.allclose(factored.bias, full.bias, rtol=1e-9, atol=1e-12)
        assert not torch.allclose(factored.weight[0], factored.weight[2])  # eps matters
