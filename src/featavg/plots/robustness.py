"""Robust-accuracy curves (paper Fig. 3 left) with certified curves and theory radii."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from featavg.plots import Band, new_figure

COLORS = {"binary": "C3", "multiclass": "C0", "derived_sum": "C2", "derived_argmax": "C1"}
LABELS = {
    "binary": "binary net",
    "multiclass": "10-class net, k-way accuracy",
    "derived_sum": "10-class net, derived binary (sum form)",
    "derived_argmax": "10-class net, derived binary (argmax form)",
}


def robustness_curves(
    radii: Sequence[float],
    pgd: Mapping[str, Band],
    exact: Mapping[str, Band],
    theory: Mapping[str, float],
    note: str = "",
) -> Figure:
    """pgd / exact: readout -> (mean, lo, hi) arrays over ``radii``; theory: label -> radius.

    Solid: PGD robust accuracy (an upper bound); dashed: exact certified accuracy (the
    fraction of points whose exact minimal L2 radius exceeds eps)."""
    fig, ax = new_figure(figsize=(11, 5))
    for name, (mean, lo, hi) in pgd.items():
        color = COLORS.get(name)
        ax.plot(radii, mean, color=color, label=f"{LABELS.get(name, name)} (PGD)")
        ax.fill_between(radii, lo, hi, color=color, alpha=0.15)
    for name, (mean, _lo, _hi) in exact.items():
        color = COLORS.get(name)
        ax.plot(
            radii, mean, color=color, ls="--", lw=1.2, label=f"{LABELS.get(name, name)} (exact)"
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
