"""The files of a trained-model directory: ``model.pt`` (weights and what rebuilds the
model, readable with ``torch.load(weights_only=True)``; its format and reader are
:mod:`featavg.models.model_file`) and ``epochs.csv``, beside the ``summary.json`` and
``manifest.json`` every cached directory has."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featavg import runs
from featavg.models.model_file import MODEL_FILE, MODEL_FORMAT, model_file_digest
from featavg.runs.door import Made
from featavg.trained_models.jobs import (
    TrainJobConfig,
    num_classes,
    resolve_model_name,
    resolve_normalization,
)

if TYPE_CHECKING:
    import torch

    from featavg.data.groupings import Grouping
    from featavg.data.images import ImageDataset
    from featavg.models.image_classifier import ImageClassifier


def identity(cfg: TrainJobConfig, data: ImageDataset) -> dict[str, Any]:
    """A trained model's identity (its summary's ``config``, hashed into its directory
    name): the config without ``data_dir``, and the data's content fingerprint."""
    return {**cfg.identity(), "data_fingerprint": data.fingerprint()}


def epoch_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One CSV/summary row per epoch record (tensors of one member -> floats)."""
    rows = []
    for rec in records:
        row: dict[str, Any] = {"epoch": int(rec["step"])}
        for key in ("loss", "train_acc", "test_acc"):
            if key in rec:
                row[key] = round(float(rec[key].reshape(-1)[0]), 6)
        for key in ("wall_s", "images_per_s"):
            if key in rec:
                row[key] = round(float(rec[key]), 3)
        rows.append(row)
    return rows


def made_model(
    cfg: TrainJobConfig,
    data: ImageDataset,
    grouping: Grouping,
    model: ImageClassifier,
    records: list[dict[str, Any]],
    dev: torch.device,
    wall: float,
    together: int,
) -> Made[ImageClassifier]:
    """The summary of a trained model and the writer of model.pt and epochs.csv (the door
    stages them and adds summary.json and manifest.json last); its value: the model."""
    import torch

    rows = epoch_rows(records)
    norm = resolve_normalization(cfg)
    classes = num_classes(cfg)
    _, channels, size, _ = data.train.x.shape
    blob = {
        "format": MODEL_FORMAT,
        "model": resolve_model_name(cfg),
        "num_classes": classes,
        "in_channels": int(channels),
        "image_size": int(size),
        "normalization": {"name": norm.name, "mean": list(norm.mean), "std": list(norm.std)},
        "labels": cfg.labels,
        "grouping": grouping.describe(),
        "dataset": data.describe(),
        "config": cfg.model_dump_json(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    blob["sha256"] = model_file_digest(blob)
    provenance = runs.provenance(dev, wall, [cfg.seed])
    if together > 1:
        provenance["trained_together_with"] = together
    last = rows[-1] if rows else {}
    summary = {
        "experiment": "train",
        "config": identity(cfg, data),
        "data": data.describe(),
        "stand_in": data.stand_in,
        "grouping": grouping.describe(),
        "labels": cfg.labels,
        "model": resolve_model_name(cfg),
        "num_classes": classes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "normalization": blob["normalization"],
        "l2_factor": list(model.l2_factor),
        "final_test_acc": last.get("test_acc"),
        "final_train_acc": last.get("train_acc"),
        "images_per_s": round(sum(r.get("images_per_s", 0.0) for r in rows) / max(len(rows), 1), 1),
        "epochs": rows,
        "provenance": provenance,
    }
    buf = io.BytesIO()
    torch.save(blob, buf)

    def write(new: Path) -> None:
        runs.write_bytes(new / MODEL_FILE, buf.getvalue())
        runs.write_csv(new / "epochs.csv", rows)

    return Made(summary, write, model)
