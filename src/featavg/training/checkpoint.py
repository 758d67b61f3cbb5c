"""Checkpoint files: atomic saves and loads that never execute pickled code.

:func:`save_checkpoint` writes a temporary file next to the target, flushes and fsyncs it and
renames it over the target with :func:`os.replace`, so a process killed at any moment leaves
either the previous checkpoint or the new one, never half a file. :func:`load_checkpoint`
is ``torch.load(weights_only=True)``: tensors, dicts, lists, strings and numbers load; a file
that would need pickle code execution (an arbitrary class, ``os.system``, ...) is refused
with a one-line :class:`~featavg.config.ConfigError`, as is a missing, truncated or corrupt
file.

:func:`training_state` and :func:`restore_training` pack and unpack what a resumed training
run needs (weights and buffers, optimiser and scheduler states, records, RNG state), tagged
with the run's config and a :func:`data_fingerprint` so that a checkpoint is never resumed
into another run.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from featavg.config import ConfigError

# the layout of a resumable training state (:func:`training_state`)
TRAINING_FORMAT = "featavg-image-sgd/1"

# what torch's weights-only unpickler says when the file references code (a class or a
# function) rather than plain data; anything else it refuses is a corrupt file
_CODE_PATTERNS = (
    re.compile(r"GLOBAL (\S+) was not an allowed global"),
    re.compile(r"unsupported GLOBAL (\S+) whose module"),
    re.compile(r"allowlisted"),
)


def save_checkpoint(path: Path, obj: dict[str, Any]) -> None:
    """Write ``obj`` to ``path`` with ``torch.save``, atomically.

    The bytes go to a temporary file in the same directory (same file system, so the final
    :func:`os.replace` is atomic), are flushed and fsynced, then renamed over ``path``. The
    file is created with mode 0o666 minus the umask, as a plain ``open()`` would make it
    (``tempfile.mkstemp`` would make it 0600). Missing parent directories are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # the rename itself lives in the directory entry: sync it so it survives a power cut
    # (not possible on every platform or file system; the file is safe either way)
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(
    path: Path, *, map_location: str | torch.device | None = None
) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``: a dict of tensors, lists, dicts, strings and
    numbers (a ``state_dict`` is one).

    Raises :class:`ConfigError` (one line naming ``path``) when the file is missing, is not a
    dict, is truncated or corrupt, or needs pickle code execution to load; such a file is
    refused without running any of its code."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        code = _referenced_code(str(err))
        if code is not None:
            raise ConfigError(
                f"{path}: needs pickle code execution to load (refused{code}); convert it "
                "once with a trusted `torch.load(..., weights_only=False)` and save its "
                "state_dict"
            ) from None
        raise ConfigError(f"{path}: not a readable checkpoint (corrupt file)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ConfigError(
            f"{path}: not a readable checkpoint (truncated or corrupt: {reason})"
        ) from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a dict (e.g. a state_dict), got {type(obj).__name__}")
    return obj


def _referenced_code(message: str) -> str | None:
    """``": it references NAME"`` (or ``""``) when torch refused the file for referencing
    code; None when it refused it as malformed."""
    for pattern in _CODE_PATTERNS:
        match = pattern.search(message)
        if match is not None:
            return f": it references {match.group(1)}" if match.groups() else ""
    return None


def training_state(
    *,
    epoch: int,
    models: Sequence[nn.Module],
    optimizers: Sequence[torch.optim.Optimizer],
    schedulers: Sequence[LRScheduler | None],
    records: list[list[dict[str, Any]]],
    seed: int,
    config_json: str,
    data: str,
    device: torch.device,
) -> dict[str, Any]:
    """The resumable state of a training run after ``epoch`` (format
    :data:`TRAINING_FORMAT`): weights and buffers, optimiser and scheduler states, the
    records so far (tensors and numbers only), the global RNG state (CPU, and CUDA when
    ``device`` is), the seed, the config as JSON and the data fingerprint."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "format": TRAINING_FORMAT,
        "epoch": epoch,
        "models": [m.state_dict() for m in models],
        "optimizers": [o.state_dict() for o in optimizers],
        "schedulers": [None if s is None else s.state_dict() for s in schedulers],
        "records": records,
        "rng": rng,
        "seed": seed,
        "config": config_json,
        "data": data,
    }


def restore_training(
    path: Path,
    *,
    models: Sequence[nn.Module],
    optimizers: Sequence[torch.optim.Optimizer],
    schedulers: Sequence[LRScheduler | None],
    config_json: str,
    data: str,
    device: torch.device,
) -> tuple[int, list[list[dict[str, Any]]]]:
    """Load a :func:`training_state` file into the models, optimisers, schedulers and the
    global RNG; return (its epoch, its records per model). ConfigError (one line) when it is
    not such a file or was written by a run with another config or other data."""
    state = load_checkpoint(path, map_location="cpu")
    if state.get("format") != TRAINING_FORMAT:
        raise ConfigError(
            f"{path}: not a training checkpoint (format {state.get('format')!r}, "
            f"expected {TRAINING_FORMAT!r})"
        )
    if state["config"] != config_json:
        raise ConfigError(
            f"{path}: made with another config ({_config_diff(state['config'], config_json)}); "
            "resume with the same config or use another checkpoint path"
        )
    if state["data"] != data:
        raise ConfigError(
            f"{path}: made for other data or seed ({state['data']}; this run: {data}); "
            "use another checkpoint path"
        )
    if len(state["models"]) != len(models):
        raise ConfigError(
            f"{path}: holds {len(state['models'])} models, this run has {len(models)}"
        )
    for i, model in enumerate(models):
        try:
            model.load_state_dict(state["models"][i])
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise ConfigError(f"{path}: model {i} does not match its weights ({first})") from None
        optimizers[i].load_state_dict(state["optimizers"][i])
        scheduler = schedulers[i]
        if scheduler is not None:
            scheduler.load_state_dict(state["schedulers"][i])
    torch.set_rng_state(state["rng"]["torch"])
    cuda_rng = state["rng"].get("cuda")
    if device.type == "cuda" and cuda_rng is not None:
        if len(cuda_rng) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_rng)
    return int(state["epoch"]), [list(r) for r in state["records"]]


def data_fingerprint(x: torch.Tensor, targets: Sequence[torch.Tensor], seed: int) -> str:
    """Shapes and order-sensitive checksums of the inputs x (N, ...) and the label vectors,
    and the seed: what a resumed run must share with the run that wrote the checkpoint."""

    def checksum(t: torch.Tensor) -> int:
        per_row = t.reshape(t.shape[0], -1).sum(1, dtype=torch.int64).cpu()
        weights = torch.arange(t.shape[0], dtype=torch.int64) % 65521 + 1
        return int((per_row * weights).sum())

    labels = ", ".join(f"{tuple(t.shape)} #{checksum(t.long())}" for t in targets)
    return f"x {tuple(x.shape)} #{checksum(x)}; targets {labels}; seed {seed}"


def _config_diff(saved_json: str, config_json: str) -> str:
    """'lr: 0.01 in the checkpoint, 0.1 now; ...' for the fields that differ."""
    saved, now = json.loads(saved_json), json.loads(config_json)
    keys = sorted(set(saved) | set(now))
    diffs = [
        f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now"
        for k in keys
        if saved.get(k) != now.get(k)
    ]
    return "; ".join(diffs) or "same fields, different encoding"
