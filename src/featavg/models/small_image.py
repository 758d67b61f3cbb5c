"""Small image models for the CPU presets: a strided CNN and an MLP.

Both follow the interface of :class:`featavg.models.resnet.ResNet`: ``features(x)`` -> (N,
feature_dim), a linear head ``fc`` with ``forward(x) = fc(features(x))``, and inputs that are
already normalised. They stand in for ResNet-18 where a laptop must finish in minutes; the
feature-averaging analysis (class means of ``features``, cosines with the head's rows) is the
same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from featavg.models.resnet import kaiming_init_

# the CNN stops adding stride-2 blocks here: three halvings take 28x28 / 32x32 to 4x4
MAX_CNN_BLOCKS = 3


def cnn_channels(width: int, image_size: int) -> tuple[int, ...]:
    """Channels of :class:`SmallCNN` 's blocks: width/2, width, 2 width, ... (doubling per
    halving of the resolution), one block per stride-2 halving while the map stays >= 2x2
    after it, at least one and at most :data:`MAX_CNN_BLOCKS`.

    28x28 or 32x32 with width 32 -> (16, 32, 64); 8x8 -> (16, 32).
    """
    n_blocks = max(1, min(MAX_CNN_BLOCKS, int(math.log2(max(image_size, 1))) - 1))
    return tuple(max(1, width * 2**i // 2) for i in range(n_blocks))


class SmallCNN(nn.Module):
    """Blocks of conv3x3 (stride 2, no bias) + BatchNorm + ReLU, global average pool, ``fc``.

    Strided convolutions instead of conv + max-pool: at 28x28 the full-resolution layers of
    the conv + pool layout made it about 2x slower to train at the same channel counts.
    With width 32 on 28x28 (channels 16, 32, 64; 4x4 before the pool) it trained at about
    5k images/s and evaluated at about 20k/s on one CPU core at batch 128 (measured here).

    ``x``: (N, in_channels, image_size, image_size), normalised; ``features(x)`` -> (N,
    feature_dim) with feature_dim = the last block's channels (64 for width 32).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        width: int = 32,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if min(in_channels, num_classes, image_size, width) < 1:
            raise ValueError(
                "in_channels, num_classes, image_size and width must be >= 1, got "
                f"{in_channels}, {num_classes}, {image_size}, {width}"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = image_size
        layers: list[nn.Module] = []
        previous = in_channels
        for channels in cnn_channels(width, image_size):
            layers += [
                nn.Conv2d(previous, channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            ]
            previous = channels
        self.blocks = nn.Sequential(*layers)
        self.feature_dim = previous
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.feature_dim, num_classes)
        kaiming_init_(self, generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) normalised images -> (N, feature_dim) globally pooled features."""
        return torch.flatten(self.avgpool(self.blocks(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, num_classes) logits ``fc(features(x))``."""
        return self.fc(self.features(x))


class MLP(nn.Module):
    """Flatten, then Linear + ReLU per entry of ``hidden``, then the linear head ``fc``.

    ``x``: (N, ...) with prod(...) = in_features (images are flattened); ``features(x)`` is
    the last hidden layer's ReLU output (N, hidden[-1]), or the flattened input when
    ``hidden`` is empty (then the model is linear). PyTorch's default Linear init, drawn from
    ``generator`` when given.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (256,),
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if min(in_features, num_classes, *hidden) < 1:
            raise ValueError(
                "in_features, num_classes and hidden widths must be >= 1, got "
                f"{in_features}, {num_classes}, {tuple(hidden)}"
            )
        self.in_features = in_features
        self.num_classes = num_classes
        layers: list[nn.Module] = [nn.Flatten()]
        previous = in_features
        for units in hidden:
            layers += [nn.Linear(previous, units), nn.ReLU()]
            previous = units
        self.body = nn.Sequential(*layers)
        self.feature_dim = previous
        self.fc = nn.Linear(self.feature_dim, num_classes)
        kaiming_init_(self, generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (N, feature_dim) last hidden activations."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (N, num_classes) logits ``fc(features(x))``."""
        return self.fc(self.features(x))
