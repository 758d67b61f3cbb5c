"""Checkpoint files: atomic, weights-only files, and the progress file of a training run.

:func:`save_checkpoint` and :func:`load_checkpoint` (from :mod:`featavg.torch_files`) write a
file atomically and read one without executing pickled code.

A training run's progress file (:func:`save_progress`, :func:`load_progress`) holds what a
resumed run needs (:func:`training_state`: weights and buffers, optimiser and scheduler
states, records, RNG state) together with the run's identity (:class:`RunIdentity`: its
config and a :func:`data_fingerprint`) and a SHA-256 checksum of all of it. Nothing of a
progress file is used unless it verifies: a file that does not load, fails its checksum,
or holds something no run of this config could have written (an epoch out of range, a
non-finite weight, a tensor of the wrong shape, an RNG state of the wrong size, ...) is
discarded with a one-line :class:`ProgressDiscarded` warning, and training starts over. A
whole, verified file of another run is refused with a one-line ConfigError naming the
difference (or, where the caller owns the path, discarded as well).

The checksum detects damage (a flipped bit, a truncated or spliced file), not forgery: it
is no signature, and whoever can write the file can write a consistent one.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from featavg.config import ConfigError
from featavg.torch_files import load_checkpoint, save_checkpoint
from featavg.training.progress_check import TrainingParts, check_training_state

__all__ = [
    "PROGRESS_FORMAT",
    "TRAINING_FORMAT",
    "ProgressDiscarded",
    "ProgressInvalid",
    "RunIdentity",
    "check_progress_path",
    "data_fingerprint",
    "discard_progress",
    "load_checkpoint",
    "load_progress",
    "model_signature",
    "read_progress",
    "restore_training",
    "save_checkpoint",
    "save_progress",
    "training_state",
]

# the container of a progress file: the payload's bytes and their checksum
PROGRESS_FORMAT = "featavg-progress/2"
# the layout of the resumable training state inside it (:func:`training_state`)
TRAINING_FORMAT = "featavg-image-sgd/2"

Foreign = Literal["refuse", "discard"]


class ProgressDiscarded(UserWarning):
    """A progress file did not verify and was deleted: training starts over."""


class ProgressInvalid(ConfigError):
    """Why a progress file cannot be used (one line naming the file); the caller discards
    it (:func:`discard_progress`) and trains from scratch."""


@dataclass(frozen=True)
class RunIdentity:
    """What a resumed run must share with the run that wrote the progress file: the
    optimiser config (JSON), the :func:`data_fingerprint` (data and seed) and the
    :func:`model_signature` (the models' architectures)."""

    config_json: str
    data: str
    models: str

    def saved(self) -> tuple[str, str, str]:
        """The identity as a training state stores it."""
        return (self.config_json, self.data, self.models)


def check_progress_path(path: Path) -> None:
    """ConfigError (one line) when a progress file could not be written at ``path``: a
    directory or another non-file is there, or the parent cannot be a directory. Called
    before the first epoch, so that no training is lost to it."""
    path = Path(path)
    if path.exists() and not path.is_file():
        what = "a directory" if path.is_dir() else "not a regular file"
        raise ConfigError(f"{path}: {what}, cannot hold a progress checkpoint; remove it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"{path.parent}: cannot hold progress checkpoints ({err.strerror or err})"
        ) from None


def save_progress(path: Path, state: dict[str, Any]) -> None:
    """Write a :func:`training_state` to ``path`` atomically, as a progress file: its bytes
    (``torch.save``) and their SHA-256 (:data:`PROGRESS_FORMAT`)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = bytearray(buf.getbuffer())
    save_checkpoint(
        path,
        {
            "format": PROGRESS_FORMAT,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "payload": torch.frombuffer(payload, dtype=torch.uint8),
        },
    )


def read_progress(path: Path) -> dict[str, Any]:
    """The training state in the progress file ``path`` once its checksum verifies (any
    identity). :class:`ProgressInvalid` (one line) when it does not load, is not a progress
    file, fails its checksum or does not hold a training state."""
    path = Path(path)
    try:
        blob = load_checkpoint(path, map_location="cpu")
    except ConfigError as err:
        raise ProgressInvalid(str(err)) from None
    if blob.get("format") != PROGRESS_FORMAT:
        raise ProgressInvalid(
            f"{path}: not a progress checkpoint (format {_short(blob.get('format'))}, "
            f"expected {PROGRESS_FORMAT!r})"
        )
    payload, digest = blob.get("payload"), blob.get("sha256")
    if not (
        torch.is_tensor(payload) and payload.dtype == torch.uint8 and payload.dim() == 1
    ) or not isinstance(digest, str):
        raise ProgressInvalid(f"{path}: malformed progress checkpoint (no payload or checksum)")
    data = payload.contiguous().numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise ProgressInvalid(f"{path}: checksum mismatch (a damaged file)")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # verified bytes that are no torch file: written by no featavg
        raise ProgressInvalid(f"{path}: unreadable payload ({type(err).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != TRAINING_FORMAT:
        raise ProgressInvalid(f"{path}: its payload is not a training state")
    return state


def load_progress(
    path: Path, identity: RunIdentity, *, foreign: Foreign = "refuse"
) -> dict[str, Any] | None:
    """The verified training state of the run ``identity`` in ``path``; None when there is
    no file, or when it did not verify (:func:`read_progress`) and was discarded (a one-line
    :class:`ProgressDiscarded` warning; the file is deleted). A verified file of another
    run is a ConfigError naming the difference (``foreign="refuse"``: the file is left as it
    is) or discarded like a damaged one (``foreign="discard"``: the caller owns the path).
    The state's contents are checked against the run by :func:`restore_training`."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = read_progress(path)
        saved = (state.get("config"), state.get("data"), state.get("model_signature"))
        if saved != identity.saved():
            diff = _identity_diff(saved, identity)
            if foreign == "refuse":
                raise ConfigError(
                    f"{path}: made by another run ({diff}); resume with the same config and "
                    "data, or start over without resuming"
                )
            raise ProgressInvalid(f"{path}: made by another run ({diff})")
    except ProgressInvalid as err:
        discard_progress(path, str(err))
        return None
    return state


def discard_progress(path: Path, problem: str) -> None:
    """Delete the progress file ``path`` with a one-line :class:`ProgressDiscarded` warning
    ``"<problem>; discarded, training starts over"``."""
    # warn_explicit without a source line: the notice stays one line on stderr
    warnings.warn_explicit(
        f"{problem}; discarded, training starts over", ProgressDiscarded, "featavg", 0
    )
    Path(path).unlink(missing_ok=True)


def training_state(
    *,
    epoch: int,
    parts: TrainingParts,
    records: list[list[dict[str, Any]]],
    identity: RunIdentity,
    device: torch.device,
) -> dict[str, Any]:
    """The resumable state of a training run after ``epoch`` (format
    :data:`TRAINING_FORMAT`): weights and buffers, optimiser and scheduler states, the
    records so far (tensors and numbers only), the global RNG state (CPU, and CUDA when
    ``device`` is), the config as JSON and the data fingerprint."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "format": TRAINING_FORMAT,
        "epoch": epoch,
        "models": [m.state_dict() for m in parts.models],
        "optimizers": [o.state_dict() for o in parts.optimizers],
        "schedulers": [None if s is None else s.state_dict() for s in parts.schedulers],
        "records": records,
        "rng": rng,
        "config": identity.config_json,
        "data": identity.data,
        "model_signature": identity.models,
    }


def restore_training(
    path: Path, state: dict[str, Any], parts: TrainingParts, device: torch.device
) -> tuple[int, list[list[dict[str, Any]]]]:
    """Load a verified state (:func:`load_progress`) into ``parts`` and the global RNG;
    return (its epoch, its records per model). Everything is checked before anything is
    loaded (:func:`~featavg.training.progress_check.check_training_state`): a state no run
    of this config could have written raises :class:`ProgressInvalid` and changes nothing."""
    problem = check_training_state(state, parts, device)
    if problem is not None:
        raise ProgressInvalid(f"{path}: {problem}")
    for i, model in enumerate(parts.models):
        model.load_state_dict(state["models"][i])
        parts.optimizers[i].load_state_dict(state["optimizers"][i])
        scheduler = parts.schedulers[i]
        if scheduler is not None:
            scheduler.load_state_dict(state["schedulers"][i])
    torch.set_rng_state(state["rng"]["torch"])
    cuda_rng = state["rng"].get("cuda")
    if device.type == "cuda" and cuda_rng is not None:
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


def model_signature(models: Sequence[nn.Module]) -> str:
    """The models' architectures in a few characters: per model, the number of tensors
    of its state dict and 12 hex digits of a hash of their names, shapes and dtypes."""
    parts = []
    for model in models:
        state = model.state_dict()
        layout = "\n".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in state.items())
        parts.append(f"{len(state)} tensors #{hashlib.sha256(layout.encode()).hexdigest()[:12]}")
    return "; ".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _identity_diff(saved: tuple[Any, Any, Any], identity: RunIdentity) -> str:
    """'lr: 0.01 in the checkpoint, 0.1 now; ...' for the config fields that differ, or
    what differs of the data or the models."""
    config, data, models = saved
    if config != identity.config_json:
        return "another config: " + _config_diff(config, identity.config_json)
    if data != identity.data:
        return f"other data or seed: {_short(data)}; this run: {identity.data}"
    return f"other models: {_short(models)}; this run: {identity.models}"


def _config_diff(saved_json: Any, config_json: str) -> str:
    """'lr: 0.01 in the checkpoint, 0.1 now; ...' for the fields that differ."""
    try:
        saved = json.loads(saved_json)
    except (TypeError, ValueError, RecursionError):
        saved = None
    now = json.loads(config_json)
    if not isinstance(saved, dict):
        return f"a config of another shape ({_short(saved_json)})"
    keys = sorted(set(saved) | set(now))
    diffs = [
        f"{k}: {_short(saved.get(k))} in the checkpoint, {now.get(k)!r} now"
        for k in keys
        if saved.get(k) != now.get(k)
    ]
    return "; ".join(diffs) or "same fields, different encoding"
