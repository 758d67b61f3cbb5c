"""Alignment and robustness radius against the GD step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from featavg.plots import THEORY_STYLES, Band, new_figure


def dynamics_figure(
    steps: Sequence[int],
    alignment: Mapping[str, Band],
    radii: Mapping[str, Band],
    theory_cos: Mapping[str, float],
    theory_radius: Mapping[str, float],
    note: str = "",
) -> Figure:
    """alignment / radii: label -> (mean, lo, hi) over ``steps``; theory_*: label -> value."""
    fig, (ax_a, ax_r) = new_figure(1, 2, figsize=(13, 4.6))
    for ax, curves, refs, ylabel in (
        (ax_a, alignment, theory_cos, "cosine"),
        (ax_r, radii, theory_radius, "L2 radius"),
    ):
        for label, (mean, lo, hi) in curves.items():
            style = "--" if "PGD" in label else "-"
            (line,) = ax.plot(steps, mean, style, label=label)
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.15)
        for i, (label, value) in enumerate(refs.items()):  # in the legend, not on a curve
            style = THEORY_STYLES[i % len(THEORY_STYLES)]
            ax.axhline(value, color="0.35", ls=style, lw=1, label=f"theory {label}")
        ax.set_xscale("symlog", linthresh=1)  # everything happens in the first steps
        ax.set_xlim(0, steps[-1])
        ax.set_xlabel("gradient step (symlog)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    ax_a.set_title("alignment over training", fontsize=10)
    ax_r.set_title("robustness radius over training" + (f" ({note})" if note else ""), fontsize=10)
    return fig
