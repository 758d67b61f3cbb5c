"""The probe's heatmap: a layer's units against the class means of its input.

Left: the paper's Fig. 2c/d cells, rows = the outputs the units serve (a coarse group for a
coarse model, a class for a fine one), columns = class means mu_j, cell = mean over the
row's units of cos(w_r, mu_j). Right (when the layer has at most :data:`MAX_UNIT_ROWS`
units): every unit, rows sorted by output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from featavg.plots import new_figure
from featavg.plots.alignment import heatmap_panel

# more units than this: the per-unit panel is left out (the CSV has them all)
MAX_UNIT_ROWS = 128


def probe_heatmap(
    group_cos: np.ndarray,
    group_rows: Sequence[str],
    columns: Sequence[str],
    unit_cos: np.ndarray | None = None,
    unit_rows: Sequence[str] = (),
    *,
    title: str = "",
    note: str = "",
) -> Figure:
    """(R, k) row-group cells and, when given and small enough, (U, k) unit cosines (rows
    already in display order), colour scale [-1, 1]; ``title``: the left panel's title,
    ``note``: a suptitle line (model, layer, data, stand-in label)."""
    show_units = unit_cos is not None and 0 < unit_cos.shape[0] <= MAX_UNIT_ROWS
    fig, axes = new_figure(1, 2 if show_units else 1, figsize=(13 if show_units else 7, 5.4))
    axes = list(np.atleast_1d(axes))
    im = heatmap_panel(axes[0], group_cos, group_rows, columns, title or "units by output")
    axes[0].set_xlabel("class mean μ_j of the layer's input")
    axes[0].set_ylabel("output served (mean over its units r)")
    if show_units and unit_cos is not None:
        heatmap_panel(axes[1], unit_cos, unit_rows, columns, "every unit r")
        axes[1].set_xlabel("class mean μ_j of the layer's input")
        axes[1].set_ylabel("unit (sorted by output)")
    fig.colorbar(im, ax=axes, shrink=0.8, label="cos(w_r, μ_j)")
    if note:
        fig.suptitle(note, fontsize=9)
    return fig
