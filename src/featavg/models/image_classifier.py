"""An image classifier that takes pixels in [0, 1] and normalises them itself.

    model = ImageClassifier(resnet18(10, "mnist"), MNIST_HALF)
    model(x)            # x: (N, C, H, W) float in [0, 1] -> (N, num_classes) logits
    model.features(x)   # the net's penultimate features, e.g. (N, 512) for ResNet-18

Normalisation is part of the model so that attacks, whatever space they are quoted in, see
one function of the pixels. The paper quotes its radii in the *normalised* space (the
authors' MNIST and CIFAR-10 code): a perturbation delta of the pixels is delta / std there
(per channel). Hence

    (1 / max std) ||delta||  <=  ||delta / std||  <=  (1 / min std) ||delta||

for the L2 and the L-inf norm alike, with equality for a uniform std (a factor 2.0 for
MNIST_HALF, whose inputs are seen in [-1, 1]). :attr:`Normalization.l2_factor` states these
bounds and :meth:`Normalization.to_pixel_radius` / :meth:`Normalization.to_normalised_radius`
convert radii. Radii are quoted in both spaces, labelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from featavg.config import ConfigError

# how many offending keys a load error names
SHOWN_KEYS = 4


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - mean) / std`` of pixels in [0, 1]; one value broadcasts to every
    channel. ``name`` labels it in configs and reports."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str

    def __post_init__(self) -> None:
        if not self.mean or len(self.mean) != len(self.std):
            raise ConfigError(
                f"normalization {self.name}: mean and std need the same number (>= 1) of "
                f"values, got {len(self.mean)} and {len(self.std)}"
            )
        if min(self.std) <= 0:
            raise ConfigError(f"normalization {self.name}: std must be > 0, got {self.std}")

    @property
    def uniform(self) -> bool:
        """Whether every channel has the same std (then radii convert by one factor)."""
        return min(self.std) == max(self.std)

    @property
    def l2_factor(self) -> tuple[float, float]:
        """(lo, hi) = (1 / max std, 1 / min std): lo ||d||_2 <= ||d / std||_2 <= hi ||d||_2
        for any pixel perturbation d; lo == hi for a uniform std."""
        return (1.0 / max(self.std), 1.0 / min(self.std))

    @property
    def linf_factor(self) -> tuple[float, float]:
        """(lo, hi) = (1 / max std, 1 / min std), the same bounds for the L-inf norm."""
        return self.l2_factor

    def to_normalised_radius(self, r_pixel: float) -> float | tuple[float, float]:
        """A pixel-space radius in normalised units (L2 or L-inf alike).

        A float ``r_pixel / std`` for a uniform std; else ``(inner, outer)``: the image of
        the pixel ball of radius ``r_pixel`` contains the normalised ball of radius ``inner``
        and lies in that of radius ``outer``.
        """
        lo, hi = self.l2_factor
        return r_pixel * lo if self.uniform else (r_pixel * lo, r_pixel * hi)

    def to_pixel_radius(self, r_normalised: float) -> float | tuple[float, float]:
        """A normalised-space radius (the paper's units) in [0, 1]-pixel units.

        A float ``r_normalised * std`` for a uniform std; else ``(inner, outer)``: the
        normalised ball of radius ``r_normalised`` contains the pixel ball of radius ``inner``
        and lies in that of radius ``outer``.
        """
        lo, hi = self.l2_factor
        return r_normalised / hi if self.uniform else (r_normalised / hi, r_normalised / lo)


# the authors' MNIST code: Normalize(0.5, 0.5), the net sees [-1, 1]; normalised radii are
# 2x pixel radii
MNIST_HALF = Normalization(mean=(0.5,), std=(0.5,), name="mnist-half")
# the authors' CIFAR-10 script (the std values common in CIFAR code, not the data's)
CIFAR_AUTHORS = Normalization(
    mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010), name="cifar-authors"
)
# huyvnphan/PyTorch_CIFAR10's normalisation, which its pretrained weights expect (the
# authors' heads on pretrained features)
CIFAR_PRETRAINED = Normalization(
    mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616), name="cifar-pretrained"
)
NONE = Normalization(mean=(0.0,), std=(1.0,), name="none")

NORMALIZATIONS: dict[str, Normalization] = {
    n.name: n for n in (MNIST_HALF, CIFAR_AUTHORS, CIFAR_PRETRAINED, NONE)
}


def normalization_by_name(name: str) -> Normalization:
    """The named constant (``mnist-half``, ``cifar-authors``, ``cifar-pretrained``,
    ``none``); a ConfigError naming the allowed ones otherwise."""
    if name not in NORMALIZATIONS:
        raise ConfigError(
            f"normalization: must be one of {', '.join(NORMALIZATIONS)}, got {name!r}"
        )
    return NORMALIZATIONS[name]


class Normalize(nn.Module):
    """(N, C, H, W) -> (x - mean) / std per channel.

    mean and std are non-persistent buffers: they move with ``.to(device)`` but stay out of
    the state dict, so a checkpoint holds only the network and the normalisation comes from
    the config that built the model.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, normalization: Normalization) -> None:
        super().__init__()
        self.normalization = normalization
        shape = (1, len(normalization.mean), 1, 1)
        mean = torch.tensor(normalization.mean, dtype=torch.float32).reshape(shape)
        std = torch.tensor(normalization.std, dtype=torch.float32).reshape(shape)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) pixels -> normalised (N, C, H, W); C must match the normalisation's
        channel count unless that is 1 (broadcast)."""
        channels = self.mean.shape[1]
        if x.dim() != 4 or (channels != 1 and x.shape[1] != channels):
            raise ValueError(
                f"normalization {self.normalization.name} expects (N, {channels}, H, W) "
                f"images, got shape {tuple(x.shape)}"
            )
        return (x - self.mean) / self.std


class ImageClassifier(nn.Module):
    """``net(normalize(x))`` for pixels x in [0, 1]: the model every image experiment trains
    and attacks.

    ``net`` is a :class:`~featavg.models.resnet.ResNet`, a small model of
    :mod:`featavg.models.small_image` or any module with ``features(x)`` and ``forward(x)``
    taking normalised images. Attributes ``net``, ``normalize``, ``normalization``.
    """

    def __init__(self, net: nn.Module, normalization: Normalization) -> None:
        super().__init__()
        self.net = net
        self.normalize = Normalize(normalization)
        self.normalization = normalization

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float pixels in [0, 1] -> (N, num_classes) logits."""
        out: torch.Tensor = self.net(self.normalize(x))
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) pixels -> the net's features (N, feature_dim) of the normalised x."""
        features = getattr(self.net, "features", None)
        if not callable(features):
            raise TypeError(f"{type(self.net).__name__} has no features() method")
        out: torch.Tensor = features(self.normalize(x))
        return out

    @property
    def l2_factor(self) -> tuple[float, float]:
        """(1 / max std, 1 / min std): bounds of ||delta_normalised||_2 / ||delta_pixel||_2."""
        return self.normalization.l2_factor

    @property
    def linf_factor(self) -> tuple[float, float]:
        """(1 / max std, 1 / min std): the same bounds for the L-inf norm."""
        return self.normalization.linf_factor

    def to_pixel_radius(self, r_normalised: float) -> float | tuple[float, float]:
        """See :meth:`Normalization.to_pixel_radius`."""
        return self.normalization.to_pixel_radius(r_normalised)

    def to_normalised_radius(self, r_pixel: float) -> float | tuple[float, float]:
        """See :meth:`Normalization.to_normalised_radius`."""
        return self.normalization.to_normalised_radius(r_pixel)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > SHOWN_KEYS else "")


