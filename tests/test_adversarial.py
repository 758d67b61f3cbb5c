"""Adversarial training: the factored PGD (clean or eps-sphere start) equals a plain
full-dimensional PGD, and training on its factored inputs equals training on x_adv."""

import pytest
import torch
import torch.nn.functional as F

from featavg.config import ConfigError
from featavg.data import SyntheticConfig, sample_synthetic
from featavg.experiments.runner import run_experiment
from featavg.models import NetConfig, binary_ensemble, multiclass_ensemble
from featavg.seeding import generator
from featavg.training import FactoredInputs, TrainConfig, TrainOptions, train
from featavg.training.adversarial import (
    RowSpaceInputs,
    adversarial_perturb,
    row_space_pgd,
    sphere_starts,
)

SMALL = SyntheticConfig(d=80, k=4, n_train=40, n_test=20)


def reference_start(seed, step, n, d):
    """The documented draw: float32 Gaussians of stream adversarial-training/start/<step>
    of the member's seed, in float64, normalised to the unit sphere."""
    g = torch.randn(n, d, generator=generator(seed, f"adversarial-training/start/{step}"))
    g = g.double()
    return g / g.norm(dim=1, keepdim=True)


def plain_pgd(w, b, readout, kind, x, t, eps, steps, alpha, start=None):
    """Reference: autograd L2 PGD on the mean training loss in R^d, from x + eps * start
    (start: unit directions (n, d)) or from the clean point."""
    delta = torch.zeros_like(x) if start is None else eps * start
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


def _nets(kind, ds):
    if kind == "binary":
        ens, t = binary_ensemble([0, 1], 80, NetConfig(m=3, init_std=0.3)), ds.y_train
    else:
        ens, t = multiclass_ensemble([0, 1], 80, 4, NetConfig(init_std=0.3)), ds.c_train
    ens = ens.to_dtype(torch.float64)
    ens.bias.normal_(0, 0.5)
    return ens, t


@pytest.mark.parametrize("start", ["none", "sphere"])
@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_factored_pgd_matches_full_dimensional_pgd(kind, start):
    ds = sample_synthetic(SMALL, 0).to("cpu", torch.float64)
    ens, t = _nets(kind, ds)
    eps = torch.tensor([3.0, 6.0], dtype=torch.float64)
    seeds = [4, 9]
    starts = None
    if start == "sphere":
        starts = sphere_starts(seeds, eps, 7, 40, 80, torch.float64)
        assert starts is not None
    adv = row_space_pgd(ens, ds.x_train, t, eps, steps=5, step_size=2.0, starts=starts)
    x_adv = adv.materialise()
    for s in range(2):
        u = reference_start(seeds[s], 7, 40, 80) if start == "sphere" else None
        ref = plain_pgd(
            ens.weight[s], ens.bias[s], ens.readout, kind, ds.x_train, t, eps[s], 5, 2.0, u
        )
        assert torch.allclose(x_adv[s], ref, rtol=1e-9, atol=1e-9)
        assert ((x_adv[s] - ds.x_train).norm(dim=1) <= eps[s] * (1 + 1e-9)).all()
        # the factored preactivations are those of the materialised inputs
        pre = ens.weight[s] @ ref.T + ens.bias[s][:, None]
        assert torch.allclose(adv.preactivations(None)[s], pre, rtol=1e-9, atol=1e-9)


def test_sphere_start_leaves_the_row_space_and_starts_on_the_sphere():
    ds = sample_synthetic(SMALL, 0).to("cpu", torch.float64)
    ens, t = _nets("binary", ds)
    eps = torch.tensor([0.0, 5.0], dtype=torch.float64)
    starts = sphere_starts([0, 1], eps, 0, 40, 80, torch.float64)
    assert starts is not None and starts.members.tolist() == [1]  # eps 0: no start drawn
    at_start = row_space_pgd(ens, ds.x_train, t, eps, steps=0, starts=starts).materialise()
    delta = at_start - ds.x_train
    assert torch.equal(delta[0], torch.zeros_like(delta[0]))
    assert torch.allclose(delta[1].norm(dim=1), torch.full((40,), 5.0, dtype=torch.float64))
    # after the PGD steps, delta still has a part orthogonal to the row space of W
    delta = row_space_pgd(ens, ds.x_train, t, eps, 7, 2.0, starts).materialise()[1] - ds.x_train
    q, _ = torch.linalg.qr(ens.weight[1].T)
    orth = delta - (delta @ q) @ q.T
    assert (orth.norm(dim=1) > 0.5).all()


