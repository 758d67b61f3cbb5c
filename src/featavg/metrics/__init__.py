"""Metrics: feature alignment (cosines to cluster centers) and summary statistics."""

from featavg.metrics.alignment import (
    binary_alignment,
    cosine_matrix,
    multiclass_alignment,
    theory_cos_same_class,
)
from featavg.metrics.intervals import mean_ci95

__all__ = [
    "binary_alignment",
    "cosine_matrix",
    "multiclass_alignment",
    "theory_cos_same_class",
    "mean_ci95",
]
