"""Gradient descent on ensembles of two-layer ReLU nets, with exact hand-derived gradients.

For f = A relu(P), P = W x + b (shapes in :mod:`featavg.models.two_layer`) and a loss L
averaged over the batch:

    dL/dP = (dL/dz A) * 1[P > 0],   dL/dW = dL/dP^T x,   dL/db = sum_i dL/dP_i.

Binary nets use the logistic loss softplus(-y f) (never log(1 + exp)), fine-grained nets
softmax cross-entropy on the cluster labels.

Two exact formulations of the same iterates:

* ``direct``: the update above, O(S M n d) per step;
* ``gram``: GD only ever adds rows of x to W, so W_t = W_0 + C_t x with C_t of shape (M, n).
  Then P_t = x W_0^T + G C_t^T + b with G = x x^T, and the update is C <- C - lr dL/dP^T:
  O(S M n^2) per step after one O(n^2 d) Gram matrix shared by every member that sees the
  same data. It wins when n < d (paper config: n = 1000, d = 3072). ``auto`` picks by a
  flop count (see :func:`choose_formulation`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from featavg.models.two_layer import TwoLayerEnsemble
from featavg.seeding import generator

# keep gram matrices below this many bytes in "auto" mode
GRAM_MEMORY_LIMIT = 2 * 1024**3


class TrainConfig(BaseModel):
    """Full-batch GD (``batch_size=None``, the paper) or mini-batch SGD."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(100, ge=0, description="number of (mini-)batch gradient steps")
    lr: float = Field(1e-3, gt=0.0, description="learning rate")
    batch_size: int | None = Field(None, ge=1, description="None: full-batch GD; else SGD")
    formulation: Literal["auto", "direct", "gram"] = Field(
        "auto", description="'direct' O(Mnd)/step, 'gram' O(Mn^2)/step, 'auto' by flop count"
    )
    record_every: int = Field(10, ge=1, description="record metrics every this many steps")


class TrainingDiverged(RuntimeError):
    """Raised when the loss or the weights become non-finite."""


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
    # softmax over the classes in the unit-major layout (S, C, B) that _backprop produces:
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


def _backprop(kind: str, readout: torch.Tensor, pt: torch.Tensor, targets: torch.Tensor):
    """Loss (S,), logits z (S, B, C) and dL/dP (S, M, B) from preactivations P^T (S, M, B).

    Everything is kept unit-major (S, M, B) so that the Gram update is one GEMM per step.
    """
    z = (readout @ torch.relu(pt)).transpose(1, 2)
    loss, dz = logit_gradient(kind, z, targets)
    dpt = (readout.T @ dz.transpose(1, 2)) * (pt > 0)
    return loss, z, dpt


def loss_and_gradients(model: TwoLayerEnsemble, x: torch.Tensor, targets: torch.Tensor):
    """Loss (S,) and exact gradients dL/dW (S, M, d), dL/db (S, M) (direct formulation)."""
    engine = _Direct([model], x)
    loss, _, dpt = _backprop(model.kind, model.readout, engine.preactivations(None)[0], targets)
    return loss, engine.weight_gradient(None, dpt), dpt.sum(-1)


def choose_formulation(
    s: int, m: int, n: int, d: int, steps: int, batch: int, shared_data: bool, bytes_per: int
) -> str:
    """'gram' when its flop count (Gram matrices + per-step n x n products) is below the
    direct one (two n x d products per step) and its matrices fit in memory."""
    n_sets = 1 if shared_data else s
    direct = steps * 2 * s * m * batch * d
    gram = n_sets * n * n * d + 2 * s * m * n * d + steps * s * m * batch * n
    fits = n_sets * n * n * bytes_per <= GRAM_MEMORY_LIMIT
    return "gram" if gram < direct and fits else "direct"


def _rows(x: torch.Tensor, idx) -> torch.Tensor:
    return x if idx is None else x[..., idx, :]


class _Direct:
    """W and b of every model updated in place. Preactivations unit-major:
    P^T = W x^T + b, (S, M, B) per model."""

    def __init__(self, models: list[TwoLayerEnsemble], x: torch.Tensor):
        self.models, self.x = models, x

    def preactivations(self, idx) -> list[torch.Tensor]:
        if hasattr(self.x, "preactivations"):  # factored inputs from a perturb hook
            return [self.x.preactivations(idx)]
        xb = _rows(self.x, idx)
        out = []
        for model in self.models:
            w, b = model.weight, model.bias
            if xb.ndim == 2:
                s, m, d = w.shape
                out.append((w.reshape(s * m, d) @ xb.T).view(s, m, -1) + b[..., None])
            else:
                out.append(torch.baddbmm(b[..., None], w, xb.transpose(1, 2)))
        return out

    def weight_gradient(self, idx, dpt):
        if hasattr(self.x, "weight_gradient"):
            return self.x.weight_gradient(idx, dpt)
        xb = _rows(self.x, idx)
        if xb.ndim == 2:
            s, m, b = dpt.shape
            return (dpt.reshape(s * m, b) @ xb).view(s, m, -1)
        return torch.bmm(dpt, xb)

    def update(self, idx, dpts, lr):
        for model, dpt in zip(self.models, dpts, strict=True):
            model.weight.sub_(lr[:, None, None] * self.weight_gradient(idx, dpt))
            model.bias.sub_(lr[:, None] * dpt.sum(-1))

    def sync_weights(self):
        pass


