"""Image classifiers at inference: logits and accuracy on uint8 images, in batches.

:func:`predict_logits` and :func:`evaluate` feed uint8 images (N, C, H, W) as x / 255 (the
[0, 1] pixels featavg's image models take) in eval mode without gradients, and restore the
model's mode afterwards. Used by :class:`~featavg.training.image_sgd.ImageSGD` for its
per-epoch test accuracy.
"""

from __future__ import annotations

import torch
from torch import nn

from featavg.device import resolve_device


def as_device(device: torch.device | str) -> torch.device:
    """``device`` as a torch.device (a name is resolved: ``auto``, ``cpu``, ``cuda``...)."""
    return device if isinstance(device, torch.device) else resolve_device(device)


def check_images(x: torch.Tensor, name: str) -> None:
    """ValueError naming ``name`` unless x is a uint8 batch of images (N, C, H, W)."""
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ValueError(
            f"{name}: expected uint8 images (N, C, H, W), got {x.dtype} {tuple(x.shape)}"
        )


def predict_logits(
    model: nn.Module,
    x: torch.Tensor,
    *,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Logits (N, classes), float32 on the CPU, of ``model`` in eval mode on uint8 images
    x (N, C, H, W), fed as x / 255 in batches on ``device`` (default: the model's) without
    gradients. The model's train/eval mode is restored afterwards."""
    check_images(x, "x")
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    device = as_device(device)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                xb = x[start : start + batch_size].to(device, non_blocking=True)
                out.append(model(xb.float().div_(255)).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 0)


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
) -> float:
    """Accuracy of argmax ``model(x / 255)`` against labels y (N,) in eval mode (see
    :func:`predict_logits`)."""
    logits = predict_logits(model, x, batch_size=batch_size, device=device)
    if logits.shape[0] == 0:
        raise ValueError("evaluate: no images")
    return float((logits.argmax(1) == y.cpu()).double().mean())
