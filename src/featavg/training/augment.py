"""Batched image augmentation: random crop with zero padding and horizontal flip.

The standard CIFAR augmentation (torchvision's ``RandomCrop(H, padding=p)`` followed by
``RandomHorizontalFlip()``), done for a whole batch with two index gathers on the batch's
device instead of a Python loop over samples. The random offsets and flips are drawn on the
CPU from a seeded generator (:func:`draw_crop_flip`) for a whole epoch at once, so the
augmented images do not depend on the device or on the batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_crop_flip(
    n: int, padding: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random parameters for ``n`` images: offsets (n, 2) int64, (row, column) of the
    crop's top-left corner in the padded image, uniform in {0, ..., 2 padding}; flips (n,)
    bool, each True with probability 1/2. Drawn on the CPU from ``generator``."""
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    flips = torch.randint(0, 2, (n,), generator=generator).bool()
    return offsets, flips


def crop_flip(
    x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int
) -> torch.Tensor:
    """Crop every image of x (B, C, H, W), zero-padded by ``padding`` on each side, to
    H x W at ``offsets`` (B, 2) and mirror it left-right where ``flips`` (B,) is True.

    out[b, c, i, j] = pad(x)[b, c, oy_b + i, ox_b + j'] with j' = W - 1 - j if flipped
    else j. Offset (padding, padding) without flip is the identity. Any dtype (uint8
    pixels or floats); offsets and flips are moved to x's device."""
    batch, channels, height, width = x.shape
    offsets = offsets.to(x.device)
    flips = flips.to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding)) if padding > 0 else x
    rows = offsets[:, :1] + torch.arange(height, device=x.device)  # (B, H)
    columns = torch.arange(width, device=x.device).expand(batch, width)
    columns = torch.where(flips[:, None], width - 1 - columns, columns) + offsets[:, 1:]  # (B, W)
    # gather the rows (B, C, H, W + 2p), then the columns of those rows (B, C, H, W)
    picked_rows = padded.gather(
        2, rows[:, None, :, None].expand(batch, channels, height, padded.shape[3])
    )
    return picked_rows.gather(3, columns[:, None, None, :].expand(batch, channels, height, width))
