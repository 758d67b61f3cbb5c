"""Attacks on any model: PGD (L2 / L-inf, all radii of a curve in one batch,
:mod:`.pgd`) and what it maximises (:class:`Objective` and its three implementations,
:mod:`.objectives`); robustness curves at a fraction of the per-radius cost
(:mod:`.robustness_curve`: one entry point over the paper's per-radius protocol, the
incremental protocol of :mod:`.incremental` and the minimum-norm attacks FMN / DDN of
:mod:`.min_norm`).

Attacks that only exist for two-layer ReLU nets (exact subspace PGD, exact minimal L2
radii, the analytic averaged-direction attack) live in :mod:`featavg.attacks.two_layer`;
statistics of the resulting curves (radius50, medians, certified accuracy) in
:mod:`featavg.metrics.curves`.
"""

from featavg.attacks.incremental import CurveResult, incremental_pgd
from featavg.attacks.min_norm import MinNormResult, ddn, fmn
from featavg.attacks.objectives import (
    BinaryMargin,
    CrossEntropy,
    GroupCrossEntropy,
    Objective,
    check_model_output,
)
from featavg.attacks.pgd import PGDResult, flip_radius_from_grid, pgd
from featavg.attacks.robustness_curve import METHODS, robustness_curve

__all__ = [
    "METHODS",
    "BinaryMargin",
    "CrossEntropy",
    "CurveResult",
    "GroupCrossEntropy",
    "MinNormResult",
    "Objective",
    "PGDResult",
    "check_model_output",
    "ddn",
    "flip_radius_from_grid",
    "fmn",
    "incremental_pgd",
    "pgd",
    "robustness_curve",
]
