"""featavg.probe: the synthetic acceptance (the probe reproduces synthetic-alignment's numbers
on the exported two-layer nets), the formulas on constructed weights, conv reduction,
running sums, the linear probe, the run directory and its cache, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from featavg.api import probe
from featavg.config import ConfigError
from featavg.data.groupings import Grouping
from featavg.experiments.synthetic_common import SyntheticRunConfig, train_pair
from featavg.faults import NumericalFault
from featavg.metrics.alignment import binary_alignment, cosine_matrix, multiclass_alignment
from featavg.metrics.feature_alignment import class_means as reference_class_means
from featavg.probing.capture import unit_weights
from featavg.probing.measures import linear_probe


@pytest.fixture(scope="module")
def pair():
    """Both nets of synthetic-alignment at the paper's config (d=3072, k=10, n=1000, m=5,
    100 GD steps at lr 1e-3, init 1e-5): ~2 s."""
    cfg = SyntheticRunConfig(data={"d": 3072, "k": 10, "n_train": 1000, "n_test": 1000})
    return train_pair(cfg, torch.device("cpu"), record_alignment=False)


def _synthetic_probe(pair, net, **kw):
    data = pair.data
    # J+ (signs > 0) is group 1: logit 1 of an exported binary net is +f/2
    groups = [int(s > 0) for s in data.signs[0].tolist()]
    return probe(
        net,
        data.x_test[0],
        data.c_test[0],
        groups,
        layer="linear",
        class_means=data.centers[0],
        probe_points=200,
        **kw,
    )


def test_binary_net_reproduces_synthetic_alignment(pair):
    ref = binary_alignment(
        cosine_matrix(pair.binary.weight, pair.data.centers), pair.binary.unit_sign, pair.data.signs
    )
    res = _synthetic_probe(pair, pair.binary.member(0))
    s = res.summary
    assert s["model_outputs"] == "coarse" and s["class_means"] == "given"
    assert abs(s["cos_same_group_mean"] - float(ref["cos_same_class_mean"][0])) < 1e-6
    assert abs(s["cos_other_group_max_abs"] - float(ref["cos_other_class_max"][0])) < 1e-6
    assert abs(s["cos_same_group_exact_average"] - 1 / math.sqrt(5)) < 1e-12
    assert abs(s["cos_same_group_mean"] - 1 / math.sqrt(5)) < 0.02  # ~0.447
    # the whole matrix, unit by unit, and the units' groups = their readout signs
    direct = cosine_matrix(pair.binary.weight[0], pair.data.centers[0]).double()
    assert torch.allclose(res.cosines, direct, atol=1e-6)
    assert [u["group"] for u in res.units] == [int(v > 0) for v in pair.binary.unit_sign]
    assert all(u["rule"] == "gradient" for u in res.units)
    # averaging index: ~1 (exact average), beside its two reference values
    assert s["averaging_index"] > 0.99
    assert s["index_exact_average"] == 1.0 and s["index_single_feature"] == pytest.approx(0.2)
    assert s["coarse_accuracy"] == 1.0
    assert not any("computes the logits" in n for n in s["notes"])  # a hidden layer


def test_fine_net_reproduces_decoupling(pair):
    ref = multiclass_alignment(
        cosine_matrix(pair.multiclass.weight, pair.data.centers), pair.multiclass.unit_class
    )
    res = _synthetic_probe(pair, pair.multiclass.member(0))
    s = res.summary
    assert s["model_outputs"] == "fine"
    assert abs(s["cos_diag_mean"] - float(ref["cos_diag_mean"][0])) < 1e-6
    assert abs(s["cos_offdiag_max_abs"] - float(ref["cos_offdiag_max"][0])) < 1e-6
    assert s["cos_diag_mean"] > 0.95
    assert [u["output"] for u in res.units] == list(range(10))  # unit j serves class j
    assert abs(s["averaging_index"] - 1 / 5) < 0.01  # ~1/|J_s|: one feature per unit
    # the Fig. 2d cells: one row per class, ~ the identity
    assert res.group_cosines.shape == (10, 10)
    assert torch.allclose(res.group_cosines.diagonal(), res.cosines.diagonal())
    assert s["fine_accuracy"] == 1.0 and s["coarse_accuracy"] == 1.0


def test_measured_means_close_to_centers(pair):
    """Without the centers, mu_j are the measured class means of x: ~ the centers + noise."""
    data = pair.data
    groups = [int(s > 0) for s in data.signs[0].tolist()]
    res = probe(
        pair.binary.member(0), data.x_test[0], data.c_test[0], groups, layer="linear",
        probe_points=200, batch_size=97,
    )  # fmt: skip
    direct = torch.stack([data.x_test[0][data.c_test[0] == j].mean(0) for j in range(10)])
    assert torch.allclose(res.class_means, direct.double(), atol=1e-5)
    assert abs(res.summary["cos_same_group_mean"] - 1 / math.sqrt(5)) < 0.03


# ---------------------------------------------------------------- constructed weights


def _orthonormal(k: int, d: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=torch.Generator().manual_seed(seed)))
    return q.T * math.sqrt(d)  # (k, d), orthogonal, norm sqrt(d)


def _points(means: torch.Tensor, n_per: int, noise: float = 0.1):
    y = torch.arange(means.shape[0]).repeat_interleave(n_per)
    gen = torch.Generator().manual_seed(1)
    return means[y] + noise * torch.randn(y.shape[0], means.shape[1], generator=gen), y


def _linear(rows: torch.Tensor) -> nn.Linear:
    head = nn.Linear(rows.shape[1], rows.shape[0])
    with torch.no_grad():
        head.weight.copy_(rows)
        head.bias.zero_()
    return head


def test_averaging_index_reference_values_on_constructed_weights():
    groups = Grouping("custom", (0, 0, 0, 1, 1))  # |J_0| = 3, |J_1| = 2
    mu = _orthonormal(5, 40)
    x, y = _points(mu, 20)
    averaged = _linear(torch.stack([mu[:3].sum(0), mu[3:].sum(0)]))  # coarse head
    s = probe(averaged, x, y, groups, layer="", class_means=mu).summary
    assert s["averaging_index"] == pytest.approx(1.0, abs=1e-6)
    # cos = 1/sqrt(|J_s|) on J_s: pairs (3 of 1/sqrt 3, 2 of 1/sqrt 2) averaged
    # float32 weights: 1e-6
    assert s["cos_same_group_mean"] == pytest.approx((3 * 3**-0.5 + 2 * 2**-0.5) / 5, abs=1e-6)
    assert s["cos_other_group_max_abs"] < 1e-6
    assert s["index_single_feature"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    single = _linear(mu.clone())  # fine head: unit j = mu_j
    s = probe(single, x, y, groups, layer="", class_means=mu).summary
    per_unit = [1 / 3] * 3 + [1 / 2] * 2
    assert s["averaging_index"] == pytest.approx(sum(per_unit) / 5, abs=1e-6)
    assert s["index_single_feature"] == pytest.approx(sum(per_unit) / 5, abs=1e-12)
    assert s["cos_diag_mean"] == pytest.approx(1.0, abs=1e-6)


def test_dead_unit_falls_back_to_the_cosine_rule():
    groups = Grouping("halves", (0, 0, 1, 1))
    mu = _orthonormal(4, 30)
    x, y = _points(mu, 10)
    hidden = _linear(torch.stack([mu[0] + mu[1], mu[2] + mu[3], mu[2]]))
    with torch.no_grad():
        hidden.bias[2] = -1e6  # never active: no gradient reaches it
    # a single output f (a margin): unit 0 votes J_0 (-), units 1 and 2 vote J_1 (+)
    model = nn.Sequential(hidden, nn.ReLU(), _linear(torch.tensor([[-1.0, 1.0, 1.0]])))
    res = probe(model, x, y, groups, layer="0", class_means=mu)
    assert [u["rule"] for u in res.units] == ["gradient", "gradient", "cosine"]
    assert [u["group"] for u in res.units] == [0, 1, 1]  # a 1-logit margin: + is group 1


def test_conv_layer_sums_the_kernel_and_averages_the_input_over_space():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    w = unit_weights(conv)
    assert torch.equal(w, conv.weight.detach().sum((2, 3)))
    # why the sum: a spatially constant input v gives <w_r, v> + b_r at interior positions
    v = torch.randn(3)
    out = conv(v[None, :, None, None].expand(1, 3, 6, 6))
    assert torch.allclose(out[0, :, 2, 3], w @ v + conv.bias, atol=1e-5)
    x = torch.randn(60, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    y = torch.arange(4).repeat(15)
    res = probe(model, x, y, "0,0,1,1", layer="0", batch_size=16)
    means = np.stack([x[y == j].mean((0, 2, 3)).numpy() for j in range(4)])
    wn = w.numpy() / np.linalg.norm(w.numpy(), axis=1, keepdims=True)
    mn = means / np.linalg.norm(means, axis=1, keepdims=True)
    assert np.allclose(res.cosines.numpy(), wn @ mn.T, atol=1e-6)
    assert res.summary["layer_kind"] == "conv"


def test_running_sums_equal_full_means_and_centring():
    x = torch.randn(203, 12, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 5, (203,), generator=torch.Generator().manual_seed(4))
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 5))
    kw = {"layer": "0", "probe_points": 50}
    res = probe(model, x, y, "0,0,1,1,1", batch_size=7, **kw)
    ref = reference_class_means(lambda b: b, x, y, 5, batch_size=1000)  # independent helper
    full = torch.stack([x[y == j].double().mean(0) for j in range(5)])
    assert torch.allclose(res.class_means, full, atol=1e-12)
    assert torch.allclose(res.class_means, ref, atol=1e-12)
    centred = probe(model, x, y, "0,0,1,1,1", batch_size=50, centre=True, **kw)
    assert torch.allclose(centred.class_means, full - x.double().mean(0), atol=1e-12)
    assert centred.summary["class_means"] == "centred"


def test_linear_probe_separable_and_noise():
    gen = torch.Generator().manual_seed(5)
    mu = torch.randn(4, 20, generator=gen) * 3
    y = torch.randint(0, 4, (1200,), generator=gen)
    x = mu[y] + torch.randn(1200, 20, generator=gen)
    sep = linear_probe(x[:800], y[:800], x[800:], y[800:], 4)
    assert sep["probe_accuracy"] > 0.97
    noise = torch.randn(2400, 20, generator=gen)
    y2 = torch.randint(0, 4, (2400,), generator=gen)
    chance = linear_probe(noise[:1200], y2[:1200], noise[1200:], y2[1200:], 4)
    assert abs(chance["probe_accuracy"] - 0.25) < 0.06
    # more features than points: solved in their span, still separable
    wide = torch.randn(4, 500, generator=gen) * 0.5
    yw = torch.randint(0, 4, (200,), generator=gen)
    xw = wide[yw] + torch.randn(200, 500, generator=gen)
    assert linear_probe(xw[:100], yw[:100], xw[100:], yw[100:], 4)["probe_accuracy"] > 0.9


# ---------------------------------------------------------------- run directory, cache


def _small():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(120, 10, generator=gen)
    y = torch.arange(4).repeat(30)
    model = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 2))
    return model, x, y


def test_run_directory_files_and_cache(tmp_path):
    model, x, y = _small()
    first = probe(model, x, y, "0,1,0,1", layer="2", root=tmp_path, probe_points=40)
    d = first.directory
    assert d is not None and d.name.startswith("probe-") and not first.cached
    names = {"summary.json", "cosines.csv", "group_cosines.csv", "units.csv", "heatmap.png"}
    assert names | {"manifest.json"} == {p.name for p in d.iterdir()}
    manifest = json.loads((d / "manifest.json").read_text())["files"]
    assert set(manifest) == names
    summary = json.loads((d / "summary.json").read_text())
    assert summary["experiment"] == "probe" and summary["layer"] == "2"
    assert summary["config"]["model"]["fingerprint"] and summary["notes"]
    again = probe(model, x, y, "0,1,0,1", layer="2", root=tmp_path, probe_points=40)
    assert again.cached and again.directory == d
    assert torch.allclose(again.cosines, first.cosines, atol=1e-7)
    assert again.units[0]["rule"] == first.units[0]["rule"]
    with torch.no_grad():  # other weights: another run
        model[2].weight.add_(1.0)
    other = probe(model, x, y, "0,1,0,1", layer="2", root=tmp_path, probe_points=40)
    assert not other.cached and other.directory != d


def test_one_shot_iterable_and_the_api_function(tmp_path):
    import featavg.probing.cli  # noqa: F401  the package's name does not shadow the function

    model, x, y = _small()
    batches = ((x[i : i + 32], y[i : i + 32]) for i in range(0, 120, 32))
    res = featavg.probe(model, batches, grouping="0,1,0,1", layer="0", out=tmp_path / "it")
    ref = probe(model, (x, y), grouping="0,1,0,1", layer="0")
    assert torch.allclose(res.cosines, ref.cosines, atol=1e-12)
    assert (tmp_path / "it" / "summary.json").is_file()


def test_robustness_curve_optional():
    model, x, y = _small()
    s = probe(model, x, y, "0,1,0,1", layer="2", robust_eps=[0.0, 0.5, 3.0]).summary
    acc = [r["robust_accuracy"] for r in s["robustness"]]
    assert acc[0] == pytest.approx(s["coarse_accuracy"])  # eps 0: clean, same points
    assert acc == sorted(acc, reverse=True)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"layer": "fc"}, "available: "),
        ({"layer": "1"}, "no weight rows"),
        ({"layer": "0", "class_means": torch.zeros(4, 3)}, "class_means: need shape (4, 10)"),
        ({"layer": "0", "grouping": "0,0,1,1,2"}, "group"),
    ],
)
def test_bad_input_is_a_one_line_config_error(kwargs, needle):
    model, x, y = _small()
    kwargs = {"grouping": "0,1,0,1", **kwargs}
    with pytest.raises(ConfigError) as err:
        probe(model, x, y, **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_activations_that_overflow_on_a_later_batch_are_a_numerical_fault():
    """Finite weights, a first batch that passes the up-front checks, and a later batch whose
    features overflow float32: the class means would turn NaN, so the probe stops and names
    the batch instead of reporting NaN measures."""
    x = torch.randn(40, 12, generator=torch.Generator().manual_seed(5))
    y = torch.arange(40) % 4
    x[25] = 3e38  # batch 2 (from 0) of size 10: W x = 12 * 3e38 overflows to inf
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    assert bool(torch.isfinite(model(x[:10])).all())  # the first batch is fine
    with pytest.raises(NumericalFault, match=r"non-finite values in the probed layer's input "
                       r"on batch 2 \(probe: fit data\)"):  # fmt: skip
        probe(model, x, y, "0,0,1,1", layer="2", batch_size=10, probe_points=20)


def test_wrong_number_of_logits_and_labels():
    model, x, y = _small()
    with pytest.raises(ConfigError, match="returns 2 logits"):
        probe(model, x, y, "0,1,2,0", layer="0")  # 3 groups, 4 classes
    with pytest.raises(ConfigError, match="fine_labels: must lie in 0..3"):
        probe(model, x, y + 1, [0, 1, 0, 1], layer="0")


@pytest.mark.parametrize(
    ("source", "advice"), [("computed", "--centre"), ("centred", "even after")]
)
def test_uninformative_index_note_gives_advice_that_fits_the_means(source, advice):
    """When the exact-average and single-feature references are close, the note says so and
    suggests centring only when the means are not centred already."""
    from types import SimpleNamespace

    from featavg.probing.outputs import Measured, _notes

    empty = torch.zeros(0)
    m = Measured(
        numbers={
            "index_exact_average_measured_means": 0.99,
            "index_single_feature_measured_means": 0.9,
            "probe_train_points": 10,
            "probe_test_points": 10,
        },
        cos=empty, group_cos=empty, rows=[], outputs=empty, rules=[], index=empty,
        weights=empty, groups=empty, fine=False,
    )  # fmt: skip
    ctx = {
        "class_means_source": source,
        "fit_points": 100,
        "evaluated_on": "held-out",
        "kind": "linear",
        "grad_points": 10,
        "group": SimpleNamespace(groups=list(range(10))),
        "data": SimpleNamespace(stand_in=None),
    }
    (note,) = [n for n in _notes(m, ctx) if "far from orthogonal" in n]
    assert "0.090" in note and advice in note
    assert ("--centre" in note) == (source == "computed")


def test_a_wrong_layer_suggests_real_names_never_the_empty_one():
    model, x, y = _small()
    with pytest.raises(ConfigError) as err:
        probe(model, x, y, "0,1,0,1", layer="3")
    text = str(err.value)
    assert "available: '0', '1', '2'" in text and "''" not in text
