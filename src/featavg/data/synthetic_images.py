"""A seeded synthetic stand-in for CIFAR-10: 3x32x32 uint8 images of 10 texture classes.

No CIFAR-10 ships offline, so tests and CPU demos use this. Every result computed on it must
be labelled as a stand-in (the loader sets ``ImageDataset.stand_in``).

Class c is a *texture*: W plane waves ``a_w * colour_w * cos(2 pi <f_w, p> / 32 + phi_w)``
(p the pixel position, f_w an integer frequency of at most ``max_freq`` cycles per image, a
unit colour vector per wave). One image of class c is

    x = 128 + scale * (g * T_c(p - s) + nuisance + b) + noise,   clipped into 0..255

with a per-image random shift s in [-max_shift, max_shift]^2 (continuous, applied to the
waves' phases: a shifted plane wave is a phase-shifted one), contrast g, a random mixture of
waves from a pool shared by all classes (``nuisance``), a per-image colour offset b and pixel
noise. The waves have zero spatial mean, so the mean colour of an image carries no class
information; the shift blurs the class *mean* image (high frequencies average out), so a
pixel-space template matcher is well above chance but imperfect, while a shift-invariant
learner (a CNN) can recognise the orientation, frequency and colour of the texture.

Generation is vectorised: per class, one (n_c, 2W) @ (2W, 3072) product builds all images
from cos/sin basis images, in chunks to bound memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from featavg.seeding import generator

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

#: default sizes: a fifth of CIFAR-10's, so that building them stays around a second on one core
DEFAULT_TRAIN = 10000
DEFAULT_TEST = 2000


@dataclass(frozen=True)
class TextureParams:
    """Knobs of the synthetic texture classes (defaults tuned so that a nearest-class-mean
    classifier on raw pixels is well above chance but far from perfect)."""

    num_classes: int = 10
    waves: int = 4
    max_freq: int = 3
    max_shift: float = 6.0
    contrast: tuple[float, float] = (0.6, 1.4)
    nuisance_waves: int = 16
    nuisance_std: float = 0.35
    offset_std: float = 0.3
    noise_std: float = 20.0
    scale: float = 45.0


_SIZE = 32


def _waves(num: int, max_freq: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` random plane waves: integer frequencies (num, 2), not both zero, and the
    (num, 2, 1024) cos/sin basis images with a random phase folded in."""
    freqs = torch.randint(-max_freq, max_freq + 1, (num, 2), generator=gen)
    zero = (freqs == 0).all(dim=1)
    while bool(zero.any()):  # redraw the (rare) constant waves: they would encode mean colour
        freqs[zero] = torch.randint(-max_freq, max_freq + 1, (int(zero.sum()), 2), generator=gen)
        zero = (freqs == 0).all(dim=1)
    phase = torch.rand(num, generator=gen) * 2 * math.pi
    coords = torch.arange(_SIZE, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    arg = 2 * math.pi * (freqs[:, 0, None, None] * xx + freqs[:, 1, None, None] * yy) / _SIZE
    arg = arg + phase[:, None, None]
    basis = torch.stack([torch.cos(arg), torch.sin(arg)], dim=1).reshape(num, 2, _SIZE * _SIZE)
    return freqs.to(torch.float32), basis


def _colours(num: int, gen: torch.Generator) -> torch.Tensor:
    """(num, 3) unit colour vectors."""
    c = torch.randn(num, 3, generator=gen)
    return c / c.norm(dim=1, keepdim=True)


def _wave_images(basis: torch.Tensor, colours: torch.Tensor, amps: torch.Tensor) -> torch.Tensor:
    """(num, 2, 3*1024): each wave's cos/sin basis painted in its colour and amplitude."""
    painted = amps[:, None, None, None] * colours[:, None, :, None] * basis[:, :, None, :]
    return painted.reshape(basis.shape[0], 2, 3 * _SIZE * _SIZE)


def make_texture_images(
    n: int, seed: int, split: str, params: TextureParams = TextureParams(), chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` images of the seeded texture classes.

    The class templates depend on ``seed`` only (shared by the splits); the per-image draws
    on ``(seed, split)``. Labels are balanced: each class appears floor(n/K) or ceil(n/K)
    times, in a seeded random order.

    Returns ``(x, y)``: x uint8 (n, 3, 32, 32), y int64 (n,).
    """
    p = params
    tgen = generator(seed, "synthetic-images/templates")
    freqs, basis = _waves(p.num_classes * p.waves, p.max_freq, tgen)
    amps = 0.6 + 0.4 * torch.rand(p.num_classes * p.waves, generator=tgen)
    cls_imgs = _wave_images(basis, _colours(p.num_classes * p.waves, tgen), amps)
    cls_imgs = cls_imgs.reshape(p.num_classes, p.waves * 2, -1)  # rows: wave0 cos, wave0 sin..
    cls_freqs = freqs.reshape(p.num_classes, p.waves, 2)
    _, nbasis = _waves(p.nuisance_waves, p.max_freq, tgen)
    nuisance_imgs = _wave_images(
        nbasis, _colours(p.nuisance_waves, tgen), torch.ones(p.nuisance_waves)
    ).reshape(p.nuisance_waves * 2, -1)

    gen = generator(seed, f"synthetic-images/{split}")
    y = (torch.arange(n) % p.num_classes)[torch.randperm(n, generator=gen)]
    x = torch.empty(n, 3 * _SIZE * _SIZE, dtype=torch.uint8)
    for start in range(0, n, chunk):
        yc = y[start : start + chunk]
        m = yc.shape[0]
        shift = (torch.rand(m, 2, generator=gen) * 2 - 1) * p.max_shift
        lo, hi = p.contrast
        gain = lo + (hi - lo) * torch.rand(m, generator=gen)
        # cos(a - t) = cos a cos t + sin a sin t: the shift becomes a phase t = 2 pi <f, s> / 32
        theta = 2 * math.pi * torch.einsum("mwk,mk->mw", cls_freqs[yc], shift) / _SIZE
        coef = torch.stack([torch.cos(theta), torch.sin(theta)], dim=2).reshape(m, -1)
        coef = coef * gain[:, None]
        # nuisance first, then each class adds its own (m_c, 2W) @ (2W, 3072) product
        ncoef = torch.randn(m, p.nuisance_waves * 2, generator=gen) * p.nuisance_std
        img = ncoef @ nuisance_imgs
        for c in range(p.num_classes):
            rows = (yc == c).nonzero().squeeze(1)
            img.index_add_(0, rows, coef[rows] @ cls_imgs[c])
        offset = torch.randn(m, 3, generator=gen) * p.offset_std
        img += offset.repeat_interleave(_SIZE * _SIZE, dim=1)
        img = 128.0 + p.scale * img
        img += torch.randn(m, img.shape[1], generator=gen) * p.noise_std
        x[start : start + m] = img.round_().clamp_(0, 255).to(torch.uint8)
    return x.reshape(n, 3, _SIZE, _SIZE), y
