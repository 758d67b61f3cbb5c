import math
from dataclasses import fields

import pytest
import torch
from pydantic import ValidationError

from featavg.data import (
    SyntheticConfig,
    make_centers,
    sample_synthetic,
    sample_synthetic_stacked,
    stack_datasets,
)
from featavg.seeding import generator


def test_centers_orthogonal_with_norm_sqrt_d():
    cfg = SyntheticConfig(d=64, k=8)
    mu = make_centers(cfg, seed=3).double()
    gram = mu @ mu.T
    assert torch.allclose(gram, 64 * torch.eye(8, dtype=torch.float64), atol=1e-3)


def test_balanced_sampling_and_labels():
    cfg = SyntheticConfig(d=40, k=10, n_train=1000, n_test=300)
    ds = sample_synthetic(cfg, seed=0)
    assert torch.equal(torch.bincount(ds.c_train, minlength=10), torch.full((10,), 100))
    assert ds.x_train.shape == (1000, 40) and ds.x_test.shape == (300, 40)
    expected_y = torch.where(ds.c_train < 5, 1.0, -1.0)  # J+ = clusters 0..4 by default
    assert torch.equal(ds.y_train, expected_y)
    # x - mu_c is the noise: mean ~ 0, std ~ 1
    noise = ds.x_train - ds.centers[ds.c_train]
    assert abs(noise.std().item() - 1.0) < 0.02 and abs(noise.mean().item()) < 0.02


def test_custom_positive_set_iid_sampling_and_noise_std():
    cfg = SyntheticConfig(d=30, k=4, positive=(1, 3), sampling="iid", n_train=4000, noise_std=0.5)
    ds = sample_synthetic(cfg, seed=1)
    counts = torch.bincount(ds.c_train, minlength=4)
    assert counts.min() > 850 and not torch.all(counts == 1000)  # uniform, not exact
    assert torch.equal(ds.signs, torch.tensor([-1.0, 1.0, -1.0, 1.0]))
    assert torch.equal(ds.y_train, ds.signs[ds.c_train])
    noise = ds.x_train - ds.centers[ds.c_train]
    assert abs(noise.std().item() - 0.5) < 0.01


def test_unequal_norms_within_range():
    cfg = SyntheticConfig(d=100, k=10, norm_range=(0.6, 1.4))
    norms = make_centers(cfg, seed=2).norm(dim=1) / math.sqrt(100)
    assert norms.min() >= 0.6 - 1e-5 and norms.max() <= 1.4 + 1e-5
    assert norms.max() - norms.min() > 0.2  # actually spread
    cos = torch.nn.functional.normalize(make_centers(cfg, 2), dim=1)
    assert torch.allclose(cos @ cos.T, torch.eye(10), atol=1e-5)  # still orthogonal


def test_nearly_orthogonal_centers_respect_max_cosine():
    cfg = SyntheticConfig(d=200, k=6, max_cosine=0.1)
    mu = torch.nn.functional.normalize(make_centers(cfg, seed=4).double(), dim=1)
    off = (mu @ mu.T - torch.eye(6, dtype=torch.float64)).abs()
    assert off.max() <= 0.1 + 1e-6
    assert off.max() > 0.01  # not exactly orthogonal


def test_same_seed_same_data_other_seed_differs():
    cfg = SyntheticConfig(d=20, k=4, n_train=50, n_test=10)
    a, b, c = sample_synthetic(cfg, 7), sample_synthetic(cfg, 7), sample_synthetic(cfg, 8)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.centers, b.centers)
    assert not torch.equal(a.x_train, c.x_train)


def test_training_split_independent_of_test_size():
    small = sample_synthetic(SyntheticConfig(d=20, k=4, n_train=40, n_test=10), 5)
    large = sample_synthetic(SyntheticConfig(d=20, k=4, n_train=40, n_test=500), 5)
    assert torch.equal(small.x_train, large.x_train)


def test_stack_datasets_adds_replicate_axis():
    cfg = SyntheticConfig(d=10, k=2, n_train=8, n_test=4)
    st = stack_datasets([sample_synthetic(cfg, s) for s in range(3)])
    assert st.x_train.shape == (3, 8, 10) and st.centers.shape == (3, 2, 10)
    assert torch.equal(st.x_train[1], sample_synthetic(cfg, 1).x_train)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"d": 5, "k": 10}, "k"),
        ({"k": 4, "positive": (0, 1, 2, 3)}, "positive"),
        ({"k": 4, "positive": ()}, "positive"),
        ({"k": 4, "positive": (0, 7)}, "positive"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"norm_range": (1.2, 0.8)}, "norm_range"),
        ({"k": 10, "max_cosine": 0.2}, "max_cosine"),
        ({"sampling": "stratified"}, "sampling"),
        ({"n_train": 0}, "n_train"),
    ],
)
def test_impossible_requests_name_the_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        SyntheticConfig(**kwargs)


@pytest.mark.parametrize("threads", [1, 2])
def test_stacked_sampling_equals_single_draws(threads):
    """Member i of the stacked draw is bit for bit sample_synthetic(cfg_i, seed_i), whatever
    the thread count (each member has its own named streams)."""
    cfgs = [
        SyntheticConfig(d=50, k=4, n_train=30, n_test=10),
        SyntheticConfig(d=50, k=4, n_train=30, n_test=10, noise_std=0.5, sampling="iid"),
        SyntheticConfig(d=50, k=4, n_train=30, n_test=10, norm_range=(0.8, 1.2)),
    ]
    seeds = [7, 7, 2]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        stacked = sample_synthetic_stacked(cfgs, seeds)
    finally:
        torch.set_num_threads(before)
    reference = stack_datasets([sample_synthetic(c, s) for c, s in zip(cfgs, seeds, strict=True)])
    for f in fields(reference):
        got, want = getattr(stacked, f.name), getattr(reference, f.name)
        assert got.dtype == want.dtype and torch.equal(got, want), f.name
    # the in-place construction is x = mu_c + sigma * xi with xi the stream's draw
    g = generator(7, "data/train")
    c = torch.randint(4, (30,), generator=g)  # iid labels come first in the stream
    xi = torch.randn(30, 50, generator=g)
    assert torch.equal(stacked.c_train[1], c)
    assert torch.equal(stacked.x_train[1], stacked.centers[1][c] + 0.5 * xi)


def test_stacked_sampling_rejects_mismatched_members():
    with pytest.raises(ValueError, match="same d, k"):
        sample_synthetic_stacked([SyntheticConfig(d=10, k=2), SyntheticConfig(d=12, k=2)], [0, 1])
    with pytest.raises(ValueError, match="seeds"):
        sample_synthetic_stacked([SyntheticConfig(d=10, k=2)] * 2, [0])
