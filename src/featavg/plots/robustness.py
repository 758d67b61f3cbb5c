"""Robust-accuracy curves (paper Fig. 3 left) with certified curves and theory radii.

Nothing is written over a curve: the closed-form radii are vertical lines, each with its
own line style, named in the legend. Certified (exact) curves often share long stretches
(all at 1 before the first flip; the 10-way accuracy and the argmax read-out nearly
everywhere): each carries its own marker at its own grid points, so every one stays visible
where another is drawn over it; curves equal at every radius get interleaved dashes too,
and the legend says which they coincide with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from featavg.plots import THEORY_STYLES, Band, new_figure

COLORS = {"binary": "C3", "multiclass": "C0", "derived_sum": "C2", "derived_argmax": "C1"}
MARKERS = {"binary": "o", "multiclass": "s", "derived_sum": "^", "derived_argmax": "v"}
DASH = 4.0  # points per dash of a certified curve


def readout_label(readout: str, k: int | str = "k") -> str:
    """A legend label naming the actual number of classes, e.g. '10-class net, 10-way
    accuracy'; k stays the letter where it varies along an axis (the scaling figure)."""
    return {
        "binary": "binary net",
        "multiclass": f"{k}-class net, {k}-way accuracy",
        "derived_sum": f"{k}-class net, derived binary (sum form)",
        "derived_argmax": f"{k}-class net, derived binary (argmax form)",
    }.get(readout, readout)


def coinciding(curves: Mapping[str, np.ndarray], atol: float = 1e-9) -> list[list[str]]:
    """Groups of curves (by name, in the mapping's order) that are the same at every
    radius; every curve is in exactly one group."""
    groups: list[list[str]] = []
    for name, values in curves.items():
        for group in groups:
            if np.allclose(curves[group[0]], values, atol=atol, rtol=0):
                group.append(name)
                break
        else:
            groups.append([name])
    return groups


def robustness_curves(
    radii: Sequence[float],
    pgd: Mapping[str, Band],
    exact: Mapping[str, Band],
    theory: Mapping[str, float],
    k: int,
    note: str = "",
) -> Figure:
    """pgd / exact: readout -> (mean, lo, hi) arrays over ``radii``; theory: label -> radius;
    k: the number of clusters (legend labels).

    Solid: PGD robust accuracy (an upper bound); dashed: exact certified accuracy (the
    fraction of points whose exact minimal L2 radius exceeds eps); vertical lines: the
    closed-form radii, named in the legend."""
    fig, ax = new_figure(figsize=(12, 5))
    for name, (mean, lo, hi) in pgd.items():
        color = COLORS.get(name)
        ax.plot(radii, mean, color=color, label=f"{readout_label(name, k)} (PGD)")
        ax.fill_between(radii, lo, hi, color=color, alpha=0.15)
    means = {name: np.asarray(band[0], dtype=float) for name, band in exact.items()}
    order = list(means)
    for group in coinciding(means):
        n = len(group)
        for i, name in enumerate(group):
            # n curves on one line: dash i of every n, so each colour shows along it
            dashes = (i * DASH, (DASH, DASH * (n - 1))) if n > 1 else (0, (DASH, DASH / 2))
            label = f"{readout_label(name, k)} (exact)"
            if i > 0:
                label += f"\n  coincides with: {readout_label(group[0], k)} (exact)"
            ax.plot(
                radii,
                means[name],
                color=COLORS.get(name),
                ls=dashes,
                lw=1.4,
                marker=MARKERS.get(name, "o"),
                markersize=4,
                markevery=(order.index(name) % len(order), len(order)),  # own grid points
                label=label,
            )
    for i, (label, value) in enumerate(theory.items()):
        style = THEORY_STYLES[i % len(THEORY_STYLES)]
        ax.axvline(value, color="0.35", ls=style, lw=1.1, label=f"theory: {label}")
    ax.set_xlabel("L2 radius eps")
    ax.set_ylabel("robust test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(
        "robust accuracy vs L2 radius (solid: PGD, dashed: exact certified; vertical: theory)"
        + (f"\n{note}" if note else ""),
        fontsize=10,
    )
    return fig
