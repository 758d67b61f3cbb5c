"""The report's figures read at a glance: no label written over a curve (closed forms are
named in the legend), coinciding curves both visible and said to coincide, panel titles
large enough to read when the figure is shown a page wide."""

import io

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from featavg.plots.ablations import ablation_grid
from featavg.plots.alignment import alignment_dynamics
from featavg.plots.dynamics import dynamics_figure
from featavg.plots.robustness import coinciding, robustness_curves

RADII = np.arange(0, 60, 2.0)
THEORY = {"sqrt(d/k)=17.5 (f_FA)": 17.5, "sqrt(d/2)=39.2 (f_FD argmax)": 39.2}
PAGE_PX = 1216  # the report's width for a figure shown a page wide (76rem less padding)
DPI = 120  # featavg writes figures at this resolution


def band(center):
    mean = 1 / (1 + np.exp((RADII - center) / 2))
    return mean, mean - 0.02, mean + 0.02


def texts_in_axes(fig: Figure) -> list[Text]:
    """Every text artist drawn inside an axes' plotting area (not titles, ticks, legends)."""
    return [t for ax in fig.axes for t in ax.texts if t.get_text().strip()]


def legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts]


@pytest.fixture
def robustness():
    exact = {"binary": band(17), "multiclass": band(39), "derived_argmax": band(39)}
    return robustness_curves(RADII, {"binary": band(20)}, exact, THEORY, k=10)


def test_theory_radii_are_named_in_the_legend_not_over_the_curves(robustness):
    assert texts_in_axes(robustness) == []
    legend = legend_texts(robustness)
    for label in THEORY:
        assert f"theory: {label}" in legend
    ax = robustness.axes[0]
    verticals = [line for line in ax.get_lines() if line.get_label().startswith("theory:")]
    assert sorted(line.get_xdata()[0] for line in verticals) == [17.5, 39.2]
    assert len({str(line._unscaled_dash_pattern) for line in verticals}) == 2  # told apart


def test_coinciding_curves_are_both_visible_and_named(robustness):
    ax = robustness.axes[0]
    exact = {line.get_label(): line for line in ax.get_lines() if "(exact)" in line.get_label()}
    multiclass = exact["10-class net, 10-way accuracy (exact)"]
    argmax = next(line for name, line in exact.items() if name.startswith("10-class net, derived"))
    assert "coincides with: 10-class net, 10-way accuracy (exact)" in argmax.get_label()
    np.testing.assert_array_equal(multiclass.get_ydata(), argmax.get_ydata())
    # interleaved dashes: the same period, offset by one dash, so both colours show
    (off_a, seq_a), (off_b, seq_b) = multiclass._dash_pattern, argmax._dash_pattern
    assert list(seq_a) == list(seq_b) and off_a != off_b
    assert multiclass.get_color() != argmax.get_color()
    # and each carries its markers at its own grid points
    assert multiclass.get_marker() != argmax.get_marker()
    assert multiclass.get_markevery() != argmax.get_markevery()


def test_coinciding_groups():
    a, b = np.array([1.0, 0.5, 0.0]), np.array([1.0, 0.4, 0.0])
    assert coinciding({"x": a, "y": b, "z": a.copy()}) == [["x", "z"], ["y"]]
    assert coinciding({"x": a}) == [["x"]]


def test_reference_lines_of_the_training_figures_are_in_the_legend():
    steps = np.arange(0, 101, 10)
    flat = (np.full(11, 0.44), np.full(11, 0.43), np.full(11, 0.45))
    fig = alignment_dynamics(steps, {"mean same-class cos": flat}, {"1/sqrt(|J_s|)": 0.447})
    assert texts_in_axes(fig) == [] and "theory: 1/sqrt(|J_s|)" in legend_texts(fig)
    fig = dynamics_figure(
        steps, {"cos": flat}, {"radius": flat}, {"1/sqrt(|J_s|)": 0.447}, {"sqrt(d/k)": 17.5}
    )
    assert texts_in_axes(fig) == []
    assert {"theory 1/sqrt(|J_s|)", "theory sqrt(d/k)"} <= set(legend_texts(fig))


def test_ablation_panel_titles_are_readable_a_page_wide():
    rng = np.random.default_rng(0)
    names = [f"init std {s:g}" for s in (1e-6, 1e-4, 1e-3, 1e-2)] + [
        "norms 0.8, 0.9, 1, 1.1, 1.2 sqrt(d) per class (ladder)",
        "adversarial training eps 40",
    ]
    heatmaps = {n: (rng.uniform(-1, 1, (10, 10)), rng.uniform(-1, 1, (10, 10))) for n in names}
    numbers = {
        n: {"cos_same_class_mean_binary": [0.44], "cos_diag_mean_multiclass": [0.98]} for n in names
    }
    fig = ablation_grid(heatmaps, numbers, [1, -1] * 5, 0.447)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")  # as featavg writes it
    width = Image.open(io.BytesIO(buf.getvalue())).size[0]
    scale = min(1.0, PAGE_PX / width)  # how the page shrinks it

    def px(points):  # a font size as it shows on the page, in pixels
        return points * DPI / 72 * scale

    titles = [sub._suptitle for sub in fig.subfigs[0].subfigs if sub._suptitle is not None]
    assert {t.get_text().replace("\n", " ") for t in titles} == set(names)  # long ones wrap
    assert min(px(t.get_fontsize()) for t in titles) >= 9
    panel = [ax.title for ax in fig.axes if ax.get_title()]
    assert len(panel) == 2 * len(names) and min(px(t.get_fontsize()) for t in panel) >= 8
