"""ResNet-18 (He et al. 2016) in torchvision's BasicBlock layout, with the stems the paper uses.

The module names are torchvision's (``conv1, bn1, relu, maxpool, layer1..layer4, avgpool,
fc``; each block ``conv1, bn1, conv2, bn2`` and ``downsample.0`` / ``downsample.1``), so a
state dict saved from torchvision's ``resnet18`` or from ``huyvnphan/PyTorch_CIFAR10``'s
``cifar10_models/resnet.py`` loads with ``load_state_dict(strict=True)``.

Stems (the paper's and the authors' recipes), input (N, C, H, W) -> stem output (N, 64, H', W'):

- ``"mnist"``: 1-channel 7x7/2 conv (pad 3) + BN + ReLU + 3x3/2 max-pool: 28x28 -> 7x7 (MNIST);
- ``"cifar"``: 3x3/1 conv (pad 1) + BN + ReLU, no max-pool: 32x32 -> 32x32 (CIFAR-10 "standard");
- ``"pretrained"``: 3x3/1 conv + BN + ReLU + 3x3/2 max-pool: 32x32 -> 16x16, the layout of
  the public CIFAR-10 weights the authors used (heads on pretrained features);
- ``"imagenet"``: 3-channel 7x7/2 conv + max-pool, torchvision's ``resnet18`` (authors' CIFAR-10).

Inputs are already normalised (:class:`featavg.models.image_classifier.ImageClassifier` does
that). ``features`` is the 512-d global-average-pooled representation the paper's heatmaps
use (the class means mu_j of the Fig. 2c/d heatmaps are means of these).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

Stem = Literal["mnist", "cifar", "pretrained", "imagenet"]
STEMS: tuple[str, ...] = get_args(Stem)

# channels of the four stages; ResNet-18 has two BasicBlocks per stage
STAGE_WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2


def kaiming_init_(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """Re-initialise ``module`` in place as torchvision initialises its ResNets.

    Conv weights ~ kaiming_normal(fan_out, relu); BatchNorm weight 1, bias 0; Linear layers get
    PyTorch's default (kaiming_uniform with a = sqrt(5), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
    With ``generator`` every draw comes from it (seeded, independent of the global RNG);
    with ``None`` from the global RNG, as torchvision does.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(
                m.weight, mode="fan_out", nonlinearity="relu", generator=generator
            )
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            # nn.Linear.reset_parameters, but drawing from `generator`
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.in_features) if m.in_features > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)


