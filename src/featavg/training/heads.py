"""Training heads on fixed features: the paper's heads on a frozen pretrained backbone.

With a frozen backbone in eval mode and no augmentation, phi(x) is a fixed function, so
training a :class:`~featavg.models.heads.BlockHead` on features computed once
(:func:`~featavg.models.heads.frozen_features`) is the same SGD as training the whole
:class:`~featavg.models.heads.FrozenBackboneClassifier` with
:class:`~featavg.training.image_sgd.ImageSGD` (same batches, same order streams), at a
fraction of the cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from featavg.progress import bar as progress_bar
from featavg.seeding import generator as seeded_generator
from featavg.training.image_sgd import SGDConfig


def fit_heads_on_features(
    heads: Sequence[nn.Module],
    phi: torch.Tensor,
    targets: Sequence[torch.Tensor],
    sgd: SGDConfig,
    *,
    seed: int = 0,
    progress: bool = False,
) -> list[list[float]]:
    """Train ``heads`` in place on fixed features phi (N, D), heads[i] on targets[i] (N,),
    with mini-batch SGD (cross-entropy; ``sgd``'s lr, momentum, weight decay, nesterov,
    batch size and epochs; its schedule, augmentation and CUDA settings do not apply).

    Every head sees the same batches, in the order ImageSGD would draw for ``seed``
    (``train/order/{epoch}`` streams), so this equals training
    ``FrozenBackboneClassifier(backbone, head)`` with ImageSGD on the images whose features
    are phi (up to float rounding). Heads and phi must be on one device. Returns the mean
    training loss of every epoch, per head; leaves the heads in eval mode.
    """
    if sgd.schedule != "none" or sgd.augment != "none":
        raise ValueError("fit_heads_on_features: needs schedule 'none' and augment 'none'")
    n = phi.shape[0]
    if n == 0 or len(heads) != len(targets):
        raise ValueError(
            f"fit_heads_on_features: {n} points, {len(heads)} heads, {len(targets)} target vectors"
        )
    opts = [
        torch.optim.SGD(
            [p for p in h.parameters() if p.requires_grad],
            lr=sgd.lr,
            momentum=sgd.momentum,
            weight_decay=sgd.weight_decay,
            nesterov=sgd.nesterov,
        )
        for h in heads
    ]
    labels = [t.to(phi.device).long() for t in targets]
    losses: list[list[float]] = [[] for _ in heads]
    steps = sgd.epochs * math.ceil(n / sgd.batch_size)
    pbar = progress_bar(total=steps, desc="train heads", enabled=progress, unit="batch")
    for epoch in range(1, sgd.epochs + 1):
        order = torch.randperm(n, generator=seeded_generator(seed, f"train/order/{epoch}"))
        order = order.to(phi.device)
        sums = [torch.zeros((), dtype=torch.float64, device=phi.device) for _ in heads]
        for h in heads:
            h.train()
        for start in range(0, n, sgd.batch_size):
            idx = order[start : start + sgd.batch_size]
            xb = phi[idx]
            for i, (head, opt) in enumerate(zip(heads, opts, strict=True)):
                loss = F.cross_entropy(head(xb).float(), labels[i][idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sums[i] += loss.detach() * idx.numel()
            pbar.update(1)
        for i in range(len(heads)):
            losses[i].append(float(sums[i]) / n)
    pbar.close()
    for h in heads:
        h.eval()
    return losses
