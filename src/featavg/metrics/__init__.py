"""Metrics: feature alignment (cosines to cluster centers, :mod:`.alignment`), statistics
of robustness curves (radius50, crossings, median radii, certified accuracy, log-log
slopes, :mod:`.curves`) and 95% intervals over seeds (:mod:`.intervals`)."""

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
