"""Gradient descent on ensembles of two-layer ReLU nets, with exact hand-derived gradients.

For f = A relu(P), P = W x + b (shapes in :mod:`featavg.models.two_layer`) and a loss L
averaged over the batch:

    dL/dP = (dL/dz A) * 1[P > 0],   dL/dW = dL/dP^T x,   dL/db = sum_i dL/dP_i.

Binary nets use the logistic loss softplus(-y f) (never log(1 + exp)), fine-grained nets
softmax cross-entropy on the cluster labels. The iterates are computed by one of the two
exact formulations of :mod:`featavg.training.two_layer_engines` (``direct`` or ``gram``;
``auto`` picks by a flop count). :class:`TwoLayerGD` is this trainer behind the
:class:`~featavg.training.interface.Trainer` protocol.

Every step is checked for numerical faults (:mod:`featavg.training.two_layer_checks`, one
device sync per step): a run that diverges, underflows or stalls stops with a one-line
``TrainingDiverged`` instead of producing numbers (see :mod:`featavg.faults`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from featavg.models.two_layer import TwoLayerEnsemble
from featavg.progress import bar as progress_bar
from featavg.seeding import generator
from featavg.training.interface import FactoredInputs, Record
from featavg.training.two_layer_checks import (
    TrainingDiverged,
    check_inputs,
    check_progress,
    check_step,
    flagged_members,
    flagged_rates,
)
from featavg.training.two_layer_engines import DirectEngine, GramEngine, choose_formulation

# on_record(step, model) -> extra per-member metrics at a recorded step
TwoLayerRecordHook = Callable[[int, TwoLayerEnsemble], dict[str, torch.Tensor]]
# perturb(step, model, x, targets) -> the inputs of this step's gradient
Perturb = Callable[
    [int, TwoLayerEnsemble, torch.Tensor, torch.Tensor], torch.Tensor | FactoredInputs
]


class TrainConfig(BaseModel):
    """Full-batch GD (``batch_size=None``, the paper) or mini-batch SGD."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    steps: int = Field(100, ge=0, description="number of (mini-)batch gradient steps")
    lr: float = Field(1e-3, gt=0.0, description="learning rate")
    batch_size: int | None = Field(None, ge=1, description="None: full-batch GD; else SGD")
    formulation: Literal["auto", "direct", "gram"] = Field(
        "auto", description="'direct' O(Mnd)/step, 'gram' O(Mn^2)/step, 'auto' by flop count"
    )
    record_every: int = Field(10, ge=1, description="record metrics every this many steps")


