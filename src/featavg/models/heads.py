"""Heads on a frozen pretrained backbone: the paper's Fig. 2c/d setting.

A :class:`BlockHead` is the two-layer net of the paper's Section 3 put on top of frozen features
phi(x) in R^D (D = 512 for ResNet-18):

    f_i(x) = sum_{r in R_i} ReLU(<w_r, phi(x)> + b_r),   R_i = {3i, 3i+1, 3i+2}

``Linear(D, width * k)`` + ReLU + a FIXED block second layer (unit r feeds output r // width
with weight 1). Only the first layer (w_r, b_r) trains, from PyTorch's default Linear init.
The block matrix is a buffer, never a parameter: no optimiser can move it.

The binary head is the same construction with k = 2 outputs, one per class group J_s
(the authors' binary head: blocks of the two groups): Linear(512, 6), units 0-2 vote
for group 0 and units 3-5 for group 1. So both heads have ``width`` units per output, the
heatmap rows (unit groups R_i) of both have the same size, and the binary head is the
paper's binary net f = f_{+1} - f_{-1} with m = 3 units per class written as 2 logits.

:class:`FrozenBackboneClassifier` chains an image backbone (an
:class:`~featavg.models.image_classifier.ImageClassifier`: normalisation + a net with
``features``) and a head into a model that takes pixels in [0, 1]. The backbone stays in
eval mode whatever ``.train()`` says, so its BatchNorm statistics never drift (the authors
left theirs in train mode; we fix it), and its parameters do not require grad.

:func:`frozen_features` computes phi once; :func:`featavg.training.heads.fit_heads_on_features`
trains heads on it (with a frozen backbone in eval mode and no augmentation, phi(x) is a
fixed function, so that is the same SGD as training the whole classifier).
"""

from __future__ import annotations

from typing import Self, cast

import torch
import torch.nn.functional as F
from torch import nn

from featavg.models.image_classifier import ImageClassifier
from featavg.models.resnet import kaiming_init_


def block_matrix(num_classes: int, width: int) -> torch.Tensor:
    """A (k, width * k) float32 0/1 matrix: A[i, r] = 1 iff r // width == i."""
    units = torch.arange(width * num_classes)
    return (units[None, :] // width == torch.arange(num_classes)[:, None]).to(torch.float32)


class BlockHead(nn.Module):
    """f(phi) = ReLU(W phi + b) A^T: (N, D) features -> (N, k) logits.

    W (width * k, D), b: the trained first layer ``linear`` (PyTorch's default init, drawn
    from ``generator`` when given); A (k, width * k): the fixed block second layer (buffer
    ``readout``, see :func:`block_matrix`). ``unit_groups[i]`` = R_i, the units feeding
    output i.
    """

    readout: torch.Tensor

    def __init__(
        self,
        feature_dim: int = 512,
        num_classes: int = 10,
        width: int = 3,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if min(feature_dim, num_classes, width) < 1:
            raise ValueError(
                "feature_dim, num_classes and width must be >= 1, got "
                f"{feature_dim}, {num_classes}, {width}"
            )
        self.feature_dim, self.num_classes, self.width = feature_dim, num_classes, width
        self.linear = nn.Linear(feature_dim, width * num_classes)
        if generator is not None:  # the same default init, from a seeded stream
            kaiming_init_(self.linear, generator)
        self.register_buffer("readout", block_matrix(num_classes, width))

    @property
    def weight(self) -> torch.Tensor:
        """The first-layer weights w_r, (width * k, D) (what the heatmaps compare)."""
        return self.linear.weight

    @property
    def unit_groups(self) -> list[list[int]]:
        """R_i = [width * i, ..., width * i + width - 1] for every output i."""
        return [list(range(self.width * i, self.width * (i + 1))) for i in range(self.num_classes)]

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        """(N, D) features -> (N, k): f_i = sum_{r in R_i} ReLU(<w_r, phi> + b_r)."""
        hidden = F.relu(self.linear(phi))
        return hidden @ self.readout.to(hidden.dtype).T


class FeatureHeadNet(nn.Module):
    """``head(backbone.features(x))`` on NORMALISED images x: the net an attack in the
    paper's normalised units goes through (backbone.net ∘ head).
    ``features(x)`` is the backbone's (N, D)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) normalised images -> (N, D) backbone features phi(x)."""
        features = getattr(self.backbone, "features", None)
        if not callable(features):
            raise TypeError(f"{type(self.backbone).__name__} has no features() method")
        out: torch.Tensor = features(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) normalised images -> (N, k) head logits."""
        out: torch.Tensor = self.head(self.features(x))
        return out


class FrozenBackboneClassifier(ImageClassifier):
    """A frozen backbone and a trainable head: pixels in [0, 1] -> logits.

    ``backbone``: an ImageClassifier (its ``normalize`` and ``net.features``; the net's own
    ``fc`` is unused); ``head``: e.g. a :class:`BlockHead` with ``feature_dim`` = the
    backbone's feature size. The backbone's parameters are set to ``requires_grad=False``
    in place, and it stays in eval mode: :meth:`train` only switches the head. As an
    ImageClassifier, ``.net`` (a :class:`FeatureHeadNet`) takes normalised images and
    ``.normalize`` maps pixels to them, so every image attack and read-out applies.
    """

    def __init__(self, backbone: ImageClassifier, head: nn.Module) -> None:
        normalization = getattr(backbone, "normalization", None)
        if normalization is None:
            normalization = backbone.normalize.normalization
        super().__init__(FeatureHeadNet(backbone.net, head), normalization)
        for p in backbone.net.parameters():
            p.requires_grad_(False)
        self.train(False)

    @property
    def feature_net(self) -> FeatureHeadNet:
        """``.net`` with its type: head(backbone.features(x)) on normalised images."""
        return cast(FeatureHeadNet, self.net)

    @property
    def backbone(self) -> nn.Module:
        """The frozen feature network (takes normalised images)."""
        return self.feature_net.backbone

    @property
    def head(self) -> nn.Module:
        """The trainable head."""
        return self.feature_net.head

    def train(self, mode: bool = True) -> Self:
        """Set the head's mode; the backbone stays in eval mode (fixed BN statistics)."""
        super().train(mode)
        self.feature_net.backbone.eval()
        return self


@torch.no_grad()
def frozen_features(
    model: ImageClassifier, x: torch.Tensor, batch_size: int, device: torch.device
) -> torch.Tensor:
    """phi(x) (N, D) float32 on ``device`` of uint8 images x (N, C, H, W) in [0, 255]
    (fed as x / 255), in batches of ``batch_size``; the model is put in eval mode."""
    model.eval()
    out = [
        model.features(x[i : i + batch_size].to(device).float() / 255.0).float()
        for i in range(0, x.shape[0], batch_size)
    ]
    return torch.cat(out)
