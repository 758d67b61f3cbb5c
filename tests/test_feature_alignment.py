"""Real-data alignment metrics (featavg.metrics.feature_alignment) against hand references.

References: an exact average of |J_s| = 5 orthonormal features has cosine 1/sqrt(5) with
each and averaging index 1; a single feature has index 1/5; class means from running
sums equal the full-tensor per-class means computed directly.
"""

from __future__ import annotations

import math

import pytest
import torch

from featavg.data.groupings import get_grouping
from featavg.metrics.feature_alignment import (
    averaging_index,
    block_head_alignment,
    class_means,
    group_mean_cosines,
    unit_class_cosines,
)


def _data(n: int = 203, c: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 4, 4), generator=g, dtype=torch.uint8)
    y = torch.randint(0, c, (n,), generator=g)
    return x, y


def _phi(xb: torch.Tensor) -> torch.Tensor:
    # a fixed non-linear feature map (B, 3, 4, 4) -> (B, 6)
    flat = xb.reshape(xb.shape[0], -1)
    return torch.stack([flat[:, :8].sum(1), flat[:, 8:].mean(1), flat.square().mean(1)], 1).repeat(
        1, 2
    ) * torch.tensor([1.0, 2.0, 3.0, -1.0, 0.5, 1.5])


def test_class_means_equal_full_tensor_means() -> None:
    x, y = _data()
    feats = _phi(x.float() / 255).double()
    ref = torch.stack([feats[y == j].mean(0) for j in range(4)])
    got = class_means(_phi, x, y, 4, batch_size=17)
    assert got.dtype == torch.float64 and got.shape == (4, 6)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-9)


def test_class_means_batch_size_independent() -> None:
    x, y = _data()
    a = class_means(_phi, x, y, 4, batch_size=1)
    b = class_means(_phi, x, y, 4, batch_size=1000)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def test_class_means_float_input_is_not_rescaled() -> None:
    x, y = _data()
    xf = x.float() / 255
    torch.testing.assert_close(class_means(_phi, xf, y, 4), class_means(_phi, x, y, 4))


def test_centre_subtracts_global_mean_over_points() -> None:
    x, y = _data()
    feats = _phi(x.float() / 255).double()
    overall = feats.mean(0)  # over points, not over class means (classes are unbalanced)
    ref = torch.stack([feats[y == j].mean(0) for j in range(4)]) - overall
    got = class_means(_phi, x, y, 4, batch_size=50, centre=True)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-9)
    counts = torch.bincount(y, minlength=4).double()
    # the count-weighted centred means sum to zero
    torch.testing.assert_close(
        (counts[:, None] * got).sum(0), torch.zeros(6, dtype=torch.float64), atol=1e-6, rtol=0
    )


def test_empty_class_gives_zero_row() -> None:
    x, y = _data()
    got = class_means(_phi, x, y, 6, centre=True)
    assert torch.equal(got[4:], torch.zeros(2, 6, dtype=torch.float64))


def test_exact_average_cosines_and_index() -> None:
    d, k = 20, 10
    mu = torch.linalg.qr(
        torch.randn(d, k, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    )[0].T
    mu = mu * 3.0  # equal norms, orthogonal
    w = torch.stack([mu[:5].sum(0), mu[5:].sum(0), mu[2], 0 * mu[0]])
    cos = unit_class_cosines(w, mu)
    assert cos.shape == (4, k) and cos.dtype == torch.float64
    s5 = 1 / math.sqrt(5)
    torch.testing.assert_close(cos[0, :5], torch.full((5,), s5, dtype=torch.float64))
    torch.testing.assert_close(cos[0, 5:], torch.zeros(5, dtype=torch.float64), atol=1e-6, rtol=0)
    assert cos[3].abs().max() == 0  # zero-norm row gives 0, not NaN
    idx = averaging_index(cos, range(5))
    torch.testing.assert_close(idx[0], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(idx[2], torch.tensor(0.2, dtype=torch.float64))
    # unit 1 (the other group's average) has only round-off cosines on J_s; unit 3 none
    assert cos[1, :5].abs().max() < 1e-12 and idx[3] == 0
    torch.testing.assert_close(
        averaging_index(cos, range(5, 10))[1], torch.tensor(1.0, dtype=torch.float64)
    )


def test_averaging_index_ignores_negative_cosines_and_is_scale_free() -> None:
    cos = torch.tensor([[0.5, 0.5, -0.9, 0.0], [0.1, 0.1, 0.1, 0.1]])
    idx = averaging_index(cos, [0, 1, 2, 3])
    # unit 0: c = (.5, .5, 0, 0): (1)^2 / (4 * 0.5) = 0.5; unit 1: uniform -> 1
    torch.testing.assert_close(idx, torch.tensor([0.5, 1.0], dtype=torch.float64))


def test_group_mean_cosines_cells() -> None:
    cos = torch.arange(12, dtype=torch.float64).reshape(4, 3)
    got = group_mean_cosines(cos, [[0, 1], [2], [3, 0]])
    ref = torch.stack([(cos[0] + cos[1]) / 2, cos[2], (cos[3] + cos[0]) / 2])
    torch.testing.assert_close(got, ref)
    with pytest.raises(ValueError):
        group_mean_cosines(cos, [[]])


def test_biases_ignored_via_weight_only() -> None:
    lin = torch.nn.Linear(6, 3)
    means = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    ref = torch.nn.functional.cosine_similarity(
        lin.weight.detach().double()[:, None, :], means.double()[None], dim=2
    )
    torch.testing.assert_close(unit_class_cosines(lin.weight, means), ref)


def test_block_head_references_reduce_to_the_paper_for_orthogonal_means() -> None:
    grouping = get_grouping("halves")
    means = 2.0 * torch.eye(12, dtype=torch.float64)[:10]  # orthogonal, equal norms
    # heads that ARE the ideal ones: binary units = group sums, 10-class units = own mean
    w_b = torch.stack([means[:5].sum(0)] * 3 + [means[5:].sum(0)] * 3)
    w_f = means.repeat_interleave(3, 0)
    cos_b, cos_f = unit_class_cosines(w_b, means), unit_class_cosines(w_f, means)
    got = block_head_alignment(cos_b, cos_f, means, grouping.groups, 3)
    s5 = 1 / math.sqrt(5)
    expected = {
        "theory_align_own_group_averaging": s5,
        "theory_cos_same_class_orthogonal": s5,
        "align_own_group_mean_binary": s5,
        "theory_align_other_group_averaging": 0.0,
        "align_other_group_mean_binary": 0.0,
        "theory_averaging_index_averaging": 1.0,
        "averaging_index_binary": 1.0,
        "align_diag_mean_tenclass": 1.0,
        "align_offdiag_mean_tenclass": 0.0,
        "theory_align_offdiag_decoupled": 0.0,
        "theory_averaging_index_decoupled": 0.2,
        "averaging_index_tenclass": 0.2,
    }
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
