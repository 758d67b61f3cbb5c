"""Alignment figures: the paper's Fig. 2a/b heatmaps and alignment over training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from featavg.plots import THEORY_STYLES, Band, new_figure


def heatmap_panel(
    ax: Axes, cos: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], title: str
) -> AxesImage:
    im = ax.imshow(cos, cmap="RdBu_r", vmin=-1.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    ax.set_xlabel("cluster center")
    ax.set_ylabel("hidden unit")
    ax.set_title(title, fontsize=10)
    if cos.size <= 400:  # annotate small matrices with their values
        for (i, j), v in np.ndenumerate(cos):
            ax.text(
                j,
                i,
                f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if abs(v) > 0.6 else "black",
            )
    return im


def alignment_heatmaps(
    cos_binary: np.ndarray,
    unit_sign: np.ndarray,
    cos_multiclass: np.ndarray,
    unit_class: np.ndarray,
    signs: np.ndarray,
    theory_same: float,
    note: str = "",
) -> Figure:
    """Fig. 2a/b: cos(w_r, mu_j) for the binary net (left) and the k-class net (right).

    cos_binary (M, k), unit_sign (M,) +-1; cos_multiclass (M', k), unit_class (M',);
    signs (k,) the binary class of each cluster. Shared colour scale [-1, 1].
    """
    cols = [f"mu_{j} ({'+' if s > 0 else '-'})" for j, s in enumerate(signs)]
    rows_b = [f"unit {r} (votes {'+' if s > 0 else '-'})" for r, s in enumerate(unit_sign)]
    rows_m = [f"unit {r} (class {c})" for r, c in enumerate(unit_class)]
    fig, axes = new_figure(1, 2, figsize=(12, 5.2))
    heatmap_panel(
        axes[0],
        cos_binary,
        rows_b,
        cols,
        f"(a) binary labels: feature averaging\ntheory: same-class cos = "
        f"1/sqrt(|J_s|) = {theory_same:.3f}, other class 0",
    )
    im = heatmap_panel(
        axes[1],
        cos_multiclass,
        rows_m,
        cols,
        "(b) fine-grained labels: feature decoupling\ntheory: own cluster 1, others 0",
    )
    fig.colorbar(im, ax=axes, shrink=0.8, label="cosine similarity")
    if note:
        fig.suptitle(note, fontsize=9)
    return fig


def alignment_dynamics(
    steps: Sequence[int],
    curves: Mapping[str, Band],
    theory: Mapping[str, float],
    note: str = "",
) -> Figure:
    """Alignment metrics vs GD step. curves: label -> (mean, lo, hi) arrays over steps;
    theory: label -> horizontal reference line."""
    fig, ax = new_figure(figsize=(6.5, 4.2))
    for label, (mean, lo, hi) in curves.items():
        (line,) = ax.plot(steps, mean, label=label)
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2)
    for i, (label, value) in enumerate(theory.items()):  # named in the legend, not on a curve
        style = THEORY_STYLES[i % len(THEORY_STYLES)]
        ax.axhline(value, ls=style, lw=1, color="0.35", label=f"theory: {label}")
    ax.set_xlabel("gradient step")
    ax.set_ylabel("cosine")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("alignment over training" + (f"\n{note}" if note else ""), fontsize=10)
    return fig
