"""Heads on a frozen backbone (featavg.models.heads) and the ``cifar10-features`` experiment.

References: the head's output against its formula written out; training the whole
FrozenBackboneClassifier with ImageSGD (the independent path) against the fast training on
precomputed features; a state dict with huyvnphan/PyTorch_CIFAR10's keys against the
network it came from; the ideal-head references against the paper's closed forms for
orthogonal class means.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from featavg.config import ConfigError, build_config
from featavg.data.groupings import get_grouping
from featavg.experiments.cifar10_features import EXPERIMENT, Cifar10FeaturesConfig, run
from featavg.experiments.runner import verify_output
from featavg.models.backbone_file import load_backbone_file
from featavg.models.builtin import build_model
from featavg.models.heads import BlockHead, FrozenBackboneClassifier, block_matrix
from featavg.models.image_classifier import CIFAR_PRETRAINED, ImageClassifier
from featavg.models.resnet import resnet18
from featavg.runs.context import open_context
from featavg.seeding import generator
from featavg.training.heads import fit_heads_on_features
from featavg.training.image_sgd import ImageSGD, SGDConfig

HEAD_SGD = SGDConfig(lr=0.05, momentum=0.9, weight_decay=5e-4, epochs=2, batch_size=16)


def small_backbone() -> ImageClassifier:
    """A small CNN classifier (with BatchNorm) as a stand-in backbone, 16x16 RGB inputs."""
    model = build_model("cnn", 10, 3, 16, CIFAR_PRETRAINED, seed=3)
    # make the BN running statistics non-trivial, so a drift would show
    model.train()
    with torch.no_grad():
        model(torch.rand(64, 3, 16, 16, generator=generator(0, "bn")))
    return model.eval()


def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = generator(1, "images")
    return torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8), torch.arange(
        n
    ) % 10


def test_block_head_formula_and_fixed_layer() -> None:
    head = BlockHead(8, 4, 3, generator=generator(0, "head"))
    assert "readout" in dict(head.named_buffers())
    assert all("readout" not in name for name, _ in head.named_parameters())
    assert torch.equal(head.readout, block_matrix(4, 3))
    assert head.unit_groups[2] == [6, 7, 8]
    phi = torch.randn(5, 8, generator=generator(0, "phi"))
    hidden = torch.relu(phi @ head.linear.weight.T + head.linear.bias)
    ref = torch.stack([hidden[:, 3 * i : 3 * i + 3].sum(1) for i in range(4)], 1)
    torch.testing.assert_close(head(phi), ref)
    # the seeded init is PyTorch's default Linear init: bound 1/sqrt(fan_in)
    assert head.linear.weight.abs().max() <= 1 / math.sqrt(8)
    again = BlockHead(8, 4, 3, generator=generator(0, "head"))
    assert torch.equal(again.linear.weight, head.linear.weight)


def test_training_moves_only_the_head_first_layer_and_keeps_backbone_eval() -> None:
    backbone = small_backbone()
    before = {k: v.clone() for k, v in backbone.net.state_dict().items()}
    head = BlockHead(backbone.net.feature_dim, 10, 3, generator=generator(0, "h"))
    readout, w0 = head.readout.clone(), head.linear.weight.detach().clone()
    model = FrozenBackboneClassifier(backbone, head)
    model.train()
    assert model.training and head.training and not model.backbone.training
    assert not any(m.training for m in model.backbone.modules())
    x, y = images(48)
    ImageSGD(HEAD_SGD).fit([model], x, [y], seed=0)
    after = backbone.net.state_dict()
    for key, value in before.items():  # weights AND BN running statistics
        assert torch.equal(after[key], value), key
    assert torch.equal(head.readout, readout)
    assert not torch.equal(head.linear.weight, w0)
    assert all(not p.requires_grad for p in backbone.net.parameters())


def test_fit_on_features_equals_imagesgd_on_the_whole_classifier() -> None:
    backbone = small_backbone()
    x, y = images(40)
    coarse = get_grouping("halves").coarse(y)
    heads_slow = [BlockHead(64, k, 3, generator=generator(0, f"h{k}")) for k in (2, 10)]
    heads_fast = [BlockHead(64, k, 3, generator=generator(0, f"h{k}")) for k in (2, 10)]
    models = [FrozenBackboneClassifier(backbone, h) for h in heads_slow]
    ImageSGD(HEAD_SGD).fit(models, x, [coarse, y], seed=7)
    with torch.no_grad():
        phi = backbone.features(x.float() / 255)
    losses = fit_heads_on_features(heads_fast, phi, [coarse, y], HEAD_SGD, seed=7)
    assert len(losses) == 2 and len(losses[0]) == HEAD_SGD.epochs
    for slow, fast in zip(heads_slow, heads_fast, strict=True):
        torch.testing.assert_close(fast.linear.weight, slow.linear.weight, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(fast.linear.bias, slow.linear.bias, atol=1e-5, rtol=1e-4)


def huyvnphan_net() -> nn.Module:
    """A network with huyvnphan/PyTorch_CIFAR10's resnet18 layout and state-dict keys."""
    net = resnet18(10, "pretrained", generator=generator(0, "huyvnphan"))
    net.train()
    with torch.no_grad():  # non-default BN statistics
        net(torch.randn(8, 3, 32, 32, generator=generator(0, "bn32")))
    return net.eval()


