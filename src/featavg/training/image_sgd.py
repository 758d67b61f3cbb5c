"""Mini-batch SGD for image classifiers (ResNets): one data pass, several models, resumable.

:class:`ImageSGD` implements :class:`~featavg.training.interface.Trainer` for ``nn.Module``
models that take float images in [0, 1] (N, C, H, W) and return logits (N, classes). The
images stay uint8 until a batch reaches the device; every model of a ``fit`` call (e.g. the
binary and the 10-class ResNet of the paper's Fig. 3) trains on exactly the same batches, one
optimiser each, so a shared run gives the same weights as separate runs with the same seed.

Randomness: the data order and the augmentation of epoch e come from their own CPU streams
(``train/order/{e}``, ``train/augment/{e}`` of the run seed), independent of the device and
of the global RNG, which the trainer never draws from. Together with the per-epoch
checkpoint (models, optimisers, schedulers, records, global RNG state) this makes a killed
and resumed run bit-identical to an uninterrupted one on the CPU.

Speed (the ``auto`` settings): channels_last everywhere (on the 2-core CPU it made a
ResNet-18 training step 7-17% faster for every stem); on CUDA also bf16 autocast and
optionally ``torch.compile``, and the uint8 training set lives on the GPU when it fits.
bf16 and compile stay off on the CPU: they gave no gain there.

Divergence: after every epoch, before its checkpoint, a NaN/inf or far-too-large mean loss
or a NaN/inf weight raises :class:`~featavg.faults.NumericalFault` naming the epoch and the
model (:func:`~featavg.training.divergence.check_diverged`; no extra host sync per batch).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, OneCycleLR

from featavg.progress import bar as progress_bar
from featavg.seeding import generator
from featavg.training.augment import crop_flip, draw_crop_flip
from featavg.training.checkpoint import (
    Foreign,
    ProgressInvalid,
    RunIdentity,
    TrainingParts,
    check_progress_path,
    data_fingerprint,
    discard_progress,
    load_progress,
    model_signature,
    restore_training,
    save_progress,
    training_state,
)
from featavg.training.divergence import check_diverged
from featavg.training.image_eval import as_device, check_images, evaluate
from featavg.training.image_eval import predict_logits as predict_logits  # re-exported
from featavg.training.interface import Record, RecordHook
from featavg.training.sgd_config import SGDConfig

# the training set is kept on the GPU when it takes less than this share of free memory
RESIDENT_SHARE = 0.5
# record entries that measure the machine, not the training (differ between equal runs)
TIMING_KEYS = ("wall_s", "images_per_s")


@dataclass
class _Member:
    """One model of a fit call and what trains it."""

    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]  # the model, or its torch.compile
    optimizer: torch.optim.SGD
    scheduler: LRScheduler | None
    labels: torch.Tensor  # (N,) int64 on the device
    hook: RecordHook | None


class ImageSGD:
    """Mini-batch SGD of image classifiers, as a :class:`~featavg.training.interface.Trainer`.

    ``checkpoint``: a progress file rewritten atomically at the end of every epoch
    (:func:`~featavg.training.checkpoint.save_progress`); with ``resume=True`` an existing
    one is verified and loaded and training continues after its epoch. One that does not
    verify (damaged, or holding anything this run could not have written) is discarded with
    a one-line warning and training starts over; a whole one of another config, data or
    seed is a ConfigError, or discarded too with ``foreign="discard"`` (for a caller that
    owns the path). ``eval_data``: (x_test uint8 (N', C, H, W), [y_test of each model])
    adds ``test_acc`` to every epoch's records."""

    def __init__(
        self,
        config: SGDConfig,
        *,
        device: torch.device | str = "cpu",
        checkpoint: Path | None = None,
        resume: bool = False,
        eval_data: tuple[torch.Tensor, Sequence[torch.Tensor]] | None = None,
        foreign: Foreign = "refuse",
    ):
        self.config = config
        self.foreign: Foreign = foreign
        self.device = as_device(device)
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.resume = resume
        self.eval_data = eval_data
        cuda = self.device.type == "cuda"
        self.amp = config.amp == "bf16" or (config.amp == "auto" and cuda)
        self.channels_last = config.channels_last in ("auto", "on")
        self.compile = config.compile and cuda
        if config.compile and not cuda:
            warnings.warn("compile=True is ignored on the CPU (no gain there)", stacklevel=2)

    def fit(
        self,
        models: Sequence[nn.Module],
        x: torch.Tensor,
        targets: Sequence[torch.Tensor],
        *,
        seed: int = 0,
        on_record: Sequence[RecordHook | None] | None = None,
        progress: bool = False,
    ) -> list[list[Record]]:
        """Train ``models`` in place on uint8 images x (N, C, H, W) (CPU), models[i] on the
        labels targets[i] (N,) (cross-entropy); one list of records per model, one record
        per epoch: {"step": epoch (1-based), "loss": (1,) mean train loss, "train_acc": (1,)
        running train accuracy, "lr": (1,) learning rate at the epoch's end, "test_acc":
        (1,) with eval_data, "wall_s": training seconds of the epoch, "images_per_s":
        N / wall_s, **on_record[i](epoch, model)}.

        Models are moved to the device (and to channels_last while training) in place;
        model.train() is called every epoch (a model that keeps a frozen part in eval mode
        overrides train()); only parameters with requires_grad are optimised. Record hooks
        see the model in eval mode, and fit leaves every model in eval mode, in the default
        memory layout."""
        cfg, device = self.config, self.device
        n = _check_fit_inputs(models, x, targets)
        hooks = list(on_record) if on_record is not None else [None] * len(models)
        if len(hooks) != len(models):
            raise ValueError(f"on_record: {len(hooks)} hooks for {len(models)} models")
        steps = math.ceil(n / cfg.batch_size)
        members = [
            self._member(model, i, steps, targets[i], hooks[i]) for i, model in enumerate(models)
        ]
        identity = RunIdentity(
            cfg.model_dump_json(), data_fingerprint(x, targets, seed), model_signature(models)
        )
        done, records = 0, [[] for _ in models]  # type: tuple[int, list[list[Record]]]
        if self.checkpoint is not None:
            check_progress_path(self.checkpoint)
            if self.resume:
                done, records = self._resume(self.checkpoint, members, identity, steps)
        x_src = _place(x, device)
        for epoch in range(done + 1, cfg.epochs + 1):
            losses, correct, wall = self._epoch(epoch, members, x_src, seed, progress)
            for i, member in enumerate(members):
                records[i].append(
                    self._record(epoch, i, member, losses[i] / n, correct[i] / n, wall, n)
                )
            if self.checkpoint is not None:
                parts = self._parts(members, steps)
                state = training_state(
                    epoch=epoch, parts=parts, records=records, identity=identity, device=device
                )
                save_progress(self.checkpoint, state)
        for member in members:
            member.model.eval()
            if self.channels_last:
                # back to the default layout: a copy reloaded from the saved weights then
                # computes bit for bit what this model computes (the layouts round apart)
                member.model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        return records

    def _member(
        self, model: nn.Module, i: int, steps: int, labels: torch.Tensor, hook: RecordHook | None
    ) -> _Member:
        """models[i] on the device with a fresh optimiser and schedule over the run's
        epochs x ``steps`` optimiser steps."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        optimizer = _sgd(model, self.config, i)
        forward = torch.compile(model) if self.compile else model
        scheduler = _scheduler(optimizer, self.config, self.config.epochs * steps)
        return _Member(model, forward, optimizer, scheduler, labels.to(self.device).long(), hook)

    def _parts(self, members: list[_Member], steps: int) -> TrainingParts:
        return TrainingParts(
            models=[m.model for m in members],
            optimizers=[m.optimizer for m in members],
            schedulers=[m.scheduler for m in members],
            epochs=self.config.epochs,
            steps_per_epoch=steps,
            max_lr=self.config.lr,
            evaluated=self.eval_data is not None,
        )

    def _resume(
        self, path: Path, members: list[_Member], identity: RunIdentity, steps: int
    ) -> tuple[int, list[list[Record]]]:
        """(epochs done, records so far) from the progress file ``path`` loaded into
        ``members``; (0, no records) with the members untouched when there is none or it
        was discarded."""
        fresh: list[list[Record]] = [[] for _ in members]
        state = load_progress(path, identity, foreign=self.foreign)
        if state is None:
            return 0, fresh
        # restore_training checks everything before it loads anything; should loading
        # still fail halfway, these bring the members back to their fresh state
        initial = [{k: v.clone() for k, v in m.model.state_dict().items()} for m in members]
        try:
            return restore_training(path, state, self._parts(members, steps), self.device)
        except ProgressInvalid as err:
            problem = str(err)
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            problem = f"{path}: does not load into this run ({type(err).__name__})"
        for i, (member, weights) in enumerate(zip(members, initial, strict=True)):
            member.model.load_state_dict(weights)
            member.optimizer = _sgd(member.model, self.config, i)
            member.scheduler = _scheduler(member.optimizer, self.config, self.config.epochs * steps)
        discard_progress(path, problem)
        return 0, fresh

    def _epoch(
        self, epoch: int, members: list[_Member], x_src: torch.Tensor, seed: int, progress: bool
    ) -> tuple[list[float], list[float], float]:
        """One pass over the data, every model on every batch: per-model loss sums and
        correct counts, and the wall time."""
        cfg, device = self.config, self.device
        n = x_src.shape[0]
        order = torch.randperm(n, generator=generator(seed, f"train/order/{epoch}"))
        order_src, order_dev = order.to(x_src.device), order.to(device)
        if cfg.augment == "crop-flip":
            offsets, flips = draw_crop_flip(
                n, cfg.crop_padding, generator(seed, f"train/augment/{epoch}")
            )
            offsets, flips = offsets.to(device), flips.to(device)
        # accumulated on the device: no host sync per batch
        loss_sums = [torch.zeros((), dtype=torch.float64, device=device) for _ in members]
        correct = [torch.zeros((), dtype=torch.int64, device=device) for _ in members]
        classes = [2] * len(members)
        for member in members:
            member.model.train()
        _sync(device)
        start_time = time.perf_counter()
        steps = math.ceil(n / cfg.batch_size)
        desc = f"epoch {epoch}/{cfg.epochs}"
        pbar = progress_bar(total=steps, desc=desc, enabled=progress, unit="batch")
        for start in range(0, n, cfg.batch_size):
            stop = min(start + cfg.batch_size, n)
            xb = _fetch(x_src, order_src[start:stop], device)
            if cfg.augment == "crop-flip":
                xb = crop_flip(xb, offsets[start:stop], flips[start:stop], cfg.crop_padding)
            xb = xb.float().div_(255)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            for i, member in enumerate(members):
                yb = member.labels[order_dev[start:stop]]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp):
                    logits = member.forward(xb)
                loss = F.cross_entropy(logits.float(), yb)
                member.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                member.optimizer.step()
                if member.scheduler is not None:
                    member.scheduler.step()
                classes[i] = logits.shape[-1]  # a Python int: no sync
                with torch.no_grad():
                    loss_sums[i] += loss.detach() * (stop - start)
                    correct[i] += (logits.argmax(1) == yb).sum()
            pbar.update(1)
        pbar.close()
        _sync(device)
        wall = time.perf_counter() - start_time
        losses = [float(s) for s in loss_sums]
        check_diverged(epoch, [m.model for m in members], [s / n for s in losses], classes, cfg.lr)
        return losses, [float(c) for c in correct], wall

    def _record(
        self, epoch: int, i: int, member: _Member, loss: float, acc: float, wall: float, n: int
    ) -> Record:
        """The record of models[i] after ``epoch`` (see :meth:`fit`)."""
        record: Record = {
            "step": epoch,
            "loss": torch.tensor([loss]),
            "train_acc": torch.tensor([acc]),
            "lr": torch.tensor([float(member.optimizer.param_groups[0]["lr"])]),
        }
        if self.eval_data is not None:
            x_test, y_test = self.eval_data
            test_acc = evaluate(
                member.model,
                x_test,
                y_test[i],
                batch_size=self.config.eval_batch_size,
                device=self.device,
            )
            record["test_acc"] = torch.tensor([test_acc])
        record["wall_s"] = wall
        record["images_per_s"] = n / wall if wall > 0 else math.inf
        if member.hook is not None:
            member.model.eval()
            extras = member.hook(epoch, member.model)
            record.update(
                {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in extras.items()}
            )
        return record

    def __repr__(self) -> str:
        return f"ImageSGD({self.config!r}, device={str(self.device)!r})"


def _check_fit_inputs(
    models: Sequence[nn.Module], x: torch.Tensor, targets: Sequence[torch.Tensor]
) -> int:
    """The number of training images N; ValueError on mismatched shapes."""
    check_images(x, "x")
    n = x.shape[0]
    if not models or len(targets) != len(models):
        raise ValueError(f"fit: {len(models)} models but {len(targets)} target vectors")
    for i, t in enumerate(targets):
        if t.shape != (n,) or t.is_floating_point():
            raise ValueError(
                f"targets[{i}]: expected integer labels ({n},), got {t.dtype} {tuple(t.shape)}"
            )
    if n == 0:
        raise ValueError("fit: no training images")
    return n


def _sgd(model: nn.Module, cfg: SGDConfig, i: int) -> torch.optim.SGD:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"model {i} has no trainable parameters")
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov,
    )


def _scheduler(opt: torch.optim.SGD, cfg: SGDConfig, steps: int) -> LRScheduler | None:
    """The per-step schedule over all ``steps`` optimiser steps of the run."""
    if cfg.schedule == "cosine":
        return CosineAnnealingLR(opt, T_max=steps)
    if cfg.schedule == "onecycle":
        # momentum stays what the config says (torch would cycle it between 0.85 and 0.95)
        return OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, cycle_momentum=False)
    return None


def _place(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The training set where batches are cut from: on the GPU when it takes under
    RESIDENT_SHARE of the free memory (one copy, no per-batch transfers), else on the CPU."""
    if device.type != "cuda":
        return x.cpu()
    free, _ = torch.cuda.mem_get_info(device)
    return x.to(device) if x.numel() * x.element_size() < RESIDENT_SHARE * free else x.cpu()


def _fetch(x_src: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The uint8 batch x_src[idx] on ``device`` (pinned, asynchronous copy from the CPU)."""
    batch = x_src[idx]
    if batch.device == device:
        return batch
    return batch.pin_memory().to(device, non_blocking=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
