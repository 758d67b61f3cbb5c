"""Ablation grid: one binary-net alignment heatmap per setting (fine-grained beside it).

Each setting is a sub-figure whose title (the setting's name) spans both of its heatmaps,
so titles are set large enough to read when the figure is shown a page wide.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

TITLE_PT = 13  # a setting's name
PANEL_PT = 11  # each heatmap's number
TITLE_CHARS = 44  # a longer name wraps: it fits a pair of panels at TITLE_PT


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
    rows = max(math.ceil(len(names) / cols), 1)
    fig = Figure(figsize=(4.8 * cols + 0.8, 3.3 * rows + 0.6), layout="constrained")
    outer: Any = fig.subfigures(1, 2, width_ratios=[4.8 * cols, 0.8])  # typed as one or many
    grid, side = outer
    subfigs = np.atleast_1d(grid.subfigures(rows, cols, wspace=0.04, hspace=0.04)).ravel()
    im = None
    ticks = ["+" if s > 0 else "-" for s in signs]
    for idx, sub in enumerate(subfigs):
        if idx >= len(names):
            continue
        name = names[idx]
        cos_b, cos_m = heatmaps[name]
        ax_b, ax_m = sub.subplots(1, 2)
        sub.suptitle(textwrap.fill(name, TITLE_CHARS), fontsize=TITLE_PT)
        im = ax_b.imshow(cos_b, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        same = np.mean(numbers[name]["cos_same_class_mean_binary"])
        ax_b.set_title(f"binary: same-class {same:.2f}", fontsize=PANEL_PT)
        if cos_m is not None:
            ax_m.imshow(cos_m, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
            diag = np.mean(numbers[name]["cos_diag_mean_multiclass"])
            ax_m.set_title(f"fine-grained: own {diag:.2f}", fontsize=PANEL_PT)
        else:
            ax_m.axis("off")
        for ax in (ax_b, ax_m):
            ax.set_xticks(range(len(signs)), ticks, fontsize=8)
            ax.set_yticks([])
    if im is not None:  # beside the grid: one scale for every heatmap
        side.colorbar(im, cax=side.add_axes((0.15, 0.3, 0.3, 0.4)), label="cos(w_r, mu_j)")
    fig.suptitle(
        "ablations: rows = hidden units, columns = cluster centers (+/- class); "
        f"exact averaging: same-class cos = {theory:.3f}",
        fontsize=TITLE_PT + 1,
    )
    return fig
