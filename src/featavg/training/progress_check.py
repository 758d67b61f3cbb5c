"""What a training state read from a progress file must satisfy before any of it is loaded.

:func:`check_training_state` compares a state (:func:`~featavg.training.checkpoint.
training_state`) with the models, optimisers and schedulers of the run about to resume and
returns the first thing no run of this config could have written, or None. It checks
structure, not values it cannot know: the epoch lies in 1..epochs, every weight and buffer
has the model's own keys, shapes and dtypes and is finite, the optimiser and scheduler
states have the fresh ones' layout and settings (only the learning rate, the step count
and the momentum buffers may differ, within range), the records count the epochs, and the
RNG state has the generator's size. A state that passes loads without error and trains
like the run that wrote it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

# scheduler entries that change as it steps (the rest are settings, equal to a fresh one's)
_SCHEDULER_PROGRESS = ("last_epoch", "_step_count", "_last_lr", "_is_initial")
_SCHEDULER_FLAGS = ("_get_lr_called_within_step",)
# the numbers every epoch record holds (1-element tensors), and its timings (plain numbers,
# >= 0; images per second is inf for an epoch that took no measurable time)
_RECORD_NUMBERS = ("loss", "train_acc", "lr")
_RECORD_TIMINGS = ("wall_s", "images_per_s")
# learning rates may exceed the configured maximum by float rounding in the schedule
_LR_SLACK = 1e-9


@dataclass(frozen=True)
class TrainingParts:
    """The objects a progress file is restored into, one of each per model, and the
    settings that bound what a valid file can hold: ``epochs`` of ``steps_per_epoch``
    optimiser steps, the largest learning rate the schedule reaches (``max_lr``),
    ``test_acc`` in every record when ``evaluated``."""

    models: Sequence[nn.Module]
    optimizers: Sequence[torch.optim.Optimizer]
    schedulers: Sequence[LRScheduler | None]
    epochs: int
    steps_per_epoch: int
    max_lr: float
    evaluated: bool


def check_training_state(
    state: Mapping[str, Any], parts: TrainingParts, device: torch.device
) -> str | None:
    """The first problem of ``state`` for a run with ``parts`` (see the module docstring),
    as a short phrase, or None when it can be restored."""
    saved_epoch: Any = state.get("epoch")
    if not _is_int(saved_epoch) or not 1 <= saved_epoch <= parts.epochs:
        return f"epoch {_short(saved_epoch)} outside 1..{parts.epochs}"
    epoch: int = saved_epoch
    n = len(parts.models)
    for key in ("models", "optimizers", "schedulers", "records"):
        value = state.get(key)
        if not isinstance(value, list) or len(value) != n:
            return f"'{key}' is not a list of {n} entries"
    for i in range(n):
        problem = (
            _check_weights(state["models"][i], parts.models[i])
            or _check_optimizer(state["optimizers"][i], parts.optimizers[i], parts.max_lr)
            or _check_scheduler(state["schedulers"][i], parts.schedulers[i], epoch, parts)
            or _check_records(state["records"][i], epoch, parts.evaluated)
        )
        if problem is not None:
            return f"model {i}: {problem}"
    return _check_rng(state.get("rng"), device)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types, element by element in lists and dicts (a plain ``==``
    could compare a tensor planted in the file elementwise, or a bool with an int)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, bool | int | float | str | type(None)):
        return bool(a == b)
    return False


def _finite(t: torch.Tensor) -> bool:
    return not t.is_floating_point() or bool(torch.isfinite(t).all())


def _check_weights(saved: Any, model: torch.nn.Module) -> str | None:
    own = model.state_dict()
    if not isinstance(saved, dict) or set(saved) != set(own):
        return "its weights do not have the model's keys"
    for key, value in saved.items():
        mine = own[key]
        if not torch.is_tensor(value) or value.shape != mine.shape or value.dtype != mine.dtype:
            return f"weight {_short(key)} is not a {mine.dtype} tensor of shape {tuple(mine.shape)}"
        if not _finite(value):
            return f"weight {_short(key)} is not finite (NaN/inf)"
    return None


def _check_optimizer(saved: Any, optimizer: torch.optim.Optimizer, max_lr: float) -> str | None:
    own = optimizer.state_dict()
    if not isinstance(saved, dict) or set(saved) != {"state", "param_groups"}:
        return "its optimiser state is malformed"
    groups = saved["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(own["param_groups"]):
        return "its optimiser has another number of parameter groups"
    params: dict[int, torch.Tensor] = {}
    for group, mine, live in zip(groups, own["param_groups"], optimizer.param_groups, strict=True):
        if not isinstance(group, dict) or set(group) != set(mine):
            return "its optimiser settings are malformed"
        if not all(_same(group[k], mine[k]) for k in mine if k != "lr"):
            return "its optimiser settings differ from the config's"
        lr = group["lr"]
        number = isinstance(lr, float | int) and not isinstance(lr, bool)
        if not number or not 0 <= lr <= max_lr * (1 + _LR_SLACK):
            return f"learning rate {_short(lr)} outside 0..{max_lr:g}"
        params.update(zip(mine["params"], live["params"], strict=True))
    slots = saved["state"]
    if not isinstance(slots, dict) or not set(slots) <= set(params):
        return "its optimiser state names unknown parameters"
    for index, slot in slots.items():
        if not isinstance(slot, dict) or not set(slot) <= {"momentum_buffer"}:
            return "its optimiser state is malformed"
        buf = slot.get("momentum_buffer")
        if buf is None:
            continue
        p = params[index]
        if not torch.is_tensor(buf) or buf.shape != p.shape or buf.dtype != p.dtype:
            return "a momentum buffer does not match its parameter"
        if not _finite(buf):
            return "a momentum buffer is not finite (NaN/inf)"
    return None


def _check_scheduler(saved: Any, scheduler: Any, epoch: int, parts: TrainingParts) -> str | None:
    if scheduler is None:
        return None if saved is None else "it holds a schedule this config does not have"
    own = scheduler.state_dict()
    if not isinstance(saved, dict) or set(saved) != set(own):
        return "its schedule state is malformed"
    fixed = [k for k in own if k not in _SCHEDULER_PROGRESS and k not in _SCHEDULER_FLAGS]
    if not all(_same(saved[k], own[k]) for k in fixed):
        return "its schedule settings differ from the config's"
    steps = epoch * parts.steps_per_epoch
    if not (_same(saved["last_epoch"], steps) and _same(saved["_step_count"], steps + 1)):
        return f"its schedule is not at step {steps} (the end of epoch {epoch})"
    last = saved["_last_lr"]
    if not isinstance(last, list) or len(last) != len(own["_last_lr"]):
        return "its schedule state is malformed"
    if not all(type(v) in (float, int) and math.isfinite(v) for v in last):
        return "its schedule's learning rate is not finite"
    if not all(isinstance(saved[k], bool) for k in _SCHEDULER_FLAGS + ("_is_initial",)):
        return "its schedule state is malformed"
    return None


def _check_records(saved: Any, epoch: int, evaluated: bool) -> str | None:
    if not isinstance(saved, list) or len(saved) != epoch:
        return f"it does not hold one record per epoch 1..{epoch}"
    wanted = _RECORD_NUMBERS + (("test_acc",) if evaluated else ())
    for j, record in enumerate(saved):
        if not isinstance(record, dict) or not _same(record.get("step"), j + 1):
            return f"record {j} is not that of epoch {j + 1}"
        for key in wanted:
            value = record.get(key)
            if not (torch.is_tensor(value) and value.shape == (1,) and value.is_floating_point()):
                return f"record {j} has no number {key!r}"
            if not _finite(value):
                return f"record {j}: {key} is not finite"
        for key in _RECORD_TIMINGS:
            time: Any = record.get(key)
            if type(time) not in (float, int) or not time >= 0:
                return f"record {j} has no time {key!r}"
    return None


def _check_rng(saved: Any, device: torch.device) -> str | None:
    if not isinstance(saved, dict) or not _is_rng(saved.get("torch"), torch.get_rng_state()):
        return "its random-generator state is not a CPU generator's"
    cuda = saved.get("cuda")
    if device.type == "cuda" and cuda is not None:
        own = torch.cuda.get_rng_state_all()
        if not isinstance(cuda, Sequence) or len(cuda) != len(own):
            return "its CUDA random-generator states do not match this machine's GPUs"
        if not all(_is_rng(s, o) for s, o in zip(cuda, own, strict=True)):
            return "its CUDA random-generator state is not a CUDA generator's"
    return None


def _is_rng(value: Any, like: torch.Tensor) -> bool:
    return (
        torch.is_tensor(value)
        and value.dtype == torch.uint8
        and value.shape == like.shape
        and value.device.type == "cpu"
    )
