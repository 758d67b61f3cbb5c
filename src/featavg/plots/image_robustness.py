"""Figures of the real-data robustness experiments: robust accuracy against the radius in
both units (normalised below, [0, 1]-pixel on top), and the last layer's alignment with the
class-mean features as heatmaps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
from matplotlib.figure import Figure

from featavg.plots import new_figure


class PixelScale(Protocol):
    """How normalised radii read in [0, 1]-pixel units (e.g. ``image_attack.PixelUnits``)."""

    @property
    def note(self) -> str: ...

    def to_pixel(self, r: float) -> float: ...

    @property
    def axis_label(self) -> str: ...


COLORS = {"binary": "C3", "group_argmax": "C1", "sum": "C2", "tenway": "C0"}


def robustness_figure(
    radii: Sequence[float],
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    labels: Mapping[str, str],
    *,
    main_method: str,
    units: PixelScale,
    norm: str,
    title: str,
) -> Figure:
    """Robust accuracy against the radius.

    radii: (R,) normalised radii; curves: method -> read-out -> (R,) accuracies; labels:
    read-out -> legend text. ``main_method`` is drawn solid, other methods (the paper's
    per-radius protocol) dashed in the same colour. The top axis shows the radius in pixel
    units through ``units.to_pixel`` (a linear map), labelled ``units.axis_label``, with
    ``units.note`` (how exact the map is) in the corner."""
    note = units.note
    fig, ax = new_figure(figsize=(9, 5.2))
    x = np.asarray(radii, dtype=float)
    for method, per_readout in curves.items():
        main = method == main_method
        for name, acc in per_readout.items():
            ax.plot(
                x,
                np.asarray(acc, dtype=float),
                color=COLORS.get(name),
                ls="-" if main else "--",
                lw=1.8 if main else 1.1,
                # crosses: the paper's protocol often coincides with ours and would hide
                marker="o" if main else "x",
                ms=3 if main else 5,
                label=f"{labels.get(name, name)} ({method})",
            )
    scale = units.to_pixel(1.0)  # pixel radius per normalised unit
    top = ax.secondary_xaxis("top", functions=(lambda r: r * scale, lambda p: p / scale))
    top.set_xlabel(units.axis_label)
    symbol = "L2" if norm == "l2" else "L∞"
    ax.set_xlabel(f"{symbol} radius ε, normalised units (the paper's)")
    ax.set_ylabel("robust test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title, fontsize=10)
    if note:
        ax.annotate(
            note,
            (0.99, 0.99),
            xycoords="axes fraction",
            ha="right",
            va="top",
            fontsize=7,
            color="dimgray",
        )
    return fig


def alignment_figure(
    binary: np.ndarray,
    fine: np.ndarray,
    binary_rows: Sequence[str],
    classes: Sequence[str],
    title: str,
) -> Figure:
    """Two heatmaps of cos(w_r, mu_j): rows = units of the final linear layer labelled by
    the group (binary model, (G, C)) or class (10-class model, (10, C)) they vote for;
    columns = class means mu_j of the model's penultimate features."""
    fig, axes = new_figure(1, 2, figsize=(12, 5.2))
    lo = float(min(binary.min(), fine.min(), 0.0))
    hi = float(max(binary.max(), fine.max(), 1e-12))
    image = None
    panels = (
        (axes[0], binary, binary_rows, "binary model"),
        (axes[1], fine, classes, "10-class model"),
    )
    for ax, cos, rows, name in panels:
        image = ax.imshow(cos, vmin=lo, vmax=hi, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(classes)), classes, rotation=60, fontsize=7, ha="right")
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_xlabel("class mean μ_j of the penultimate features")
        ax.set_ylabel("unit w_r of the final layer (votes for)")
        ax.set_title(name, fontsize=10)
        for (i, j), value in np.ndenumerate(cos):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color="w")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="cos(w_r, μ_j)")
    fig.suptitle(title, fontsize=10)
    return fig


def gap_figure(
    rows: Sequence[Mapping[str, object]], xlabel: str, title: str, note: str = ""
) -> Figure:
    """The comparison over seeds, per radius (rows of the pooled comparison: radius,
    per_seed, difference, lo, hi): each seed's gap (10-class read out by group of argmax,
    minus binary; thin grey), their mean (bold) and the 95% interval over seeds and points
    (band), with 0 (no difference) marked. Above 0: the 10-class model is the more robust."""
    fig, ax = new_figure(figsize=(9, 4.2))
    x = np.asarray([float(r["radius"]) for r in rows])  # type: ignore[arg-type]
    per_seed = np.asarray([r["per_seed"] for r in rows], dtype=float).T  # (S, R)
    for s, gaps in enumerate(per_seed):
        ax.plot(x, 100 * gaps, color="0.6", lw=0.8, label="each seed" if s == 0 else None)
    mean = np.asarray([float(r["difference"]) for r in rows])  # type: ignore[arg-type]
    lo = np.asarray([float(r["lo"]) for r in rows])  # type: ignore[arg-type]
    hi = np.asarray([float(r["hi"]) for r in rows])  # type: ignore[arg-type]
    ax.fill_between(x, 100 * lo, 100 * hi, color="C1", alpha=0.25, lw=0, label="95% interval")
    ax.plot(x, 100 * mean, color="C1", lw=2, marker="o", ms=3, label="mean gap")
    ax.axhline(0.0, color="k", lw=0.8, ls=":", label="no difference")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("10-class minus binary robust accuracy (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title, fontsize=10)
    if note:
        ax.annotate(note, (0.99, 0.01), xycoords="axes fraction", ha="right", va="bottom",
                    fontsize=7, color="dimgray")  # fmt: skip
    return fig
