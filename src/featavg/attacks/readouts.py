"""The binary decisions compared in the real-data experiments: read-outs of two trained nets.

A coarse ("binary") model f^bin predicts the class group of an image directly; a fine
(10-class) model f = (f_1, ..., f_k) is read out on the same coarse task three ways:

* ``group_argmax``: predict the group of argmax_j f_j(x); attacked with the group loss
  -log sum_{j in J_y} softmax_j(f(x)) (:class:`~featavg.attacks.objectives.GroupCrossEntropy`);
* ``sum``: the sum form F(x) = sum_{j in J+} f_j(x) - sum_{j in J-} f_j(x), as the two logits
  (sum_{J-} f_j, sum_{J+} f_j) = f(x) M with M the (k, 2) group-membership matrix
  (:class:`SumReadout`); its 2-logit cross-entropy is softplus(-y F(x)) for y = +-1;
* ``tenway``: plain 10-way accuracy under a 10-class cross-entropy attack (the authors'
  synthetic 10-class curve), on the fine labels.

Every read-out is an ``nn.Module`` returning logits plus the objective that attacks it, so any
attack of :mod:`featavg.attacks` plugs in. The modules wrap the nets as given: in the
experiments that is ``ImageClassifier.net``, which takes *normalised* images (the paper's
attack space).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from featavg.attacks.objectives import CrossEntropy, GroupCrossEntropy, Objective

READOUTS: tuple[str, ...] = ("binary", "group_argmax", "sum", "tenway")

#: legend and table labels of the read-outs (the fine model has 10 classes in every
#: experiment that uses them)
READOUT_LABELS: dict[str, str] = {
    "binary": "binary model",
    "group_argmax": "10-class model, group of argmax (group loss)",
    "sum": "10-class model, sum form",
    "tenway": "10-class model, 10-way accuracy",
}


def membership_matrix(groups: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """M (k, G) float32 with M[j, g] = 1 if fine class j is in group g (J_g), else 0.

    ``groups``: (k,) the group id 0..G-1 of every fine class."""
    ids = torch.as_tensor(groups, dtype=torch.long).flatten()
    if ids.numel() == 0 or int(ids.min()) < 0:
        raise ValueError(f"groups: need k >= 1 group ids >= 0, got {ids.tolist()}")
    return torch.nn.functional.one_hot(ids, int(ids.max()) + 1).to(torch.float32)


class SumReadout(nn.Module):
    """The sum form of a fine model: G logits s_g(x) = sum_{j in J_g} f_j(x), i.e. f(x) M.

    For two groups (J- = group 0, J+ = group 1) the logit difference s_1 - s_0 is the paper's
    F(x) = sum_{J+} f_j - sum_{J-} f_j (the paper's Fig. 1), so argmax predicts sign F and the
    2-logit cross-entropy is the logistic loss softplus(-y F). ``M`` is a non-persistent
    buffer (it moves with ``.to``; forward also follows the logits' device).

    Shape: (N, *input) -> net -> (N, k) -> (N, G).
    """

    membership: torch.Tensor

    def __init__(self, net: nn.Module, groups: Sequence[int] | torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("membership", membership_matrix(groups), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, *input) -> (N, G) group sums of the fine logits."""
        logits: torch.Tensor = self.net(x)
        if logits.shape[-1] != self.membership.shape[0]:
            raise ValueError(
                f"SumReadout: {self.membership.shape[0]} group ids for {logits.shape[-1]} classes"
            )
        # the net may live elsewhere than this wrapper (built on the CPU around a GPU net)
        return logits @ self.membership.to(device=logits.device, dtype=logits.dtype)


@dataclass(frozen=True)
class Readout:
    """One binary decision to attack: ``module`` (inputs -> logits), the ``objective`` that
    attacks it and decides correctness, and which ``target`` labels it takes ("coarse":
    group ids, "fine": class ids). ``name`` is one of :data:`READOUTS`, ``label`` its legend
    text."""

    name: str
    label: str
    module: nn.Module
    objective: Objective
    target: Literal["coarse", "fine"]

    def labels(self, y_fine: torch.Tensor, groups: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The labels this read-out is scored on: (N,) fine labels or their groups."""
        if self.target == "fine":
            return y_fine
        table = torch.as_tensor(groups, dtype=torch.long, device=y_fine.device)
        return table[y_fine.long()]


def build_readouts(
    binary_net: nn.Module,
    fine_net: nn.Module,
    groups: Sequence[int] | torch.Tensor,
    names: Sequence[str] = READOUTS,
) -> dict[str, Readout]:
    """The read-outs ``names`` (default: all four, in :data:`READOUTS` order) of a coarse net
    (G logits) and a fine net (k logits) under one grouping ``groups`` (k,)."""
    unknown = [n for n in names if n not in READOUTS]
    if unknown:
        raise ValueError(f"read-outs: unknown {unknown}; allowed: {', '.join(READOUTS)}")
    ids = [int(g) for g in torch.as_tensor(groups).flatten().tolist()]
    out = {}
    for name in names:
        module, objective, target = _parts(name, binary_net, fine_net, ids)
        out[name] = Readout(name, READOUT_LABELS[name], module, objective, target)
    return out


def _parts(
    name: str, binary_net: nn.Module, fine_net: nn.Module, ids: list[int]
) -> tuple[nn.Module, Objective, Literal["coarse", "fine"]]:
    """(module, objective, target) of the read-out ``name``."""
    if name == "binary":
        return binary_net, CrossEntropy(), "coarse"
    if name == "group_argmax":
        return fine_net, GroupCrossEntropy(ids), "coarse"
    if name == "sum":
        return SumReadout(fine_net, ids), CrossEntropy(), "coarse"
    return fine_net, CrossEntropy(), "fine"
