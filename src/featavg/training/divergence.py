"""When an image training has diverged: :func:`check_diverged`, run after every epoch.

A diverged model (NaN/inf or far-too-large mean loss, or a NaN/inf weight) raises
:class:`~featavg.faults.NumericalFault` naming the epoch, the model and the field to change,
before the epoch's checkpoint is written: a diverged model is never saved or returned.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from featavg.faults import NumericalFault

# an epoch's mean cross-entropy above this multiple of chance's (ln C: uniform outputs over
# C classes; at least 69 for two) is divergence, not a hard start: on toy data lr 10 already
# gives ~80-250, and no sane training averages such a loss over an epoch
DIVERGENCE_FACTOR = 100.0


def check_diverged(
    epoch: int, models: list[nn.Module], losses: list[float], classes: list[int], lr: float
) -> None:
    """Raise :class:`~featavg.faults.NumericalFault` (one line: the epoch, the model, the
    field to change) when a model's mean training loss of ``epoch`` is NaN/inf or above
    :data:`DIVERGENCE_FACTOR` times chance's, or one of its weights is NaN/inf: a diverged
    model is never checkpointed or returned as trained. Checked once per epoch, on the sums
    the epoch accumulated anyway, so there is no host sync per batch (a NaN in any batch's
    loss makes the sum NaN). The weights are checked too (one sync per model): the epoch's
    last step may break them after its loss was still finite."""
    for i, (model, loss) in enumerate(zip(models, losses, strict=True)):
        limit = DIVERGENCE_FACTOR * math.log(max(classes[i], 2))
        if not math.isfinite(loss):
            what = "training loss became non-finite (NaN/inf)"
        elif loss > limit:
            what = (
                f"mean training loss {loss:.3g}, over {limit:.0f} ({DIVERGENCE_FACTOR:g}x chance)"
            )
        else:
            params = [p.detach() for p in model.parameters()]
            if not params or bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
                continue
            what = "a weight became non-finite (NaN/inf)"
        raise NumericalFault(
            f"training diverged: epoch {epoch}, model {i} ({type(model).__name__}): "
            f"{what} at learning rate {lr:g}; lower sgd.lr (train.sgd.lr in an experiment) "
            "or use a schedule"
        )