def test_sphere_starts_are_per_seed_and_unit():
    eps = torch.tensor([1.0, 0.0, 2.0])
    a = sphere_starts([3, 5, 7], eps, 2, 6, 10)
    b = sphere_starts([7], torch.tensor([1.0]), 2, 6, 10)
    assert a is not None and b is not None
    assert a.members.tolist() == [0, 2]
    assert torch.equal(a.directions()[1], b.directions()[0])  # independent of the ensemble
    assert torch.allclose(a.directions().norm(dim=-1), torch.ones(2, 6))
    c = sphere_starts([7], torch.tensor([1.0]), 3, 6, 10)
    assert c is not None and not torch.equal(c.directions(), b.directions())  # fresh per step
    assert sphere_starts([1], torch.tensor([0.0]), 0, 6, 10) is None


def test_members_sharing_a_seed_share_one_draw():
    """Members of one seed (one per training radius) hold one draw; every product with the
    draws equals the product with each member's own documented draw."""
    seeds = [3, 5, 3, 5]
    starts = sphere_starts(seeds, torch.tensor([1.0, 2.0, 3.0, 0.0]), 2, 6, 10, torch.float64)
    assert starts is not None and starts.members.tolist() == [0, 1, 2]
    assert starts.gauss.shape == (2, 6, 10)  # seeds 3 and 5, drawn once each
    stream = "adversarial-training/start/2"
    g = [torch.randn(6, 10, generator=generator(seeds[j], stream)).double() for j in range(3)]
    for j in range(3):
        u = g[j] / g[j].norm(dim=1, keepdim=True)
        assert torch.allclose(starts.directions()[j], u, rtol=1e-12, atol=1e-12)
    w, a, idx = torch.randn(3, 4, 10).double(), torch.randn(3, 4, 6).double(), torch.tensor([4, 1])
    project, combine = starts.project(w), (starts.combine(a), starts.combine(a[..., idx], idx))
    for j in range(3):
        assert torch.allclose(project[j], w[j] @ g[j].T, rtol=1e-12, atol=1e-12)
        assert torch.allclose(combine[0][j], a[j] @ g[j], rtol=1e-12, atol=1e-12)
        assert torch.allclose(combine[1][j], a[j][:, idx] @ g[j][idx], rtol=1e-12, atol=1e-12)


def test_zero_radius_leaves_inputs_unchanged():
    ds = sample_synthetic(SMALL, 0)
    ens = binary_ensemble([0], 80, NetConfig(m=2, init_std=0.1))
    for start in ("sphere", "none"):
        perturb = adversarial_perturb([0.0], random_start=start, seeds=[0])
        adv = perturb(0, ens, ds.x_train, ds.y_train)
        assert torch.equal(adv.materialise()[0], ds.x_train)


