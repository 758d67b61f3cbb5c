"""Robust-accuracy curves (paper Fig. 3 left) with certified curves and theory radii."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from featavg.plots import Band, new_figure

COLORS = {"binary": "C3", "multiclass": "C0", "derived_sum": "C2", "derived_argmax": "C1"}


def readout_label(readout: str, k: int | str = "k") -> str:
    """A legend label naming the actual number of classes, e.g. '10-class net, 10-way
    accuracy'; k stays the letter where it varies along an axis (the scaling figure)."""
    return {
        "binary": "binary net",
        "multiclass": f"{k}-class net, {k}-way accuracy",
        "derived_sum": f"{k}-class net, derived binary (sum form)",
        "derived_argmax": f"{k}-class net, derived binary (argmax form)",
    }.get(readout, readout)


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
    fraction of points whose exact minimal L2 radius exceeds eps)."""
    fig, ax = new_figure(figsize=(11, 5))
    for name, (mean, lo, hi) in pgd.items():
        color = COLORS.get(name)
        ax.plot(radii, mean, color=color, label=f"{readout_label(name, k)} (PGD)")
        ax.fill_between(radii, lo, hi, color=color, alpha=0.15)
    for name, (mean, _lo, _hi) in exact.items():
        color = COLORS.get(name)
        ax.plot(
            radii, mean, color=color, ls="--", lw=1.2, label=f"{readout_label(name, k)} (exact)"
        )
    for i, (label, value) in enumerate(theory.items()):
        ax.axvline(value, color="gray", ls=":", lw=1)
        ax.annotate(
            label,
            (value, 0.02 + 0.07 * i),
            rotation=90,
            fontsize=7,
            ha="right",
            va="bottom",
            color="dimgray",
        )
    ax.set_xlabel("L2 radius eps")
    ax.set_ylabel("robust test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(
        "robust accuracy vs L2 radius (solid: PGD, dashed: exact certified)"
        + (f"\n{note}" if note else ""),
        fontsize=10,
    )
    return fig
