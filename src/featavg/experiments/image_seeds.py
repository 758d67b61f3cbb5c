"""Seeds as the unit of evidence for the real-data experiments.

A seed is one independent training run of both models (initialisation, data order and the
training subset) attacked on the SAME test points as every other seed. A run with
``seeds=1`` is one such run: it records, besides its curves, which attacked points each
model still gets right at each radius (one '0'/'1' string per radius:
:func:`~featavg.experiments.image_attack.point_strings`), so runs can be paired point by
point. A run with ``seeds=S`` is made by the runner
from S single-seed runs (each its own cached run, so adding seeds reuses the finished ones,
and a sweep can compute them as separate cells) and :func:`pool_seeds` here.

:func:`pooled_numbers` is the comparison both make (one seed included): per radius each
seed's gap (10-class read out as the group of its argmax, minus binary), the mean gap, a 95%
interval over seeds and points, the sign count and the verdict
(:func:`featavg.metrics.pooled.pooled_gap`), beside the within-run paired 2 SE (test-point
noise only). With one seed it says that the verdict ignores training randomness.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from featavg.attacks.readouts import READOUT_LABELS
from featavg.experiments.image_attack import BINARY, POINTS, TENCLASS, PixelUnits
from featavg.experiments.output import kinds_of
from featavg.metrics.intervals import mean_interval
from featavg.metrics.pooled import NO_DIFFERENCE, TENCLASS_MORE, pooled_gap
from featavg.plots.image_robustness import gap_figure

# where a terminal line and a statement quote the pooled verdict: these fractions of the
# largest radius attacked, each at the grid's nearest radius (0.5, 1, 1.5, 2 on the L2 grid
# up to 2; 0.025 ... 0.1 on the L-infinity grid up to 0.1)
QUOTED = (0.25, 0.5, 0.75, 1.0)


def quoted_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows (radius > 0) nearest to :data:`QUOTED` fractions of the largest radius, in
    radius order, each once."""
    attacked = [r for r in rows if r["radius"] > 0]
    if not attacked:
        return []
    top = max(r["radius"] for r in attacked)
    picked = {id(min(attacked, key=lambda r: abs(r["radius"] - q * top))): q for q in QUOTED}
    return [r for r in attacked if id(r) in picked]


def _correct(numbers: Sequence[Mapping[str, Any]], readout: str) -> np.ndarray:
    """(S, R, B) bool of ``readout`` from each seed's :data:`POINTS` entry."""
    rows = [[[c == "1" for c in row] for row in n[POINTS][readout]] for n in numbers]
    return np.asarray(rows, dtype=bool)


def gap_key(radius: float) -> str:
    """The summary key of the mean gap at ``radius``: gap_at_0_5, gap_at_2."""
    return "gap_at_" + f"{radius:g}".replace(".", "_").replace("-", "m")


