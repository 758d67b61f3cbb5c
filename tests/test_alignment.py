"""Alignment diagnostics against closed forms, and the paper's Fig. 2 claims at its config."""

import math

import numpy as np
import pytest
import torch

from featavg.data import SyntheticConfig, make_centers, sample_synthetic
from featavg.metrics import (
    binary_alignment,
    cosine_matrix,
    mean_ci95,
    multiclass_alignment,
    theory_cos_same_class,
)
from featavg.models import NetConfig, binary_ensemble, multiclass_ensemble
from featavg.training import TrainConfig, train


def test_cosine_matrix_matches_numpy():
    w, mu = torch.randn(2, 5, 30), torch.randn(4, 30)
    cos = cosine_matrix(w, mu).numpy()
    wn, mn = w.numpy(), mu.numpy()
    ref = np.einsum("smd,kd->smk", wn, mn) / (
        np.linalg.norm(wn, axis=-1)[..., None] * np.linalg.norm(mn, axis=-1)[None, None, :]
    )
    assert np.allclose(cos, ref, atol=1e-5)


def test_exact_averaging_weights_hit_the_theory():
    cfg = SyntheticConfig(d=50, k=10)
    mu, signs = make_centers(cfg, 0), cfg.cluster_signs
    w = torch.stack([mu[signs > 0].sum(0)] * 3 + [mu[signs < 0].sum(0)] * 3)[None]
    unit_sign = torch.tensor([1.0] * 3 + [-1.0] * 3)
    out = binary_alignment(cosine_matrix(w, mu), unit_sign, signs)
    assert math.isclose(out["cos_same_class_mean"].item(), 1 / math.sqrt(5), rel_tol=1e-5)
    assert out["cos_other_class_max"].item() < 1e-5
    assert math.isclose(out["theory_cos_same_class"].item(), 1 / math.sqrt(5), rel_tol=1e-6)


def test_theory_for_unbalanced_partition():
    signs = torch.tensor([1.0, 1.0, -1.0, -1.0, -1.0])
    t = theory_cos_same_class(signs)
    assert math.isclose(t["pos"], 2**-0.5) and math.isclose(t["neg"], 3**-0.5)


def test_exact_decoupling_weights():
    mu = make_centers(SyntheticConfig(d=50, k=6), 1)
    out = multiclass_alignment(cosine_matrix(mu[None], mu), torch.arange(6))
    assert math.isclose(out["cos_diag_mean"].item(), 1.0, rel_tol=1e-5)
    assert out["cos_offdiag_max"].item() < 1e-5


def test_mean_ci95_against_t_table():
    mean, lo, hi = mean_ci95([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305 * math.sqrt(np.var([1, 2, 3, 4], ddof=1) / 4)  # t_{0.975, 3}
    assert mean == 2.5 and math.isclose(hi - mean, half, rel_tol=1e-6)
    assert mean_ci95([5.0]) == (5.0, 5.0, 5.0)


def _paper_run(init_stds):
    """Paper config (SPEC §1): d=3072, k=10, n=1000, m=5, 100 GD steps, lr 1e-3."""
    cfg = SyntheticConfig()
    ds = sample_synthetic(cfg, seed=0)
    binary = binary_ensemble([0] * len(init_stds), cfg.d, NetConfig(), init_std=init_stds)
    train(binary, ds.x_train, ds.y_train, TrainConfig())
    return ds, binary


def test_paper_config_feature_averaging_and_decoupling():
    ds, binary = _paper_run([1e-5])
    out_b = binary_alignment(cosine_matrix(binary.weight, ds.centers), binary.unit_sign, ds.signs)
    multi = multiclass_ensemble([0], 3072, 10, NetConfig())
    train(multi, ds.x_train, ds.c_train, TrainConfig())
    out_m = multiclass_alignment(cosine_matrix(multi.weight, ds.centers), multi.unit_class)
    theory = 1 / math.sqrt(5)
    assert abs(out_b["cos_same_class_mean"].item() - theory) < 0.1 * theory
    assert out_b["cos_other_class_max"].item() < 0.1
    assert out_m["cos_diag_mean"].item() > 0.95
    assert out_m["cos_offdiag_max"].item() < 0.06


def test_averaging_pattern_fades_as_init_std_grows():
    """SPEC §3 ablation: the pattern fades from init std 1e-3 and is gone at 1e-2."""
    stds = [1e-5, 1e-3, 1e-2]
    ds, binary = _paper_run(stds)
    same = binary_alignment(cosine_matrix(binary.weight, ds.centers), binary.unit_sign, ds.signs)[
        "cos_same_class_mean"
    ]
    assert same[0] > 0.4
    assert same[0] > same[1] > same[2]
    assert same[2] < 0.1


@pytest.mark.parametrize("n", [2, 3, 4, 6, 10, 30, 101, 1001])
def test_mean_ci95_matches_scipy_t_interval(n):
    from scipy import stats

    values = np.random.default_rng(n).normal(3.0, 2.0, size=n)
    mean, lo, hi = mean_ci95(values.tolist())
    sem = stats.sem(values)
    ref_lo, ref_hi = stats.t.interval(0.95, n - 1, loc=values.mean(), scale=sem)
    assert math.isclose(mean, values.mean(), rel_tol=1e-12)
    assert math.isclose(lo, ref_lo, rel_tol=1e-10) and math.isclose(hi, ref_hi, rel_tol=1e-10)
