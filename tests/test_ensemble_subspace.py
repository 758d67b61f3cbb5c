"""The ensemble subspace PGD equals the single-net subspace PGD, net by net."""

import math

import pytest
import torch

from featavg.attacks.core import AttackSettings
from featavg.attacks.objectives import BinaryMargin, CrossEntropy, GroupCrossEntropy
from featavg.attacks.two_layer.ensemble_subspace import ensemble_subspace_pgd
from featavg.attacks.two_layer.exact import minimal_l2_radius
from featavg.attacks.two_layer.subspace import subspace_pgd
from featavg.data import SyntheticConfig, sample_synthetic, stack_datasets
from featavg.models import NetConfig, binary_ensemble, multiclass_ensemble, sum_form_net
from featavg.training import TrainConfig, train

SEEDS = [3, 4, 5]
RADII = [0.0, 3.0, 6.0, 9.0, 12.0, 15.0]


@pytest.fixture(scope="module")
def cases():
    """(data, [(nets, labels, objective, readout, exact readout, groups)]) for the four
    read-outs of a trained binary and fine-grained ensemble."""
    cfg = SyntheticConfig(d=150, k=4, n_train=120, n_test=50)
    ds = stack_datasets([sample_synthetic(cfg, s) for s in SEEDS]).to("cpu", torch.float64)
    b = binary_ensemble(SEEDS, 150, NetConfig(m=3)).to_dtype(torch.float64)
    m = multiclass_ensemble(SEEDS, 150, 4, NetConfig()).to_dtype(torch.float64)
    train(b, ds.x_train, ds.y_train, TrainConfig(steps=50, lr=0.01))
    train(m, ds.x_train, ds.c_train, TrainConfig(steps=50, lr=0.01))
    signs = ds.signs[0]
    groups = (signs > 0).long()
    one = torch.ones(1, 1, dtype=torch.float64)
    multi = [m.member(i) for i in range(3)]
    return ds, [
        ([b.member(i) for i in range(3)], ds.y_test, BinaryMargin(), one, "margin", None),
        (multi, ds.c_test, CrossEntropy(), None, "argmax", None),
        ([sum_form_net(n, signs) for n in multi], ds.y_test, BinaryMargin(), one, "margin", None),
        (multi, (ds.y_test > 0).long(), GroupCrossEntropy(groups), None, "group_argmax", groups),
    ]


def test_matches_single_net_subspace_pgd_for_every_readout(cases):
    ds, jobs = cases
    seeds, radii = SEEDS, RADII
    for nets, labels, objective, readout, _, _ in jobs:
        got = ensemble_subspace_pgd(
            nets,
            ds.x_test,
            labels,
            radii,
            settings=AttackSettings(restarts=2, objective=objective),
            seeds=seeds,
            readout=readout,
        )
        for s, net in enumerate(nets):
            ref = subspace_pgd(
                net,
                ds.x_test[s],
                labels[s],
                radii,
                settings=AttackSettings(seed=seeds[s], restarts=2, objective=objective),
                readout=readout,
                start_draw="subspace",
            )
            assert torch.equal(got[s], ref.correct), (objective, s)
        acc = got.double().mean(-1)
        assert (acc[:, 1:] <= acc[:, :-1] + 0.1).all()  # robust accuracy falls with eps
        assert acc[:, -1].max() < acc[:, 0].min()  # and the attack does something


def test_certified_rows_are_skipped_without_changing_the_result(cases):
    """Rows whose exact radius exceeds eps are not attacked (no attack can flip them):
    with the true exact radii the result equals the full attack; with fake infinite
    radii nothing is attacked, so every radius reports clean accuracy."""
    ds, jobs = cases
    for nets, labels, objective, readout, exact_readout, groups in jobs:
        settings = AttackSettings(restarts=2, objective=objective)
        kwargs = dict(seeds=SEEDS, settings=settings, readout=readout)
        exact = torch.stack(
            [
                minimal_l2_radius(net, ds.x_test[s], labels[s], exact_readout, groups).radius
                for s, net in enumerate(nets)
            ]
        )
        full = ensemble_subspace_pgd(nets, ds.x_test, labels, RADII, **kwargs)
        certified = (exact[:, None, :] > torch.tensor(RADII)[None, :, None]).float().mean()
        assert 0.2 < certified < 0.9, certified  # a real share of rows skipped, not all
        skipped = ensemble_subspace_pgd(
            nets, ds.x_test, labels, RADII, certified_radii=exact, **kwargs
        )
        assert torch.equal(skipped, full), exact_readout
        clean = full[:, :1].expand_as(full)  # RADII[0] = 0
        never = torch.full_like(exact, math.inf)
        nothing = ensemble_subspace_pgd(
            nets, ds.x_test, labels, RADII, certified_radii=never, **kwargs
        )
        assert torch.equal(nothing, clean)
        assert not torch.equal(full, clean)  # so the skipping above was visible