def test_perturb_arguments_are_checked():
    with pytest.raises(ValueError, match="random_start"):
        adversarial_perturb([1.0], random_start="ball", seeds=[0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seeds"):
        adversarial_perturb([1.0, 2.0], random_start="sphere", seeds=[0])


@pytest.mark.parametrize("seeds", [[0, 1, 2], [7, 5, 5]])
@pytest.mark.parametrize("start", ["none", "sphere"])
def test_training_on_factored_inputs_equals_training_on_plain_pgd_examples(start, seeds):
    """GD on RowSpaceInputs (never forming x_adv) equals GD on x_adv from a plain autograd
    PGD in R^d with the same starts, in float64, full-batch and mini-batch; also where two
    members share a seed (and so their start directions)."""
    ds = sample_synthetic(SMALL, 0).to("cpu", torch.float64)
    eps = torch.tensor([0.0, 4.0, 8.0], dtype=torch.float64)
    cfg = TrainConfig(steps=12, lr=0.05)
    for batch_size, x in ((None, ds.x_train), (16, ds.x_train.expand(3, -1, -1).contiguous())):
        cfg = cfg.model_copy(update={"batch_size": batch_size})
        factored = binary_ensemble(seeds, 80, NetConfig(m=3)).to_dtype(torch.float64)
        full = binary_ensemble(seeds, 80, NetConfig(m=3)).to_dtype(torch.float64)

        def materialised(step, model, x, targets):
            xs = x.expand(3, -1, -1) if x.ndim == 2 else x
            out = []
            for s in range(3):
                u = reference_start(seeds[s], step, 40, 80) if start == "sphere" else None
                with torch.enable_grad():  # the trainer runs under no_grad
                    out.append(
                        plain_pgd(
                            model.weight[s], model.bias[s], model.readout, "binary",
                            xs[s], targets, eps[s], 5, 2.0, u if eps[s] > 0 else None,
                        )
                    )  # fmt: skip
            return torch.stack(out)

        hook = adversarial_perturb(eps, 5, 2.0, random_start=start, seeds=seeds)
        train(factored, x, ds.y_train, cfg, options=TrainOptions(perturb=hook))
        train(full, x, ds.y_train, cfg, options=TrainOptions(perturb=materialised))
        adv = hook(0, factored, x, ds.y_train)
        assert isinstance(adv, RowSpaceInputs) and isinstance(adv, FactoredInputs)
        assert torch.allclose(factored.weight, full.weight, rtol=1e-9, atol=1e-12)
        assert torch.allclose(factored.bias, full.bias, rtol=1e-9, atol=1e-12)
        assert not torch.allclose(factored.weight[0], factored.weight[2])  # eps matters


def test_the_start_changes_training():
    ds = sample_synthetic(SMALL, 0)
    eps = torch.tensor([4.0])
    nets = []
    for start in ("sphere", "none"):
        net = binary_ensemble([0], 80, NetConfig(m=3))
        hook = adversarial_perturb(eps, 5, 2.0, random_start=start, seeds=[0])
        train(
            net,
            ds.x_train,
            ds.y_train,
            TrainConfig(steps=10, lr=0.05),
            options=TrainOptions(perturb=hook),
        )
        nets.append(net.weight)
    assert not torch.allclose(nets[0], nets[1])


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
    assert s["failed_fits_eps6"] == 0
    assert (tmp_path / "adversarial.png").is_file()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"attack": {"exact": True}}, "attack.exact"),
        ({"train": {"formulation": "gram"}}, "train.formulation"),
    ],
)
def test_adversarial_rejects_fields_it_would_ignore(overrides, field):
    with pytest.raises(ConfigError, match=field):
        run_experiment("synthetic-adversarial", overrides=overrides, out="/nonexistent/never")


def test_adversarial_honours_its_training_attack_fields(tmp_path):
    import pandas as pd

    from featavg.experiments.registry import EXPERIMENTS

    tiny = {**EXPERIMENTS["synthetic-adversarial"].tiny, "seeds": 2}
    runs = {}
    for start in ("sphere", "none"):
        overrides = {**tiny, "pgd_random_start": start, "min_train_acc": 1.0}
        out = tmp_path / start
        runs[start] = run_experiment("synthetic-adversarial", overrides=overrides, out=out)
    sphere, clean = runs["sphere"].summary, runs["none"].summary
    # the start changes adversarial training, not standard training (eps 0)
    assert sphere["cos_same_class_mean_eps0"] == clean["cos_same_class_mean_eps0"]
    assert sphere["cos_same_class_mean_eps3"] != clean["cos_same_class_mean_eps3"]
    # failed fits are counted from the per-seed table, and listed in the notes
    table = pd.read_csv(tmp_path / "sphere" / "adversarial.csv")
    for eps in (0, 3):
        rows = table[table["eps"] == eps]
        assert sphere[f"failed_fits_eps{eps}"] == int((~rows["fitted"]).sum())
        assert list(rows["fitted"]) == list(rows["clean_train_acc"] >= 1.0)
    failed = sphere["failed_fits_eps0"] + sphere["failed_fits_eps3"]
    assert len(sphere["notes"]) == (sphere["failed_fits_eps0"] > 0) + (
        sphere["failed_fits_eps3"] > 0
    )
    assert failed > 0  # a few GD steps leave training points misclassified: exercised
    assert "failed to fit" in sphere["notes"][0]


def test_the_demo_runs_the_paper_protocol_on_fewer_seeds():
    """`featavg reproduce` trains 3 seeds, the paper preset 5; everything else (radii,
    steps, attacks) and so every figure panel and checked row is the same."""
    from featavg.experiments.registry import EXPERIMENTS

    exp = EXPERIMENTS["synthetic-adversarial"]
    demo = exp.config_cls(**exp.preset("reproduce"))
    paper = exp.config_cls(**exp.preset("paper"))
    assert (demo.seeds, paper.seeds) == (3, 5)  # 3: the fewest with a usable t interval
    assert demo.model_dump(exclude={"seeds"}) == paper.model_dump(exclude={"seeds"})
    assert exp.checks(demo) == exp.checks(paper)