def logit_gradient(
    kind: str, z: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss per member (S,) and its gradient w.r.t. the logits z (S, B, C).

    Binary: targets y in {-1, +1}, loss softplus(-y f), f = z[..., 0].
    Multiclass: targets = class indices, loss = cross-entropy.
    """
    batch = z.shape[1]
    if kind == "binary":
        margin = targets * z[..., 0]
        loss = F.softplus(-margin).mean(1)
        dz = (-targets * torch.sigmoid(-margin) / batch)[..., None]
        return loss, dz
    # softmax over the classes in the unit-major layout (S, C, B) that backprop produces:
    # a reduction over a short last axis is ~20x slower on CPU
    logp = torch.log_softmax(z.transpose(1, 2), dim=1).transpose(1, 2)
    labels = targets.expand(z.shape[:2])[..., None]
    loss = -logp.gather(-1, labels)[..., 0].mean(1)
    dz = (logp.exp() - F.one_hot(labels[..., 0], z.shape[-1]).to(z.dtype)) / batch
    return loss, dz


def accuracy(kind: str, z: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(S,) fraction correct: sign(f) = y (binary) or argmax = label (multiclass)."""
    if kind == "binary":
        return (targets * z[..., 0] > 0).to(z.dtype).mean(1)
    return (z.argmax(-1) == targets).to(z.dtype).mean(1)


def backprop(
    kind: str, readout: torch.Tensor, pt: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss (S,), logits z (S, B, C) and dL/dP (S, M, B) from preactivations P^T (S, M, B).

    Everything is kept unit-major (S, M, B) so that the Gram update is one GEMM per step.
    """
    z = (readout @ torch.relu(pt)).transpose(1, 2)
    loss, dz = logit_gradient(kind, z, targets)
    dpt = (readout.T @ dz.transpose(1, 2)) * (pt > 0)
    return loss, z, dpt


def _batches(
    n: int, batch_size: int | None, steps: int, seed: int
) -> Iterator[torch.Tensor | None]:
    """Index tensor per step (None = full batch); SGD reshuffles every epoch."""
    if batch_size is None or batch_size >= n:
        for _ in range(steps + 1):
            yield None
        return
    epoch = 0
    while True:
        perm = torch.randperm(n, generator=generator(seed, f"batches/{epoch}"))
        yield from perm.split(batch_size)
        epoch += 1


@dataclass(frozen=True)
class TrainOptions:
    """What a training does beside plain GD: ``perturb(step, model, x, targets)`` gives the
    inputs to take each step's gradient on (e.g. adversarial examples, see :func:`train`),
    ``progress`` shows a bar."""

    perturb: Perturb | None = None
    progress: bool = False


def train(
    model: TwoLayerEnsemble,
    x: torch.Tensor,
    targets: torch.Tensor,
    cfg: TrainConfig = TrainConfig(),
    *,
    lr: float | torch.Tensor | None = None,
    seed: int = 0,
    on_record: TwoLayerRecordHook | None = None,
    options: TrainOptions = TrainOptions(),
) -> list[Record]:
    """Train every member of ``model`` in place; return the records.

    x: (n, d) shared by all members or (S, n, d) one data set per member. targets: y in
    {-1, +1} for binary nets, class indices for multiclass nets, shape (n,) or (S, n).
    lr: overrides ``cfg.lr``; a tensor of shape (S,) gives each member its own rate.
    seed: the mini-batch order (unused for full-batch GD).
    on_record(step, model) -> extra per-member metrics, called at recorded steps with the
    model holding the weights of that step.
    options.perturb(step, model, x, targets) -> inputs (S, n, d) to take this step's gradient on,
    e.g. adversarial examples (:mod:`featavg.training.adversarial`), or
    :class:`~featavg.training.interface.FactoredInputs` standing for them
    (:class:`featavg.training.adversarial.RowSpaceInputs`); forces the direct formulation,
    and the recorded loss / accuracy are then those on the perturbed inputs.

    Each record is {"step": t, "loss": (S,), "train_acc": (S,), **extras}, at t = 0,
    record_every, 2 record_every, ..., steps. Raises :class:`TrainingDiverged` naming the
    step and the members if training breaks numerically (:func:`check_step`: a non-finite,
    exploding or underflowed loss, a vanished gradient; :func:`check_progress`: no progress
    at all; non-finite weights at the end) and :class:`~featavg.faults.NumericalFault` if
    ``x`` or the targets hold NaN/inf.
    """
    return train_many(
        [model],
        x,
        [targets],
        cfg,
        lr=lr,
        seed=seed,
        on_record=[on_record],
        options=options,
    )[0]


def train_many(
    models: Sequence[TwoLayerEnsemble],
    x: torch.Tensor,
    targets: Sequence[torch.Tensor],
    cfg: TrainConfig = TrainConfig(),
    *,
    lr: float | torch.Tensor | None = None,
    seed: int = 0,
    on_record: Sequence[TwoLayerRecordHook | None] | None = None,
    options: TrainOptions = TrainOptions(),
) -> list[list[Record]]:
    """:func:`train` for several ensembles (same S and inputs, any readouts and losses) in
    one loop: each is trained exactly as alone, but the Gram formulation reads the data once
    per step for all of them. ``targets`` and ``on_record`` hold one entry per model;
    ``options.perturb`` needs a single model. Returns one list of records per model."""
    perturb, progress = options.perturb, options.progress
    models = list(models)
    if not models or len(targets) != len(models):
        raise ValueError("targets: need one target tensor per model")
    if perturb is not None and len(models) != 1:
        raise ValueError("perturb: adversarial inputs depend on the model; train one at a time")
    hooks = list(on_record) if on_record else [None] * len(models)
    dtype, device = models[0].weight.dtype, models[0].weight.device
    s, _, d = models[0].weight.shape
    if any(m.weight.shape[0] != s or m.weight.shape[2] != d for m in models):
        raise ValueError("models: all need the same ensemble size S and input dimension d")
    x = x.to(device=device, dtype=dtype)
    targets = [
        t.to(device=device, dtype=dtype if m.kind == "binary" else None)
        for m, t in zip(models, targets, strict=True)
    ]
    check_inputs(x, targets)
    n = x.shape[-2]
    if x.shape[-1] != d or (x.ndim == 3 and x.shape[0] != s):
        raise ValueError(f"x: expected (n, {d}) or ({s}, n, {d}), got {tuple(x.shape)}")
    rates = torch.as_tensor(cfg.lr if lr is None else lr, dtype=dtype, device=device)
    rates = rates.expand(s).clone()
    batch = n if cfg.batch_size is None else min(cfg.batch_size, n)
    formulation = "direct" if perturb is not None else cfg.formulation
    if formulation == "auto":
        units = sum(m.weight.shape[1] for m in models)
        formulation = choose_formulation(
            s, units, n, d, cfg.steps, batch, x.ndim == 2, x.element_size()
        )
    engine = GramEngine(models, x) if formulation == "gram" else DirectEngine(models, x)
    full_batch = batch == n
    records: list[list[Record]] = [[] for _ in models]
    batches = _batches(n, cfg.batch_size, cfg.steps, seed)
    kinds = "+".join(m.kind for m in models)
    # the step-0 loss of every member, for the divergence test. Adversarial training
    # (perturb) changes the inputs with the weights at every step: the loss on them may
    # rise and one step's gradient may vanish without GD being stuck, so there only the
    # non-finite and underflow tests apply (an infinite reference never flags a rise).
    losses0 = [torch.full((s,), torch.inf, dtype=dtype, device=device) for _ in models]
    checks_grad = full_batch and perturb is None
    with torch.no_grad():
        for step in progress_bar(range(cfg.steps + 1), desc=f"train {kinds}", enabled=progress):
            idx = next(batches)
            if perturb is not None:
                engine.x = perturb(step, models[0], x, targets[0])
            record = step % cfg.record_every == 0 or step == cfg.steps
            if record and hooks.count(None) < len(hooks):
                engine.sync_weights()  # metrics need this step's weights in the models
            full_p = engine.preactivations(None) if record and not full_batch else None
            dpts = []
            for i, (model, p) in enumerate(zip(models, engine.preactivations(idx), strict=True)):
                tb = targets[i] if idx is None else targets[i][..., idx]
                loss, z, dpt = backprop(model.kind, model.readout, p, tb)
                dpts.append(dpt)
                if step == 0 and perturb is None:
                    losses0[i] = loss.clone()
                check_step(step, model.kind, loss, losses0[i], dpt if checks_grad else None, rates)
                if record:
                    if full_p is not None:
                        loss, z, _ = backprop(model.kind, model.readout, full_p[i], targets[i])
                        tb = targets[i]
                    rec = {"loss": loss, "train_acc": accuracy(model.kind, z, tb)}
                    hook = hooks[i]
                    if hook is not None:
                        rec.update(hook(step, model))
                    records[i].append(
                        {"step": step, **{k: v.detach().cpu() for k, v in rec.items()}}
                    )
            if step == cfg.steps:
                break
            engine.update(idx, dpts, rates)
    engine.sync_weights()
    for model in models:
        bad = ~torch.isfinite(model.weight).flatten(1).all(1) | ~torch.isfinite(model.bias).all(1)
        if bad.any():
            raise TrainingDiverged(
                f"training diverged by step {cfg.steps}: non-finite weights for member(s) "
                f"{flagged_members(bad)} ({flagged_rates(rates, bad)}); "
                "lower train.lr or net.init_std"
            )
    for model, recs in zip(models, records, strict=True):
        check_progress(model.kind, recs, cfg.steps, rates)
    return records


class TwoLayerGD:
    """The two-layer GD of this module as a :class:`~featavg.training.interface.Trainer`.

    ``TwoLayerGD(cfg, lr=..., perturb=...).fit(models, x, targets, seed=...)`` is
    :func:`train_many` with the same arguments: the config, learning rate(s) and perturb
    hook belong to the trainer, the data and the record hooks to the call."""

    def __init__(
        self,
        cfg: TrainConfig = TrainConfig(),
        *,
        lr: float | torch.Tensor | None = None,
        perturb: Perturb | None = None,
    ):
        self.cfg, self.lr, self.perturb = cfg, lr, perturb

    def fit(
        self,
        models: Sequence[TwoLayerEnsemble],
        x: torch.Tensor,
        targets: Sequence[torch.Tensor],
        *,
        seed: int = 0,
        on_record: Sequence[TwoLayerRecordHook | None] | None = None,
        progress: bool = False,
    ) -> list[list[Record]]:
        """Train ``models`` in place (:func:`train_many`); one list of records per model."""
        return train_many(
            models,
            x,
            targets,
            self.cfg,
            lr=self.lr,
            seed=seed,
            on_record=on_record,
            options=TrainOptions(self.perturb, progress),
        )

    def __repr__(self) -> str:
        return f"TwoLayerGD({self.cfg!r}, lr={self.lr!r}, perturb={self.perturb!r})"
