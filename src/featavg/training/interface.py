"""The seams between the experiments and a model family's trainer.

:class:`Trainer` is what an experiment needs from any trainer: train a list of models in
place and hand back their records. The two-layer GD of :mod:`.two_layer_gd` implements it
(:class:`~featavg.training.two_layer_gd.TwoLayerGD`); an autograd trainer for image models
(ResNets) is meant to implement it too.

:class:`FactoredInputs` stands for training inputs that are never materialised, e.g. the
adversarial examples x_adv = x + W^T beta of :class:`featavg.training.adversarial.RowSpaceInputs`:
what a GD step of a two-layer net needs from x_adv is only its preactivations and the weight
gradient dL/dW = dL/dP x_adv.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

# One record of a training run: {"step": t, "loss": (S,), "train_acc": (S,), **extras},
# tensors on the CPU, one entry per ensemble member S.
Record = dict[str, Any]
# on_record(step, model) -> extra per-member metrics at a recorded step
RecordHook = Callable[[int, Any], dict[str, torch.Tensor]]


@runtime_checkable
class Trainer(Protocol):
    """Trains ensembles of one model family in place; the optimiser settings (steps,
    learning rate, batch size, ...) belong to the trainer, not to this call."""

    def fit(
        self,
        models: Sequence[Any],
        x: torch.Tensor,
        targets: Sequence[torch.Tensor],
        *,
        seed: int = 0,
        on_record: Sequence[RecordHook | None] | None = None,
        progress: bool = False,
    ) -> list[list[Record]]:
        """Train every model of ``models`` on inputs x with its own ``targets[i]``; return
        one list of records per model (recorded steps in increasing order).

        x: shared by all models (and members) or one data set per member, the leading
        axis S; seed: the data order (mini-batches, augmentation); on_record[i](step,
        model) adds metrics of models[i] to its records."""
        ...


@runtime_checkable
class FactoredInputs(Protocol):
    """Inputs X (S, n, d) of a two-layer ensemble known only through what a GD step needs.

    Unit-major layout as in :mod:`featavg.training.two_layer_engines`: preactivations
    P^T (S, M, B), gradients dL/dP (S, M, B). ``idx``: the rows (points) of the current
    mini-batch, None for all."""

    def preactivations(self, idx: torch.Tensor | None) -> torch.Tensor:
        """P^T = W X^T + b of the rows idx, (S, M, B)."""
        ...

    def weight_gradient(self, idx: torch.Tensor | None, dpt: torch.Tensor) -> torch.Tensor:
        """dL/dW = dL/dP X_idx (S, M, d) from dL/dP (S, M, B) of the rows idx."""
        ...
