"""What an attack maximises and what counts as a correct prediction.

Each objective implements :class:`Objective`:

* ``prepare(y, device)``: checks the labels once and returns them in the dtype the loss needs;
* ``loss(logits, y) -> (B,)``: the per-sample loss the attacker MAXIMISES;
* ``loss_grad(logits, y) -> logits' shape``: d loss_i / d logits_i, written out (the
  two-layer attacks of :mod:`featavg.attacks.two_layer` backpropagate by hand);
* ``correct(logits, y) -> (B,) bool``: whether each prediction is right.

Three read-outs cover the paper:

* :class:`CrossEntropy`: k-way softmax cross-entropy on a class index; also the binary
  :class:`~featavg.models.two_layer.TwoLayerNet`, whose logits [-f/2, f/2] make CE on the
  index (y + 1)/2 exactly the logistic loss softplus(-y f);
* :class:`BinaryMargin`: a model returning the margin f itself, y in {-1, +1};
* :class:`GroupCrossEntropy`: a k-class model read out as a binary classifier by class group
  (the argmax form): loss = -log sum_{j in group(y)} softmax_j.
"""

from __future__ import annotations

import warnings
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F


@runtime_checkable
class Objective(Protocol):
    """What an attack maximises and what counts as correct, on a batch of B logits."""

    def prepare(self, y: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Check the labels once; return them on ``device`` in the dtype the loss needs."""
        ...

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) per-sample loss, the quantity the attacker maximises."""
        ...

    def loss_grad(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """d loss_i / d logits_i, shaped like ``logits``."""
        ...

    def correct(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) bool: whether each prediction is right."""
        ...


def check_model_output(logits: torch.Tensor, objective: Objective | None = None) -> None:
    """Warn when model outputs look wrong for a logit-based attack (as AutoAttack does).

    * outputs that look like probabilities (all in [0, 1], rows summing to 1): the loss
      would be computed on a softmax of probabilities and its gradients nearly vanish;
    * fewer than 2 classes for a cross-entropy objective: the CE of one class is constant 0.

    ``objective``: the objective the outputs feed (None: treated as :class:`CrossEntropy`).
    A :class:`BinaryMargin` objective expects a (B,) or (B, 1) margin and is not checked.
    """
    if isinstance(objective, BinaryMargin):
        return
    if logits.ndim != 2 or logits.shape[1] < 2:
        warnings.warn(
            f"model output has shape {tuple(logits.shape)}: a cross-entropy attack needs "
            "(B, C) logits with C >= 2 classes (use BinaryMargin for a single margin output)",
            stacklevel=2,
        )
        return
    with torch.no_grad():
        in_unit = bool(((logits >= 0) & (logits <= 1)).all())
        sums_to_one = bool(torch.allclose(logits.sum(1), torch.ones_like(logits[:, 0]), atol=1e-4))
    if in_unit and sums_to_one:
        warnings.warn(
            "model outputs look like probabilities (in [0, 1], rows sum to 1); the attack "
            "expects logits: return the pre-softmax scores",
            stacklevel=2,
        )


def softmax_rows(logits: torch.Tensor) -> torch.Tensor:
    """Row softmax written out: torch's CPU kernel is ~5x slower for many short rows
    (e.g. 300k rows of 10 logits in a batched-radii attack)."""
    e = (logits - logits.amax(1, keepdim=True)).exp()
    return e / e.sum(1, keepdim=True)


class CrossEntropy:
    """Softmax cross-entropy on a class index y (long, in 0..C-1); correct = the true
    logit is strictly the largest, so a tie counts as NOT correct (as f = 0 does for
    :class:`BinaryMargin` and the exact radii): a model whose logits all vanish (every
    ReLU switched off) is fooled, not credited to class 0 by ``argmax``'s first index.

    For the binary ``TwoLayerNet`` pass y = (y_pm + 1) / 2: with logits [-f/2, f/2],
    CE = softplus(-y_pm f), the logistic loss of the paper.
    """

    def prepare(self, y: torch.Tensor, device: torch.device) -> torch.Tensor:
        if y.is_floating_point():
            if not torch.equal(y, y.round()):
                raise ValueError("CrossEntropy: labels must be integer class indices")
            y = y.long()
        if y.numel() and int(y.min()) < 0:
            raise ValueError(
                "CrossEntropy: labels must be class indices >= 0; for +-1 labels of a binary "
                "TwoLayerNet pass (y + 1) // 2, or use BinaryMargin on net.margin"
            )
        return y.to(device=device, dtype=torch.long)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, reduction="none")

    def loss_grad(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """d loss_i / d logits_i, (B, C): softmax - onehot."""
        return softmax_rows(logits) - F.one_hot(y, logits.shape[1]).to(logits.dtype)

    def correct(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        true = logits.gather(1, y[:, None])
        others = logits.scatter(1, y[:, None], float("-inf"))
        return true[:, 0] > others.max(1).values

    def __repr__(self) -> str:
        return "CrossEntropy()"


class BinaryMargin:
    """A model returning a margin f of shape (B,) or (B, 1); y in {-1, +1}.

    loss = softplus(-y f) (the logistic loss, computed stably); correct = y f > 0, so a
    point exactly on the decision boundary (f = 0) counts as NOT correct.
    """

    @staticmethod
    def _margin(logits: torch.Tensor) -> torch.Tensor:
        if logits.ndim == 2 and logits.shape[1] == 1:
            return logits[:, 0]
        if logits.ndim != 1:
            raise ValueError(
                f"BinaryMargin: model output must be (B,) or (B, 1), got {tuple(logits.shape)}"
            )
        return logits

    def prepare(self, y: torch.Tensor, device: torch.device) -> torch.Tensor:
        if not bool(((y == 1) | (y == -1)).all()):
            raise ValueError("BinaryMargin: labels must be -1 or +1")
        return y.to(device=device)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.softplus(-y.to(logits.dtype) * self._margin(logits))

    def loss_grad(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """d loss_i / d f_i = -y sigmoid(-y f), shaped like ``logits``."""
        y = y.to(logits.dtype)
        return (-y * torch.sigmoid(-y * self._margin(logits))).reshape(logits.shape)

    def correct(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y.to(logits.dtype) * self._margin(logits) > 0

    def __repr__(self) -> str:
        return "BinaryMargin()"


class GroupCrossEntropy:
    """A k-class model read out as a coarse classifier by class group (the argmax form).

    ``groups``: (k,) long, the group id of each class (e.g. 0 for clusters in J-, 1 for J+);
    y is a group id. With p = softmax(logits),

        loss = -log sum_{j : groups[j] = y} p_j
             = logsumexp(logits) - logsumexp(logits[groups == y])

    (computed with logsumexp, never by summing probabilities). correct = groups[argmax] == y,
    strictly: the largest logit of group y must exceed every logit of the other groups, so
    a tie across groups counts as NOT correct (a tie within group y does not matter).
    """

    def __init__(self, groups: torch.Tensor | list[int]):
        groups = torch.as_tensor(groups)
        if groups.ndim != 1 or groups.is_floating_point():
            raise ValueError("GroupCrossEntropy: groups must be a 1-D integer tensor (k,)")
        self.groups = groups.long()

    def _groups_on(self, device: torch.device) -> torch.Tensor:
        if self.groups.device != device:
            self.groups = self.groups.to(device)
        return self.groups

    def prepare(self, y: torch.Tensor, device: torch.device) -> torch.Tensor:
        y = y.to(device=device).long()
        known = torch.isin(y, self._groups_on(device))
        if not bool(known.all()):
            raise ValueError("GroupCrossEntropy: every label must be one of the group ids")
        return y

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        groups = self._groups_on(logits.device)
        if logits.shape[-1] != groups.numel():
            raise ValueError(
                f"GroupCrossEntropy: {groups.numel()} group ids for {logits.shape[-1]} classes"
            )
        in_group = groups[None, :] == y[:, None]
        group_logits = logits.masked_fill(~in_group, float("-inf"))
        return torch.logsumexp(logits, 1) - torch.logsumexp(group_logits, 1)

    def loss_grad(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """d loss_i / d logits_i, (B, C): softmax over all classes minus the softmax
        renormalised over the classes of group y."""
        in_group = self._groups_on(logits.device)[None, :] == y[:, None]
        own = softmax_rows(logits.masked_fill(~in_group, float("-inf")))
        return softmax_rows(logits) - own

    def correct(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        in_group = self._groups_on(logits.device)[None, :] == y[:, None]
        own = logits.masked_fill(~in_group, float("-inf")).max(1).values
        other = logits.masked_fill(in_group, float("-inf")).max(1).values
        return own > other

    def __repr__(self) -> str:
        return f"GroupCrossEntropy(groups={self.groups.tolist()})"
