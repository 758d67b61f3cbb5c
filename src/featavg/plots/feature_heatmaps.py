"""The paper's Fig. 2c/d: heads on frozen pretrained features against the class means.

Rows of each heatmap are unit groups R_i of a block head (the units feeding output i),
columns the class means mu_j of the backbone's features; cell (i, j) = mean over r in R_i
of cos(w_r, mu_j). (The authors' plot labels its axes the other way round; the matrix is
the same.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from featavg.plots import new_figure
from featavg.plots.alignment import heatmap_panel


def feature_heatmaps(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]],
    group_rows: Sequence[str],
    class_rows: Sequence[str],
    columns: Sequence[str],
    *,
    note: str = "",
) -> Figure:
    """Fig. 2c/d, one figure row per entry of ``panels`` = (what, cells of the binary head
    (G, C), cells of the k-class head (k, C)): binary head left, k-class head right, one
    colour scale [-1, 1].

    ``group_rows`` / ``class_rows``: row labels (unit groups), ``columns``: class-mean
    labels; ``what`` names the class means of that row (e.g. "raw class means");
    ``note``: a suptitle line (data, backbone, stand-in label).
    """
    fig, axes = new_figure(len(panels), 2, figsize=(13, 5.4 * len(panels)))
    axes = np.asarray(axes).reshape(len(panels), 2)
    images = []
    for row, (what, cells_b, cells_f) in enumerate(panels):
        sides = (
            (cells_b, group_rows, f"(c) binary head vs {what}"),
            (cells_f, class_rows, f"(d) 10-class head vs {what}"),
        )
        for ax, (cells, labels, title) in zip(axes[row], sides, strict=True):
            images.append(heatmap_panel(ax, cells, labels, columns, title))
            ax.set_xlabel("class mean μ_j of the backbone features")
            ax.set_ylabel("unit group R_i (mean over its units r)")
    fig.colorbar(images[-1], ax=axes, shrink=0.6, label="mean cos(w_r, μ_j)")
    if note:
        fig.suptitle(note, fontsize=9)
    return fig
