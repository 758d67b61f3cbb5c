"""Attacks on any model: PGD (L2 / L-inf, all radii of a curve in one batch,
:mod:`.pgd`) and what it maximises (:class:`Objective` and its three implementations,
:mod:`.objectives`); robustness curves at a fraction of the per-radius cost
(:mod:`.robustness_curve`: one entry point over the methods of :data:`CURVE_METHODS`: the
paper's per-radius protocol, the incremental protocol of :mod:`.incremental`, the
minimum-norm attacks FMN / DDN of :mod:`.min_norm` and the grid descent of :mod:`.descend`
with PGD or APGD (:mod:`.apgd`)). Every attack takes its hyper-parameters as one
:class:`AttackSettings` (:mod:`.core`). :func:`verify_autoattack` checks a curve against
AutoAttack (:mod:`.autoattack`, the optional extra pyautoattack).

Attacks that only exist for two-layer ReLU nets (exact subspace PGD, exact minimal L2
radii, the analytic averaged-direction attack) live in :mod:`featavg.attacks.two_layer`;
statistics of the resulting curves (radius50, medians, certified accuracy) in
:mod:`featavg.metrics.curves`.
"""

from featavg.attacks.autoattack import AutoAttackBudget, AutoAttackCheck, verify_autoattack
from featavg.attacks.core import AttackSettings, CurveResult, GradientCounter, eval_mode
from featavg.attacks.descend import descend_pgd
from featavg.attacks.incremental import incremental_pgd
from featavg.attacks.min_norm import DDNSchedule, FMNSchedule, MinNormResult, ddn, fmn
from featavg.attacks.objectives import (
    BinaryMargin,
    CrossEntropy,
    GroupCrossEntropy,
    Objective,
    check_model_output,
)
from featavg.attacks.pgd import PGDResult, flip_radius_from_grid, pgd
from featavg.attacks.robustness_curve import (
    CURVE_METHODS,
    DEFAULT_METHOD,
    METHODS,
    CurveMethod,
    robustness_curve,
)

__all__ = [
    "CURVE_METHODS",
    "DEFAULT_METHOD",
    "METHODS",
    "AttackSettings",
    "AutoAttackBudget",
    "AutoAttackCheck",
    "BinaryMargin",
    "CrossEntropy",
    "CurveMethod",
    "CurveResult",
    "DDNSchedule",
    "FMNSchedule",
    "GradientCounter",
    "GroupCrossEntropy",
    "MinNormResult",
    "Objective",
    "PGDResult",
    "check_model_output",
    "ddn",
    "descend_pgd",
    "eval_mode",
    "flip_radius_from_grid",
    "fmn",
    "incremental_pgd",
    "pgd",
    "robustness_curve",
    "verify_autoattack",
]