def load_backbone_state(model: ImageClassifier, state: Mapping[str, torch.Tensor]) -> None:
    """Load a network state dict into ``model.net``, strictly.

    Keys may carry the ``net.`` prefix (an ``ImageClassifier`` state dict) or not (a plain
    ResNet's, e.g. a huyvnphan/PyTorch_CIFAR10 or torchvision checkpoint). Missing
    ``*.num_batches_tracked`` entries (checkpoints of old PyTorch versions) are tolerated;
    any other missing or unexpected key, or a shape mismatch, raises a one-line ConfigError
    naming the first few.
    """
    own = model.net.state_dict()
    stripped = {k.removeprefix("net."): v for k, v in state.items()}
    missing = [k for k in own if k not in stripped and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in stripped if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_listed(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listed(unexpected)}")
        raise ConfigError(
            f"checkpoint: does not fit {type(model.net).__name__}; " + "; ".join(parts)
        )
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in stripped.items()
        if tuple(v.shape) != tuple(own[k].shape)
    ]
    if wrong:
        raise ConfigError(
            f"checkpoint: shapes do not fit {type(model.net).__name__} "
            f"(checkpoint vs model): {_listed(wrong)}"
        )
    for k, v in own.items():
        if k not in stripped:  # a tolerated num_batches_tracked
            stripped[k] = torch.zeros_like(v)
    model.net.load_state_dict(stripped, strict=True)