class _Gram:
    """W = W0 + C x with C (S, M, n); since G = x x^T is symmetric, P^T = W0 x^T + C G + b.

    The units of all models (e.g. the binary and the fine-grained net of one data set) are
    stacked along M, so each step reads the Gram matrix once for all of them: the product
    is memory-bound, 20 rows cost what 10 do."""

    def __init__(self, models: list[TwoLayerEnsemble], x: torch.Tensor):
        self.models, self.x = models, x
        self.sizes = [model.weight.shape[1] for model in models]
        self.w0 = torch.cat([model.weight for model in models], dim=1)  # (S, sum M, d)
        s, m, d = self.w0.shape
        self.shared = x.ndim == 2
        if self.shared:  # (S*M, n) rows so that C G is one big GEMM for the whole ensemble
            self.gram = gram_matrices(x[None])[0]
            self.p0 = self.w0.reshape(s * m, d) @ x.T
        else:
            self.gram = gram_matrices(x)
            self.p0 = torch.bmm(self.w0, x.transpose(1, 2))
        self.c = torch.zeros_like(self.p0)

    def preactivations(self, idx) -> list[torch.Tensor]:
        s, m, _ = self.w0.shape
        g = self.gram if idx is None else self.gram[..., idx]
        p0 = self.p0 if idx is None else self.p0[..., idx]
        if self.shared:
            p = torch.addmm(p0, self.c, g).view(s, m, -1)
        else:
            p = torch.baddbmm(p0, self.c, g)
        parts = p.split(self.sizes, dim=1)
        return [q + model.bias[..., None] for q, model in zip(parts, self.models, strict=True)]

    def update(self, idx, dpts, lr):
        dpt = torch.cat(dpts, dim=1) if len(dpts) > 1 else dpts[0]
        step = lr[:, None, None] * dpt
        c = self.c.view(step.shape[0], step.shape[1], -1)
        if idx is None:
            c.sub_(step)
        else:
            c[..., idx] -= step
        for model, d in zip(self.models, dpts, strict=True):
            model.bias.sub_(lr[:, None] * d.sum(-1))

    def sync_weights(self):
        """Write W0 + C x into the models (for metrics and at the end)."""
        s, m, d = self.w0.shape
        w = (self.c @ self.x).view(s, m, d) if self.shared else torch.bmm(self.c, self.x)
        for model, part in zip(self.models, (self.w0 + w).split(self.sizes, dim=1), strict=True):
            model.weight.copy_(part)


def gram_matrices(x: torch.Tensor, block: int = 256) -> torch.Tensor:
    """G = x x^T for a stack x (S, n, d), computing only the blocks on and below the
    diagonal (about half the flops for large n) and mirroring the rest, so G is exactly
    symmetric."""
    s, n, _ = x.shape
    gram = torch.empty(s, n, n, dtype=x.dtype, device=x.device)
    for i in range(0, n, block):
        rows = x[:, i : i + block]
        # one product for this block row, from the first column up to the diagonal
        gram[:, i : i + block, : i + block] = torch.bmm(rows, x[:, : i + block].transpose(1, 2))
        gram[:, :i, i : i + block] = gram[:, i : i + block, :i].transpose(1, 2)
        diag = gram[:, i : i + block, i : i + block]  # mirror its lower triangle too
        diag.copy_(diag.tril() + diag.tril(-1).transpose(1, 2))
    return gram


def _batches(n: int, batch_size: int | None, steps: int, seed: int):
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


