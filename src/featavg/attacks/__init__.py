"""Attacks on any model: PGD (L2 / L-inf, all radii of a curve in one batch,
:mod:`.pgd`) and what it maximises (:class:`Objective` and its three implementations,
:mod:`.objectives`).

Attacks that only exist for two-layer ReLU nets (exact subspace PGD, exact minimal L2
radii, the analytic averaged-direction attack) live in :mod:`featavg.attacks.two_layer`;
statistics of the resulting curves (radius50, medians, certified accuracy) in
:mod:`featavg.metrics.curves`.
"""

from featavg.attacks.objectives import (
    BinaryMargin,
    CrossEntropy,
    GroupCrossEntropy,
    Objective,
    check_model_output,
)
from featavg.attacks.pgd import PGDResult, flip_radius_from_grid, pgd

__all__ = [
    "BinaryMargin",
    "CrossEntropy",
    "GroupCrossEntropy",
    "Objective",
    "PGDResult",
    "check_model_output",
    "flip_radius_from_grid",
    "pgd",
]