def pooled_rows(numbers: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per radius: the mean accuracies of both models, the mean gap with its interval, the
    sign count, the verdict and the within-run 2 SE (module docstring)."""
    binary, tenclass = _correct(numbers, BINARY), _correct(numbers, TENCLASS)
    pooled = pooled_gap(binary, tenclass)
    curves = numbers[0]["curves"]
    rows = []
    for r, radius in enumerate(curves["radii"]):
        rows.append(
            {
                "radius": radius,
                "radius_pixel": curves["radii_pixel"][r],
                "binary": float(binary[:, r].mean()),
                "group_argmax": float(tenclass[:, r].mean()),
                "difference": float(pooled.mean[r]),
                "lo": float(pooled.lo[r]),
                "hi": float(pooled.hi[r]),
                "per_seed": [float(g) for g in pooled.per_seed[:, r]],
                "positive": int(pooled.positive[r]),
                "negative": int(pooled.negative[r]),
                "seeds": pooled.seeds,
                "verdict": pooled.verdict[r],
                "two_se": float(pooled.two_se[r]),
            }
        )
    return rows


def statement(rows: Sequence[Mapping[str, Any]], seeds: int) -> str:
    """One plain paragraph from :func:`pooled_rows`: where each verdict holds, the gap at
    the quoted radii with its interval and sign count, and, for one seed, the caveat."""
    attacked = [r for r in rows if r["radius"] > 0]
    if not attacked:
        return "No radius > 0 attacked: nothing to compare."
    count = {v: sum(r["verdict"] == v for r in attacked) for v in {r["verdict"] for r in rows}}
    shown = ", ".join(f"{v} at {n}" for v, n in sorted(count.items()) if n)
    parts = [f"Pooled over {seeds} seed(s), of {len(attacked)} radii > 0: {shown}."]
    quoted = [
        f"at {row['radius']:g}: {100 * row['difference']:+.1f} points "
        f"[{100 * row['lo']:+.1f}, {100 * row['hi']:+.1f}], positive in "
        f"{row['positive']} of {row['seeds']} seed(s)"
        for row in quoted_rows(attacked)
    ]
    if quoted:
        parts.append("10-class minus binary " + "; ".join(quoted) + ".")
    if seeds == 1:
        parts.append(training_caveat())
    return " ".join(parts)


def training_caveat() -> str:
    """What a one-seed verdict must say."""
    return (
        "One training run: this verdict ignores training randomness (a second seed can "
        "flip it); add seeds with --seeds 5 (seeds=5 in the API)."
    )


def pooled_numbers(numbers: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """The comparison entries of a summary from the single-seed ``numbers`` of ``seeds``:
    ``more_robust`` (the pooled rows), ``tenclass_more_robust_fraction`` (radii > 0 whose
    verdict is "10-class more robust"), ``more_robust_statement``, ``gap_at_<r>`` (mean
    gap, with ``_ci95``) and whether the verdict ignores training randomness."""
    rows = pooled_rows(numbers)
    attacked = [r for r in rows if r["radius"] > 0]
    out: dict[str, Any] = {
        "seeds_pooled": list(seeds),
        "more_robust": rows,
        "tenclass_more_robust_fraction": (
            sum(r["verdict"] == TENCLASS_MORE for r in attacked) / len(attacked)
            if attacked
            else float("nan")
        ),
        "more_robust_statement": statement(rows, len(seeds)),
        "verdict_ignores_training_randomness": len(seeds) == 1,
    }
    for row in rows:
        out[gap_key(row["radius"])] = row["difference"]
        out[gap_key(row["radius"]) + "_ci95"] = [row["lo"], row["hi"]]
    return out


def gap_panel(numbers: Mapping[str, Any], units: PixelUnits, heading: str) -> Figure:
    """The gap figure of a run from its comparison rows (``more_robust``): each seed's gap,
    the mean and its interval, the caveat when one seed is all there is."""
    seeds = len(numbers["seeds_pooled"])
    return gap_figure(
        numbers["more_robust"],
        f"radius, normalised units (pixels: radius / {units.factor:g})",
        f"{heading}, {seeds} seed(s)",
        note="" if seeds > 1 else training_caveat(),
    )


def verdict_lines(summary: Mapping[str, Any]) -> list[str]:
    """Terminal lines of a real-data run's pooled verdict at the quoted radii."""
    rows = [r for r in summary.get("more_robust") or [] if isinstance(r, dict) and "lo" in r]
    if not rows:
        return []
    seeds = rows[0].get("seeds", 1)
    lines = [f"verdict (10-class minus binary robust accuracy, {seeds} seed(s)):"]
    for row in quoted_rows(rows):
        lines.append(
            f"  radius {row['radius']:g}: {100 * row['difference']:+5.1f} points, 95% "
            f"[{100 * row['lo']:+.1f}, {100 * row['hi']:+.1f}], positive in "
            f"{row['positive']} of {seeds}: {row['verdict']}"
        )
    if seeds == 1:
        lines.append(f"  {training_caveat()}")
    elif all(r["verdict"] == NO_DIFFERENCE for r in rows if r["radius"] > 0):
        lines.append("  no radius > 0 shows a difference beyond the seeds' and points' noise")
    return lines


# ---------------------------------------------------------------- pooling seed runs

# per-seed scalars that are means over seeds in a pooled run, by kind (their intervals);
# any other scalar (a count, a flag) is the same for every seed and is not averaged
_KINDS = {
    "proportions": ("clean_acc_*", "test_acc_*", "train_acc_*"),
    "cosines": ("align_*", "cos_*", "class_mean_cos_*"),
    "positive": (
        "radius50*", "averaging_index_binary", "averaging_index_tenclass",
        "gradient_evaluations_*",
    ),
    "real": ("averaging_index_gap",),
}  # fmt: skip


def _measured(key: str) -> bool:
    return any(fnmatchcase(key, p) for patterns in _KINDS.values() for p in patterns)


def mean_metrics(numbers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The measured scalars every seed has (:data:`_KINDS`), as means over seeds with
    ``_ci95`` intervals by their kind (accuracies as proportions, cosines, radii as positive
    quantities), and ``per_seed``: each one's values."""
    keys = [
        k
        for k, v in numbers[0].items()
        if isinstance(v, int | float | None) and not isinstance(v, bool) and _measured(k)
    ]
    kinds = kinds_of(keys, **_KINDS)
    out: dict[str, Any] = {"per_seed": {}}
    for key in keys:
        values = [float(n[key]) if n.get(key) is not None else float("inf") for n in numbers]
        mean, lo, hi = mean_interval(values, kinds[key])
        out[key], out[f"{key}_ci95"] = mean, [lo, hi]
        out["per_seed"][key] = values
    return out


def mean_curves(numbers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``curves`` entry of a pooled run: the radii of the seeds' (equal) grids, per
    method and read-out the mean robust accuracy, and each seed's under ``per_seed``."""
    first = numbers[0]["curves"]
    methods = [m for m in first if isinstance(first[m], dict)]
    out: dict[str, Any] = {k: first[k] for k in ("radii", "radii_pixel", "pixel_units")}
    out["per_seed"] = {}
    for method in methods:
        per = {r: [n["curves"][method][r] for n in numbers] for r in first[method]}
        out[method] = {
            r: np.mean(np.asarray(v, dtype=float), axis=0).tolist() for r, v in per.items()
        }
        out["per_seed"][method] = per
    return out


def mean_alignment_rows(directories: Sequence[Path]) -> list[dict[str, Any]]:
    """The alignment table of a pooled run: each (model, unit, class) cosine averaged over
    the seed runs' ``alignment.csv`` (written whole, checked by their manifests)."""
    tables = []
    for directory in directories:
        with (directory / "alignment.csv").open(newline="", encoding="utf-8") as f:
            tables.append(list(csv.DictReader(f)))
    rows = []
    for i, row in enumerate(tables[0]):
        cosines = [float(t[i]["cosine"]) for t in tables]
        rows.append({**row, "unit": int(row["unit"]), "class": int(row["class"]),
                     "cosine": float(np.mean(cosines))})  # fmt: skip
    return rows


def comparison_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The comparison rows as a CSV table: each seed's gap in a column of its own."""
    out = []
    for row in rows:
        flat = {k: v for k, v in row.items() if k != "per_seed"}
        flat.update({f"gap_seed{i}": g for i, g in enumerate(row["per_seed"])})
        out.append(flat)
    return out


def mean_curve_table(curves: dict[str, Any], units: PixelUnits) -> list[dict[str, Any]]:
    """The main table of a pooled run: the mean robust accuracy per (read-out, method,
    radius) and its range over the seeds."""
    rows = []
    for method, per_readout in curves["per_seed"].items():
        for readout, per_seed in per_readout.items():
            values = np.asarray(per_seed, dtype=float)
            for i, eps in enumerate(curves["radii"]):
                rows.append({
                    "readout": readout, "readout_label": READOUT_LABELS.get(readout, readout),
                    "method": method, "radius": eps, "radius_pixel": units.to_pixel(eps),
                    "robust_acc": float(values[:, i].mean()),
                    "robust_acc_min": float(values[:, i].min()),
                    "robust_acc_max": float(values[:, i].max()),
                })  # fmt: skip
    return rows


def cosine_matrix(rows: Sequence[dict[str, Any]], model: str) -> np.ndarray:
    """The (units, classes) cosine matrix of ``model`` from alignment rows."""
    mine = [r for r in rows if r["model"] == model]
    units = max(r["unit"] for r in mine) + 1
    classes = max(r["class"] for r in mine) + 1
    out = np.zeros((units, classes))
    for r in mine:
        out[r["unit"], r["class"]] = r["cosine"]
    return out