def train(
    model: TwoLayerEnsemble,
    x: torch.Tensor,
    targets: torch.Tensor,
    cfg: TrainConfig = TrainConfig(),
    *,
    lr: float | torch.Tensor | None = None,
    seed: int = 0,
    on_record: Callable[[int, TwoLayerEnsemble], dict[str, torch.Tensor]] | None = None,
    perturb: Callable[[int, TwoLayerEnsemble, torch.Tensor, torch.Tensor], torch.Tensor]
    | None = None,
    progress: bool = False,
) -> list[dict[str, object]]:
    """Train every member of ``model`` in place; return the records.

    x: (n, d) shared by all members or (S, n, d) one data set per member. targets: y in
    {-1, +1} for binary nets, class indices for multiclass nets, shape (n,) or (S, n).
    lr: overrides ``cfg.lr``; a tensor of shape (S,) gives each member its own rate.
    seed: the mini-batch order (unused for full-batch GD).
    on_record(step, model) -> extra per-member metrics, called at recorded steps with the
    model holding the weights of that step.
    perturb(step, model, x, targets) -> inputs (S, n, d) to take this step's gradient on,
    e.g. adversarial examples (:mod:`featavg.adversarial`), or an object with
    ``preactivations(idx)`` and ``weight_gradient(idx, dpt)`` standing for them
    (:class:`featavg.adversarial.RowSpaceInputs`); forces the direct formulation, and the
    recorded loss / accuracy are then those on the perturbed inputs.

    Each record is {"step": t, "loss": (S,), "train_acc": (S,), **extras}, at t = 0,
    record_every, 2 record_every, ..., steps. Raises :class:`TrainingDiverged` naming the
    step if any loss or weight becomes non-finite.
    """
    return train_many(
        [model],
        x,
        [targets],
        cfg,
        lr=lr,
        seed=seed,
        on_record=[on_record],
        perturb=perturb,
        progress=progress,
    )[0]


def train_many(
    models: list[TwoLayerEnsemble],
    x: torch.Tensor,
    targets: list[torch.Tensor],
    cfg: TrainConfig = TrainConfig(),
    *,
    lr: float | torch.Tensor | None = None,
    seed: int = 0,
    on_record: list | None = None,
    perturb=None,
    progress: bool = False,
) -> list[list[dict[str, object]]]:
    """:func:`train` for several ensembles (same S and inputs, any readouts and losses) in
    one loop: each is trained exactly as alone, but the Gram formulation reads the data once
    per step for all of them. ``targets`` and ``on_record`` hold one entry per model;
    ``perturb`` needs a single model. Returns one list of records per model."""
    if not models or len(targets) != len(models):
        raise ValueError("targets: need one target tensor per model")
    if perturb is not None and len(models) != 1:
        raise ValueError("perturb: adversarial inputs depend on the model; train one at a time")
    on_record = on_record or [None] * len(models)
    dtype, device = models[0].weight.dtype, models[0].weight.device
    s, _, d = models[0].weight.shape
    if any(m.weight.shape[0] != s or m.weight.shape[2] != d for m in models):
        raise ValueError("models: all need the same ensemble size S and input dimension d")
    x = x.to(device=device, dtype=dtype)
    targets = [
        t.to(device=device, dtype=dtype if m.kind == "binary" else None)
        for m, t in zip(models, targets, strict=True)
    ]
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
    engine = _Gram(models, x) if formulation == "gram" else _Direct(models, x)
    full_batch = batch == n
    records: list[list[dict[str, object]]] = [[] for _ in models]
    batches = _batches(n, cfg.batch_size, cfg.steps, seed)
    kinds = "+".join(m.kind for m in models)
    with torch.no_grad():
        for step in tqdm(range(cfg.steps + 1), disable=not progress, desc=f"train {kinds}"):
            idx = next(batches)
            if perturb is not None:
                engine.x = perturb(step, models[0], x, targets[0])
            record = step % cfg.record_every == 0 or step == cfg.steps
            if record and on_record.count(None) < len(on_record):
                engine.sync_weights()  # metrics need this step's weights in the models
            full_p = engine.preactivations(None) if record and not full_batch else None
            dpts = []
            for i, (model, p) in enumerate(zip(models, engine.preactivations(idx), strict=True)):
                tb = targets[i] if idx is None else targets[i][..., idx]
                loss, z, dpt = _backprop(model.kind, model.readout, p, tb)
                dpts.append(dpt)
                if not torch.isfinite(loss).all():
                    bad = torch.nonzero(~torch.isfinite(loss)).flatten().tolist()
                    raise TrainingDiverged(
                        f"training diverged at step {step}: non-finite loss for member(s) "
                        f"{bad} (lr={rates.tolist()}); lower train.lr"
                    )
                if record:
                    if full_p is not None:
                        loss, z, _ = _backprop(model.kind, model.readout, full_p[i], targets[i])
                        tb = targets[i]
                    rec = {"loss": loss, "train_acc": accuracy(model.kind, z, tb)}
                    if on_record[i] is not None:
                        rec.update(on_record[i](step, model))
                    records[i].append(
                        {"step": step, **{k: v.detach().cpu() for k, v in rec.items()}}
                    )
            if step == cfg.steps:
                break
            engine.update(idx, dpts, rates)
    engine.sync_weights()
    if not all(torch.isfinite(m.weight).all() for m in models):
        raise TrainingDiverged(f"training diverged by step {cfg.steps}: non-finite weights")
    return records
