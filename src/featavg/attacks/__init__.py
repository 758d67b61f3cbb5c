"""Attacks: PGD on any model (all radii batched), exact subspace PGD, exact minimal L2 radii
and the analytic averaged-direction attack for two-layer nets."""

from featavg.attacks.analytic import (
    averaged_direction,
    line_search_flip_radius,
    margin_flip_on_ray,
    module_flip_on_ray,
)
from featavg.attacks.ensemble_subspace import ensemble_subspace_pgd
from featavg.attacks.exact import (
    ExactRadiusSolver,
    ExactResult,
    certified_accuracy,
    median_radius,
    minimal_l2_radius,
)
from featavg.attacks.objectives import (
    BinaryMargin,
    CrossEntropy,
    GroupCrossEntropy,
    check_model_output,
)
from featavg.attacks.pgd import PGDResult, flip_radius_from_grid, pgd, radius50
from featavg.attacks.subspace import row_space_basis, subspace_pgd

__all__ = [
    "ExactRadiusSolver",
    "ExactResult",
    "averaged_direction",
    "certified_accuracy",
    "ensemble_subspace_pgd",
    "line_search_flip_radius",
    "margin_flip_on_ray",
    "median_radius",
    "minimal_l2_radius",
    "module_flip_on_ray",
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
