"""Attacks: PGD on any model (all radii batched) and exact subspace PGD for two-layer nets."""

from featavg.attacks.objectives import (
    BinaryMargin,
    CrossEntropy,
    GroupCrossEntropy,
    check_model_output,
)
from featavg.attacks.pgd import PGDResult, flip_radius_from_grid, pgd, radius50
from featavg.attacks.subspace import row_space_basis, subspace_pgd

__all__ = [
    "BinaryMargin",
    "CrossEntropy",
    "GroupCrossEntropy",
    "PGDResult",
    "check_model_output",
    "flip_radius_from_grid",
    "pgd",
    "radius50",
    "row_space_basis",
    "subspace_pgd",
]