def test_huyvnphan_state_dict_loads_as_backbone(tmp_path: Path) -> None:
    net = huyvnphan_net()
    keys = list(net.state_dict())
    assert "layer1.0.conv1.weight" in keys and "fc.weight" in keys and "bn1.running_mean" in keys
    x = torch.rand(4, 3, 32, 32, generator=generator(0, "x"))
    with torch.no_grad():
        ref = net.features(CIFAR_PRETRAINED_normalise(x))
    plain = tmp_path / "resnet18.pt"
    torch.save(net.state_dict(), plain)
    lightning = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, lightning)
    for path in (plain, lightning):
        model, info = load_backbone_file(path)
        assert info["kind"] == "state dict" and info["normalization"] == "cifar-pretrained"
        with torch.no_grad():
            torch.testing.assert_close(model.features(x), ref)
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv1.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ConfigError, match="checkpoint"):
        load_backbone_file(wrong)


def CIFAR_PRETRAINED_normalise(x: torch.Tensor) -> torch.Tensor:  # noqa: N802
    mean = torch.tensor(CIFAR_PRETRAINED.mean).reshape(1, 3, 1, 1)
    std = torch.tensor(CIFAR_PRETRAINED.std).reshape(1, 3, 1, 1)
    return (x - mean) / std


@pytest.mark.slow
def test_tiny_run_heatmaps_and_stand_in(tmp_path: Path) -> None:
    cfg = build_config(Cifar10FeaturesConfig, dict(EXPERIMENT.tiny), None)
    out = run(cfg, open_context("cpu", tmp_path))
    verify_output(EXPERIMENT, cfg, out)
    assert out.stand_in and "stand-in" in (out.data or "")
    assert "trained here" in out.numbers["backbone"]["label"]
    rows = out.tables["alignment"]
    assert sum(r["model"] == "binary" for r in rows) == 2 * 10
    assert sum(r["model"] == "tenclass" for r in rows) == 10 * 10
    assert len(out.tables["unit_cosines"]) == (6 + 30) * 10
    heat = out.figures["heatmap"]
    shapes = [im.get_array().shape for ax in heat.axes for im in ax.get_images()]
    assert shapes == [(2, 10), (10, 10)] * 2  # raw class means (the paper's), then centred
    titles = [ax.get_title() for ax in heat.axes if ax.get_images()]
    assert "raw class means" in titles[0] and "centred" in titles[2]
    assert "stand-in" in heat._suptitle.get_text()  # type: ignore[union-attr]
    assert all(-1 <= r["cosine"] <= 1 for r in rows)
