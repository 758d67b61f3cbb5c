"""Metrics: feature alignment (cosines to cluster centers, :mod:`.alignment`), statistics
of robustness curves (radius50, crossings, median radii, certified accuracy, log-log
slopes, :mod:`.curves`) and 95% intervals over seeds (:mod:`.intervals`).

The names below load on first use: :mod:`.intervals` is plain Python and the report and
the CLI import it before any torch code runs (the thread policy must be applied before
torch starts its OpenMP runtime), so importing this package must not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from featavg.metrics.alignment import (
        binary_alignment,
        cosine_matrix,
        multiclass_alignment,
        theory_cos_same_class,
    )
    from featavg.metrics.curves import (
        certified_accuracy,
        crossing_radius,
        loglog_slope,
        median_radius,
        radius50_grid,
    )
    from featavg.metrics.intervals import mean_ci95

_HOME = {
    "binary_alignment": "alignment",
    "cosine_matrix": "alignment",
    "multiclass_alignment": "alignment",
    "theory_cos_same_class": "alignment",
    "certified_accuracy": "curves",
    "crossing_radius": "curves",
    "loglog_slope": "curves",
    "median_radius": "curves",
    "radius50_grid": "curves",
    "mean_ci95": "intervals",
}

__all__ = [
    "binary_alignment",
    "certified_accuracy",
    "cosine_matrix",
    "crossing_radius",
    "loglog_slope",
    "mean_ci95",
    "median_radius",
    "multiclass_alignment",
    "radius50_grid",
    "theory_cos_same_class",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'featavg.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(f"featavg.metrics.{_HOME[name]}"), name)
