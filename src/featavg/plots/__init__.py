"""Figures. Built on matplotlib's object API (no pyplot: headless, nothing global, and
~0.15 s less import time per command)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

# a curve and its 95% band over the x values: (mean, lo, hi)
Band = tuple[np.ndarray, np.ndarray, np.ndarray]

# line styles of closed-form reference lines, in order: distinct from the curves' solid and
# dashed, so that each is told apart in the legend (reference lines are named there, never
# by a label written over the plot)
THEORY_STYLES: list[Any] = [
    (0, (1, 2)),
    (0, (6, 2, 1, 2)),
    (0, (1, 1, 1, 1, 6, 1)),
    (0, (3, 1, 1, 1)),
]


def new_figure(
    nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.8)
) -> tuple[Figure, Any]:
    """(figure, axes) with constrained layout; axes as ``Figure.subplots`` returns them
    (an ``Axes``, or an array of them: typed Any, as matplotlib types it)."""
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols)
