"""Robustness radius vs k or d on log-log axes, with the theory lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from featavg.plots import new_figure
from featavg.plots.robustness import COLORS, readout_label


def scaling_figure(
    var: str,
    xs: Sequence[int],
    results: Sequence[Mapping[str, Sequence[float]]],
    theory: Mapping[str, Sequence[float]],
    numbers: Mapping[str, Any],
    k_fixed: int | None = None,
    note: str = "",
) -> Figure:
    """results[i][series] = per-seed radii at xs[i]; series 'pgd_<readout>' (solid) and
    'exact_<readout>' (dashed). theory: label -> values over xs (gray lines). k_fixed: the
    number of clusters of the d sweep (legend labels; the k sweep says "k")."""
    fig, ax = new_figure(figsize=(10, 5))
    for series in results[0]:
        kind, readout = series.split("_", 1)
        pts = [
            (x, np.mean(r[series]), np.std(r[series]))
            for x, r in zip(xs, results, strict=True)
            if series in r and np.isfinite(np.mean(r[series]))
        ]
        if not pts:
            continue
        x, m, s = map(np.array, zip(*pts, strict=True))
        slope = numbers.get(f"slope_{var}_{'exact_' if kind == 'exact' else ''}{readout}")
        k: int | str = k_fixed if var == "d" and k_fixed is not None else "k"
        label = f"{readout_label(readout, k)} ({'PGD r50' if kind == 'pgd' else 'exact median'})"
        if slope is not None:
            label += f", slope {slope:+.2f}"
        ax.errorbar(
            x,
            m,
            yerr=s,
            color=COLORS.get(readout),
            ls="-" if kind == "pgd" else "--",
            marker="o" if kind == "pgd" else "s",
            ms=4,
            capsize=2,
            label=label,
        )
    for i, (label, values) in enumerate(theory.items()):
        ax.plot(xs, values, color="gray", ls=":" if i else "-.", lw=1.2, label=f"theory {label}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(var)
    ax.set_ylabel("L2 radius")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"robustness radius vs {var}" + (f" ({note})" if note else ""), fontsize=10)
    return fig
