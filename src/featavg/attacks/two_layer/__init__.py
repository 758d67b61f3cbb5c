"""Attacks that only exist for two-layer ReLU nets f(x) = A relu(W x + b), whose output
depends on x only through W x:

* :mod:`.subspace` / :mod:`.ensemble_subspace`: the paper's L2 PGD run exactly in the row
  space of W (one net / many nets with one readout in one batched program);
* :mod:`.exact`: the exact minimal L2 adversarial radius (units M <= 16), built on the flip
  region's polyhedra (:mod:`.flip_region`) and least-distance programs
  (:mod:`.least_distance`);
* :mod:`.analytic`: the attack along the negative averaged feature direction.

The model-agnostic PGD and the objectives live in :mod:`featavg.attacks`.
"""

from featavg.attacks.two_layer.analytic import (
    averaged_direction,
    line_search_flip_radius,
    margin_flip_on_ray,
    module_flip_on_ray,
)
from featavg.attacks.two_layer.ensemble_subspace import ensemble_subspace_pgd
from featavg.attacks.two_layer.exact import ExactRadiusSolver, ExactResult, minimal_l2_radius
from featavg.attacks.two_layer.subspace import row_space_basis, subspace_pgd, subspace_start

__all__ = [
    "ExactRadiusSolver",
    "ExactResult",
    "averaged_direction",
    "ensemble_subspace_pgd",
    "line_search_flip_radius",
    "margin_flip_on_ray",
    "minimal_l2_radius",
    "module_flip_on_ray",
    "row_space_basis",
    "subspace_pgd",
    "subspace_start",
]
