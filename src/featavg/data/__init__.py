"""Data: the synthetic multi-cluster distribution of the paper (Definition 3.1)."""

from featavg.data.synthetic import (
    SyntheticConfig,
    SyntheticDataset,
    make_centers,
    sample_synthetic,
    sample_synthetic_stacked,
    stack_datasets,
)

__all__ = [
    "SyntheticConfig",
    "SyntheticDataset",
    "make_centers",
    "sample_synthetic",
    "sample_synthetic_stacked",
    "stack_datasets",
]
