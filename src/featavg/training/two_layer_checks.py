"""Numerical-fault checks of the two-layer trainer (:mod:`featavg.training.two_layer_gd`):
every step's loss and gradient (:func:`check_step`), progress over a run
(:func:`check_progress`) and the inputs (:func:`check_inputs`). Each raises a one-line
:class:`TrainingDiverged` (or :class:`~featavg.faults.NumericalFault`) naming the step, the
net, the members and the config field to change; the CLI exits with code 3 and nothing is
saved.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from featavg.data.synthetic import all_finite
from featavg.faults import NumericalFault
from featavg.training.interface import Record


class TrainingDiverged(NumericalFault):
    """Training broke numerically (:func:`check_step`, :func:`check_progress`): a loss or
    weight became non-finite, a loss rose far above its initial value, underflowed to 0,
    or every gradient of a member vanished. One line naming the step, the net, the members
    and the config field to change; the CLI exits with code 3 and nothing is saved."""


# A member's loss above this multiple of its loss at step 0 means GD is diverging. Full-batch
# GD with a learning rate below 2 / smoothness never increases the loss, so any rise is
# already a warning; the margin leaves room for SGD's batch-to-batch noise. Every synthetic
# experiment's default and reproduce config stays at 1.0x. Adversarial training, whose loss
# on fresh PGD inputs legitimately climbs (5.3x in synthetic-adversarial's reproduce
# config), is exempt (see train_many).
DIVERGENCE_FACTOR = 4.0


def flagged_members(mask: torch.Tensor) -> str:
    """'[0, 3]' or '[0, 1, 2, 3, 4, ... (12 in all)]': the flagged members, bounded."""
    bad = torch.nonzero(mask.cpu()).flatten().tolist()
    shown = ", ".join(str(i) for i in bad[:5])
    return f"[{shown}, ... ({len(bad)} in all)]" if len(bad) > 5 else f"[{shown}]"


def flagged_rates(rates: torch.Tensor, mask: torch.Tensor) -> str:
    """The learning rates of the flagged members, e.g. 'lr 1000' or 'lr 0.1, 1000'."""
    values = sorted({float(r) for r in rates[mask.to(rates.device)].tolist()})
    shown = ", ".join(f"{v:.3g}" for v in values[:3])
    return f"lr {shown}" + (", ..." if len(values) > 3 else "")


def check_step(
    step: int,
    kind: str,
    loss: torch.Tensor,
    loss0: torch.Tensor,
    dpt: torch.Tensor | None,
    rates: torch.Tensor,
) -> None:
    """Raise :class:`TrainingDiverged` if any member's loss (S,) at ``step`` is non-finite,
    above :data:`DIVERGENCE_FACTOR` times its step-0 loss ``loss0``, or exactly 0 (float
    underflow: softplus / log-softmax of margins beyond ~100 round to 0 and so does the
    gradient), or if its gradient dL/dP ``dpt`` (S, M, B) is 0 everywhere while the loss is
    not (every unit inactive on every point: GD can never move; an init that underflowed
    to 0 or dead ReLUs). ``dpt``: None to skip that test (mini-batch steps, where one batch
    may legitimately miss a unit's support). One device sync per call."""
    flags = [~torch.isfinite(loss), loss > DIVERGENCE_FACTOR * loss0, loss <= 0]
    if dpt is not None:
        flags.append(~(dpt != 0).flatten(1).any(1))
    if not torch.stack(flags).any():
        return
    net = "binary net" if kind == "binary" else "fine-grained net"
    at = f"at step {step}: the {net}'s"
    non_finite, rose, underflow = flags[:3]
    if non_finite.any():
        msg = (
            f"training diverged {at} loss is non-finite for member(s) {flagged_members(non_finite)}"
        )
        hint = "lower train.lr or net.init_std"
        mask = non_finite
    elif rose.any():
        i = int(torch.nonzero(rose)[0])
        msg = (
            f"training diverged {at} loss rose from {float(loss0[i]):.3g} to "
            f"{float(loss[i]):.3g} (over {DIVERGENCE_FACTOR:g}x) "
            f"for member(s) {flagged_members(rose)}"
        )
        hint, mask = "lower train.lr", rose
    elif underflow.any():
        msg = (
            f"training diverged {at} loss underflowed to exactly 0 for member(s) "
            f"{flagged_members(underflow)} (margins beyond float range), so its gradient vanished"
        )
        hint, mask = "lower train.lr or net.init_std", underflow
    else:
        mask = flags[3]
        msg = (
            f"training stalled {at} gradient is exactly 0 for member(s) {flagged_members(mask)} "
            "(every unit inactive on every point: an init that underflowed to 0, or dead ReLUs)"
        )
        hint = "raise net.init_std or lower train.lr"
    raise TrainingDiverged(f"{msg} ({flagged_rates(rates, mask)}); {hint}")


def check_progress(kind: str, records: list[Record], steps: int, rates: torch.Tensor) -> None:
    """Raise :class:`TrainingDiverged` if, after ``steps`` > 0 steps, some member's recorded
    full-batch loss is bitwise the loss at step 0: GD made no progress at all, because its
    updates fall below the floating-point resolution of the weights (an init far too large)
    or the learning rate is too small to change a float32 loss."""
    if steps == 0 or len(records) < 2:
        return
    first, last = records[0]["loss"], records[-1]["loss"]
    same = (first == last) & (first > 0)
    if same.any():
        net = "binary net" if kind == "binary" else "fine-grained net"
        raise TrainingDiverged(
            f"training made no progress: the {net}'s loss is bitwise unchanged after {steps} "
            f"steps for member(s) {flagged_members(same)} ({flagged_rates(rates.cpu(), same)}): "
            "the updates are below float resolution; lower net.init_std or raise train.lr"
        )


def check_inputs(x: torch.Tensor, targets: Sequence[torch.Tensor]) -> None:
    """Raise :class:`NumericalFault` if the training inputs or targets hold NaN or inf (a
    NaN in the data would otherwise surface as a 'diverged' loss with the wrong advice)."""
    for name, t in (("x", x), *((f"targets[{i}]", t) for i, t in enumerate(targets))):
        if not all_finite(t):
            count = int((~torch.isfinite(t)).sum())
            raise NumericalFault(
                f"data: the training {name} hold {count} NaN/inf value(s) of {t.numel()}; "
                "check the data (e.g. data.noise_std, data.norm_range) or its source"
            )
