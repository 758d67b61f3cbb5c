"""Ablation grid: one binary-net alignment heatmap per setting (fine-grained beside it)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from featavg.plots import new_figure


def ablation_grid(
    heatmaps: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
    numbers: Mapping[str, Mapping[str, Sequence[float]]],
    signs: Sequence[float],
    theory: float,
    cols: int = 4,
) -> Figure:
    """heatmaps: setting -> (cos binary (M, k), cos fine-grained (M', k) or None);
    numbers: setting -> {key: per-seed values}. One pair of panels per setting."""
    names = list(heatmaps)
    rows = math.ceil(len(names) / cols)
    fig, axes = new_figure(rows, 2 * cols, figsize=(4.6 * cols, 2.6 * rows))
    axes = np.atleast_2d(axes)
    im = None
    for idx in range(rows * cols):
        ax_b, ax_m = axes[idx // cols, 2 * (idx % cols)], axes[idx // cols, 2 * (idx % cols) + 1]
        if idx >= len(names):
            ax_b.axis("off")
            ax_m.axis("off")
            continue
        name = names[idx]
        cos_b, cos_m = heatmaps[name]
        im = ax_b.imshow(cos_b, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        same = np.mean(numbers[name]["cos_same_class_mean_binary"])
        ax_b.set_title(f"{name}\nbinary: same-class cos {same:.2f}", fontsize=7)
        if cos_m is not None:
            ax_m.imshow(cos_m, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
            diag = np.mean(numbers[name]["cos_diag_mean_multiclass"])
            ax_m.set_title(f"fine-grained: own cos {diag:.2f}", fontsize=7)
        else:
            ax_m.axis("off")
        for ax in (ax_b, ax_m):
            ax.set_xticks(range(len(signs)), ["+" if s > 0 else "-" for s in signs], fontsize=5)
            ax.set_yticks([])
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.5, label="cos(w_r, mu_j)")
    fig.suptitle(
        f"ablations: rows = hidden units, columns = cluster centers (+/- class); "
        f"exact averaging: same-class cos = {theory:.3f}",
        fontsize=10,
    )
    return fig
