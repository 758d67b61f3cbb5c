"""``attack.verify=autoattack``: a real-data run's curves checked against AutoAttack.

Every curve method is an attack, so its robust accuracy is an upper bound on the true one.
With ``verify=autoattack`` a run attacks, at the three largest radii of its grid, the points
each read-out's curve (the configured ``method``) still calls robust with AutoAttack's
APGD-CE (+ APGD-T for a decision over more than two classes), 100 iterations each
(:func:`featavg.attacks.autoattack.verify_autoattack`), and records per read-out and radius
how many AutoAttack broke and the accuracy left. The curves themselves are kept as they are
(the comparison of the models uses the same attack on both); the summary's ``autoattack``
entry says how far above AutoAttack they sit, and a pooled run gives the largest gap over
its seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import torch

from featavg.attacks.autoattack import AutoAttackBudget, verify_autoattack
from featavg.experiments.image_attack import ReadoutCurves
from featavg.experiments.image_common import ImageAttackSection
from featavg.progress import stage


def verify_curves(
    curves: Mapping[str, ReadoutCurves],
    x: torch.Tensor,
    y_fine: torch.Tensor,
    groups: Sequence[int],
    attack: ImageAttackSection,
    *,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """The summary's ``autoattack`` entry for one seed: per read-out the checks of its
    ``attack.method`` curve at the grid's three largest radii (dicts of
    :class:`~featavg.attacks.autoattack.AutoAttackCheck`), the largest gap in points and a
    ``note`` for the terminal. x, y_fine: the attacked points, as the curves saw them."""
    budget = AutoAttackBudget(seed=seed, batch_size=attack.batch_size, norm=attack.norm)
    checks: dict[str, list[dict[str, Any]]] = {}
    with stage("autoattack check", enabled=progress):  # APGD has no bar of its own
        for name, rc in curves.items():
            y = rc.readout.labels(y_fine, groups)
            found = verify_autoattack(
                rc.readout.module, rc.readout.objective, x, y, rc.curves[attack.method],
                budget=budget,
            )  # fmt: skip
            checks[name] = [asdict(c) for c in found]
    return {"method": attack.method, "checks": checks, **_largest(checks, 1)}


def pool_verification(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The pooled run's ``autoattack`` entry: each seed's checks and the largest gap over
    all of them; None when no seed was checked (and an error when only some were: the
    seeds of one pooled run share their config)."""
    entries = [s.get("autoattack") for s in summaries]
    if not any(entries):
        return None
    if not all(entries):
        raise ValueError("autoattack: some seed runs were checked against AutoAttack, some not")
    per_seed = [e["checks"] for e in entries if e]
    merged = {name: [c for checks in per_seed for c in checks[name]] for name in per_seed[0]}
    out = _largest(merged, len(per_seed))
    return {"method": entries[0]["method"], "per_seed": per_seed, **out}  # type: ignore[index]


def _largest(checks: Mapping[str, Sequence[Mapping[str, Any]]], seeds: int) -> dict[str, Any]:
    """max_gap (points), where it is, and the terminal's note."""
    rows = [(c["gap"], name, c["eps"]) for name, cs in checks.items() for c in cs]
    if not rows:
        return {"max_gap_points": 0.0, "note": "no radius checked"}
    gap, name, eps = max(rows)
    radii = sorted({c["eps"] for cs in checks.values() for c in cs})
    over = f" over {seeds} seeds" if seeds > 1 else ""
    note = (
        f"AutoAttack lowered the curves by at most {100 * gap:.1f} points{over} "
        f"({name} at radius {eps:g}; radii checked {', '.join(f'{r:g}' for r in radii)})"
    )
    return {"max_gap_points": 100 * gap, "where": {"readout": name, "radius": eps}, "note": note}
