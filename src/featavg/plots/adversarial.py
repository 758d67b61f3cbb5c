"""Adversarial training figure: one alignment heatmap per training radius + robustness."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from featavg.plots import new_figure
from featavg.plots.alignment import heatmap_panel


@dataclass(frozen=True)
class AdversarialHeatmaps:
    """One seed's learned directions per training radius: ``cos`` (len(eps), M, k) the
    cosine of each unit w_r with each mu_j; ``unit_sign`` the sign a_r of each unit's
    output weight, ``signs`` the class of each mu_j; ``decoupled`` / ``same_class`` the
    per-eps numbers the titles give (fraction of units aligned with one feature, mean
    same-class cosine)."""

    eps: Sequence[float]
    cos: np.ndarray
    unit_sign: Sequence[float] | np.ndarray
    signs: Sequence[float] | np.ndarray
    decoupled: Sequence[float]
    same_class: Sequence[float]


def adversarial_figure(
    maps: AdversarialHeatmaps,
    radii: Sequence[float],
    curves: Mapping[str, Sequence[float] | np.ndarray],
    note: str = "",
) -> Figure:
    """One heatmap per training radius (:class:`AdversarialHeatmaps`), then the robust
    accuracy curves (label -> robust accuracy over ``radii``)."""
    eps, cos, unit_sign, signs = maps.eps, maps.cos, maps.unit_sign, maps.signs
    decoupled, same_class = maps.decoupled, maps.same_class
    n = len(eps)
    fig, axes = new_figure(1, n + 1, figsize=(4.2 * (n + 1), 6))
    cols = [f"mu_{j} ({'+' if s > 0 else '-'})" for j, s in enumerate(signs)]
    rows = ["+" if s > 0 else "-" for s in unit_sign]
    for j, e in enumerate(eps):
        title = (
            f"adversarial training eps={e:g}\ndecoupled units {decoupled[j]:.0%}, "
            f"same-class cos {same_class[j]:.2f}"
        )
        im = heatmap_panel(axes[j], cos[j], rows, cols, title)
        axes[j].tick_params(axis="y", labelsize=4)
    fig.colorbar(im, ax=axes[:n], shrink=0.6, label="cosine similarity")
    ax = axes[-1]
    for label, curve in curves.items():
        ax.plot(radii, curve, label=label)
    ax.set_xlabel("L2 radius (PGD, paper protocol)")
    ax.set_ylabel("robust test accuracy")
    ax.legend(fontsize=8)
    ax.set_title(f"robustness{f' ({note})' if note else ''}", fontsize=9)
    return fig
