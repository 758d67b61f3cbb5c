"""The ensemble subspace PGD equals the single-net subspace PGD, net by net."""

import torch

from featavg.attacks.ensemble_subspace import ensemble_subspace_pgd
from featavg.attacks.exact import sum_form_net
from featavg.attacks.objectives import BinaryMargin, CrossEntropy, GroupCrossEntropy
from featavg.attacks.subspace import subspace_pgd
from featavg.data import SyntheticConfig, sample_synthetic, stack_datasets
from featavg.models import NetConfig, binary_ensemble, multiclass_ensemble
from featavg.train import TrainConfig, train


def test_matches_single_net_subspace_pgd_for_every_readout():
    cfg = SyntheticConfig(d=150, k=4, n_train=120, n_test=50)
    seeds = [3, 4, 5]
    ds = stack_datasets([sample_synthetic(cfg, s) for s in seeds]).to("cpu", torch.float64)
    b = binary_ensemble(seeds, 150, NetConfig(m=3)).to_dtype(torch.float64)
    m = multiclass_ensemble(seeds, 150, 4, NetConfig()).to_dtype(torch.float64)
    train(b, ds.x_train, ds.y_train, TrainConfig(steps=50, lr=0.01))
    train(m, ds.x_train, ds.c_train, TrainConfig(steps=50, lr=0.01))
    signs = ds.signs[0]
    groups = (signs > 0).long()
    one = torch.ones(1, 1, dtype=torch.float64)
    radii = [0.0, 3.0, 6.0, 9.0, 12.0, 15.0]
    cases = [
        ([b.member(i) for i in range(3)], ds.y_test, BinaryMargin(), one),
        ([m.member(i) for i in range(3)], ds.c_test, CrossEntropy(), None),
        ([sum_form_net(m.member(i), signs) for i in range(3)], ds.y_test, BinaryMargin(), one),
        ([m.member(i) for i in range(3)], (ds.y_test > 0).long(), GroupCrossEntropy(groups), None),
    ]
    for nets, labels, objective, readout in cases:
        got = ensemble_subspace_pgd(
            nets,
            ds.x_test,
            labels,
            radii,
            seeds=seeds,
            restarts=2,
            objective=objective,
            readout=readout,
        )
        for s, net in enumerate(nets):
            ref = subspace_pgd(
                net,
                ds.x_test[s],
                labels[s],
                radii,
                seed=seeds[s],
                restarts=2,
                objective=objective,
                readout=readout,
                return_full=False,
                start_draw="subspace",
            )
            assert torch.equal(got[s], ref.correct), (objective, s)
        acc = got.double().mean(-1)
        assert (acc[:, 1:] <= acc[:, :-1] + 0.1).all()  # robust accuracy falls with eps
        assert acc[:, -1].max() < acc[:, 0].min()  # and the attack does something