class Conv3x3(nn.Conv2d):
    """A 3x3 convolution with padding 1 and no bias (an ``nn.Conv2d``: same parameters, same
    state-dict keys) that is exact but faster on inputs of at most 2x2 pixels.

    There every input pixel q lies within the kernel of every output pixel p (at tap
    q - p * stride + 1), so the convolution is one dense matrix on the flattened input, made
    of slices of ``weight``; the taps that see only the zero padding are left out, and their
    gradient is exactly zero, as in the convolution. Why: with the MNIST stem, layer3 runs at
    2x2 and layer4 at 1x1, and the CPU (oneDNN) backward of a 512x512 3x3 conv at 1x1 took
    ~200 ms per batch of 128 against ~10 ms for the matrix product; those convs were over
    half of a training step (torch 2.13 on the 2-core machine;
    benchmarks/bench_image_training.py). ``skip_padding_taps=False`` gives the plain
    ``nn.Conv2d`` path (the benchmark's baseline).
    """

    def __init__(
        self, in_planes: int, out_planes: int, stride: int = 1, *, skip_padding_taps: bool = True
    ) -> None:
        super().__init__(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.skip_padding_taps = skip_padding_taps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_planes, H, W) -> (N, out_planes, ceil(H / stride), ceil(W / stride))."""
        h, w = x.shape[-2:]
        if not self.skip_padding_taps or h > 2 or w > 2:
            return super().forward(x)
        stride = self.stride[0]
        ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
        # output pixel (i, j) sees input (a, b) at tap (a - i s + 1, b - j s + 1)
        rows = [
            self.weight[
                :, :, 1 - i * stride : 1 - i * stride + h, 1 - j * stride : 1 - j * stride + w
            ]
            for i in range(ho)
            for j in range(wo)
        ]
        # (out_c, P_out, in_c * h * w) -> (out_c * P_out, in_c * h * w); x flattens as (c, a, b)
        dense = torch.stack([r.flatten(1) for r in rows], 1).flatten(0, 1)
        return F.linear(x.flatten(1), dense).view(x.shape[0], -1, ho, wo)


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); shortcut = ``downsample`` (1x1
    conv with the block's stride + BN) when the shape changes, else the identity."""

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, *, skip_padding_taps: bool = True
    ) -> None:
        super().__init__()
        self.conv1 = Conv3x3(in_planes, planes, stride, skip_padding_taps=skip_padding_taps)
        self.bn1 = nn.BatchNorm2d(planes)
        # not in-place: the same numbers, and safe under torch.func transforms and
        # forward-mode AD that attacks or probes may use
        self.relu = nn.ReLU()
        self.conv2 = Conv3x3(planes, planes, skip_padding_taps=skip_padding_taps)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_planes, H, W) -> (N, planes, H / stride, W / stride)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet-18: stem, four stages of two :class:`BasicBlock` s (64, 128, 256, 512
    channels; stages 2-4 halve the resolution), global average pool, ``fc`` head.

    Build it with :func:`resnet18`; initialised by :func:`kaiming_init_` from
    ``generator``. ``features(x)`` -> (N, 512), ``forward(x)`` -> (N, num_classes) logits;
    ``x`` is (N, in_channels, H, W), already normalised.
    """

    feature_dim: int = STAGE_WIDTHS[-1]

    def __init__(
        self,
        num_classes: int,
        stem: Stem,
        in_channels: int,
        *,
        generator: torch.Generator | None = None,
        skip_padding_taps: bool = True,
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
        self.stem_name: Stem = stem
        self.in_channels = in_channels
        self.num_classes = num_classes
        width = STAGE_WIDTHS[0]
        if stem in ("mnist", "imagenet"):
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        # the "cifar" stem keeps full resolution (no max-pool), the others halve it
        self.maxpool: nn.Module = (
            nn.Identity() if stem == "cifar" else nn.MaxPool2d(3, stride=2, padding=1)
        )
        in_planes = width
        stages = []
        for i, planes in enumerate(STAGE_WIDTHS):
            stride = 1 if i == 0 else 2
            skip = skip_padding_taps
            blocks = [BasicBlock(in_planes, planes, stride, skip_padding_taps=skip)]
            blocks += [
                BasicBlock(planes, planes, skip_padding_taps=skip)
                for _ in range(BLOCKS_PER_STAGE - 1)
            ]
            stages.append(nn.Sequential(*blocks))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.feature_dim, num_classes)
        kaiming_init_(self, generator)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 64, H', W'): conv1, bn1, relu, maxpool (see the module doc)."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) normalised images -> (N, 512) globally average-pooled features."""
        out = self.stem(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(self.avgpool(out), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) normalised images -> (N, num_classes) logits ``fc(features(x))``."""
        return self.fc(self.features(x))


def resnet18(
    num_classes: int,
    stem: Stem,
    in_channels: int | None = None,
    *,
    generator: torch.Generator | None = None,
    skip_padding_taps: bool = True,
) -> ResNet:
    """A randomly initialised ResNet-18 with the given stem (see the module doc).

    ``in_channels`` defaults to 1 for ``"mnist"`` and 3 otherwise. ``generator`` (e.g.
    ``featavg.seeding.generator(seed, "model/init")``) makes the init seeded; ``None`` uses
    the global RNG. With ``stem="imagenet"`` and 1000 classes this is torchvision's
    ``resnet18`` (11,689,512 parameters). ``skip_padding_taps=False`` makes every 3x3 conv
    the plain ``nn.Conv2d`` path (see :class:`Conv3x3`; same function, slower on the CPU).
    """
    if in_channels is None:
        in_channels = 1 if stem == "mnist" else 3
    if num_classes < 1 or in_channels < 1:
        raise ValueError(
            f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}"
        )
    return ResNet(
        num_classes, stem, in_channels, generator=generator, skip_padding_taps=skip_padding_taps
    )
