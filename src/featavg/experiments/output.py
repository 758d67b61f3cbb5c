"""What an experiment's ``run`` returns, and how per-seed numbers become a summary."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from featavg.metrics.intervals import mean_ci95

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class ExperimentOutput:
    """numbers: JSON-able summary entries; tables: name -> CSV rows; figures: name ->
    matplotlib Figure. data: what the numbers were computed on (None: the experiment's
    declared data); stand_in: True when that is a stand-in for the paper's data set, so
    every summary, figure and report section says so."""

    numbers: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    data: str | None = None
    stand_in: bool = False


def aggregate(per_seed: Mapping[str, torch.Tensor | Sequence[float]]) -> dict[str, Any]:
    """Per-seed values -> {key: mean, key_ci95: [lo, hi] (when S > 1), per_seed: {key: [...]}}."""
    out: dict[str, Any] = {}
    raw: dict[str, list[float]] = {}
    for key, values in per_seed.items():
        vals = [float(v) for v in (values.tolist() if torch.is_tensor(values) else values)]
        raw[key] = vals
        mean, lo, hi = mean_ci95(vals)
        out[key] = mean
        if len(vals) > 1:
            out[f"{key}_ci95"] = [lo, hi]
    out["per_seed"] = raw
    return out


def band(points: Iterable[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lo, hi) arrays, one entry per point (a step, a radius), from the per-seed
    values at each point: the bands drawn around curves."""
    stats = np.array([mean_ci95(values) for values in points])
    return stats[:, 0], stats[:, 1], stats[:, 2]


def record_band(
    records: list[dict[str, Any]], key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`band` of a per-seed metric over training records."""
    return band([r[key].tolist() for r in records])
