"""The probe's summary, tables and figure, built from its measurements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from matplotlib.figure import Figure

from featavg.data.groupings import Grouping
from featavg.plots.probe import probe_heatmap
from featavg.probing.data import ProbeData
from featavg.probing.run import EXPERIMENT


@dataclass
class Measured:
    """Everything :func:`build_outputs` turns into files. cos (U, k), group_cos (R, k),
    rows: the units of each row, outputs (U,) o(r), rules: per unit, index (U,) A_r,
    weights (U, D), groups (k,): the coarse group of each class; fine: the logits are the
    k classes; logit_layer: the layer's outputs are the logits themselves."""

    numbers: dict[str, Any]
    cos: torch.Tensor
    group_cos: torch.Tensor
    rows: list[list[int]]
    outputs: torch.Tensor
    rules: list[str]
    index: torch.Tensor
    weights: torch.Tensor
    groups: torch.Tensor
    fine: bool
    logit_layer: bool = False


def robustness_rows(eps: torch.Tensor, acc: torch.Tensor, points: int) -> list[dict[str, Any]]:
    """One record per radius: eps, robust_accuracy, points."""
    return [
        {"eps": round(float(e), 10), "robust_accuracy": float(a), "points": points}
        for e, a in zip(eps.tolist(), acc.tolist(), strict=True)
    ]


def _labels(
    m: Measured, group: Grouping, names: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """(column labels of the classes, row labels of the outputs that have units)."""
    k = len(group.groups)
    names = list(names) if names is not None and len(names) == k else None
    cols = [
        f"μ_{j}" + (f" {names[j]}" if names else "") + f" [J{group.groups[j]}]" for j in range(k)
    ]
    rows = []
    for units in m.rows:
        c = int(m.outputs[units[0]])
        if m.fine:
            rows.append(f"class {c}" + (f" {names[c]}" if names else "") + f" [J{group.groups[c]}]")
        else:
            rows.append(f"group {c}: classes {','.join(map(str, group.members(c)))}")
    return cols, rows


def _tables(m: Measured, group: Grouping, row_labels: list[str]) -> dict[str, Any]:
    from featavg.probing.run import matrix_rows

    u = m.cos.shape[0]
    s_of = m.groups[m.outputs] if m.fine else m.outputs
    sizes = torch.bincount(m.groups)
    same = m.groups[None, :] == s_of[:, None]
    lead = [{"unit": r, "output": int(m.outputs[r]), "group": int(s_of[r])} for r in range(u)]
    units = [
        {
            **lead[r],
            "rule": m.rules[r],
            "averaging_index": round(float(m.index[r]), 8),
            "index_single_feature": round(1.0 / float(sizes[s_of[r]]), 8),
            "cos_own_group_mean": round(float(m.cos[r][same[r]].mean()), 8),
            "weight_norm": round(float(m.weights[r].norm()), 8),
        }
        for r in range(u)
    ]
    row_lead = [
        {
            "output": int(m.outputs[units_[0]]),
            "label": label,
            "group": int(s_of[units_[0]]),
            "units": len(units_),
        }
        for units_, label in zip(m.rows, row_labels, strict=True)
    ]
    return {
        "cosines": matrix_rows(m.cos, lead),
        "group_cosines": matrix_rows(m.group_cos, row_lead),
        "units": units,
    }


def _notes(m: Measured, ctx: dict[str, Any]) -> list[str]:
    source = {
        "given": "given by the caller (e.g. the synthetic cluster centers), not measured",
        "computed": "the layer's input per fine class (conv: averaged over space) over the "
        f"{ctx['fit_points']} fit points, not centred",
        "centred": "the layer's input per fine class (conv: averaged over space) over the "
        f"{ctx['fit_points']} fit points, minus the global feature mean",
    }[ctx["class_means_source"]]
    fallback = m.rules.count("cosine")
    where = "the held-out split" if ctx["evaluated_on"] == "held-out" else "the fit points"
    notes = [
        f"Class means μ_j: {source}.",
        "Units w_r: the weight rows of the layer"
        + (" summed over the kernel positions (the response to a spatially constant input)"
           if ctx["kind"] == "conv" else "")
        + "; biases ignored.",
        f"Each unit serves the output it pushes up most, o(r) = argmax_c E[∂logit_c/∂a_r] "
        f"over the first {ctx['grad_points']} fit points; {fallback} unit(s) with all-zero "
        "gradients fall back to the output whose class means they align with most.",
        "Averaging index A_r = (Σ_{j∈J_s} c_rj)² / (|J_s| Σ_{j∈J_s} c_rj²), c = max(cos, 0): "
        "1 for an exact average of the group's features, 1/|J_s| for a single one.",
        f"Linear probe: {len(ctx['group'].groups)}-way logistic regression on the standardised "
        f"layer input, {m.numbers['probe_train_points']} training / "
        f"{m.numbers['probe_test_points']} held-out points; model accuracy on {where}.",
    ]  # fmt: skip
    if m.logit_layer:
        notes.append(
            "This layer computes the logits: softmax does not change when one vector is added "
            "to every row w_r, so only differences of rows (e.g. w_1 − w_0) are determined by "
            "the model; the cosines of single rows include that arbitrary shared part."
        )
    gap = (
        m.numbers["index_exact_average_measured_means"]
        - m.numbers["index_single_feature_measured_means"]
    )
    if gap < 0.25:
        remedy = (
            "even after centring, so read the index against these two references"
            if ctx["class_means_source"] == "centred"
            else "centring the means (centre=True, --centre) removes their shared part"
        )
        notes.append(
            "The class means are far from orthogonal: on these means an exact average and a "
            f"single feature differ by only {gap:.3f} in averaging index, so the index says "
            f"little here; {remedy}."
        )
    if ctx["data"].stand_in:
        notes.append(f"Data: {ctx['data'].stand_in}.")
    return notes


def build_outputs(
    m: Measured, ctx: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]], Figure]:
    """(summary, tables by file stem, heatmap). ``ctx``: cfg, layer, kind, data
    (ProbeData), group (Grouping), class_names, class_means_source, evaluated_on,
    fit_points, grad_points, robustness (records or None), provenance."""
    group: Grouping = ctx["group"]
    data: ProbeData = ctx["data"]
    cols, row_labels = _labels(m, group, ctx["class_names"] or data.description.get("classes"))
    tables = _tables(m, group, row_labels)
    summary: dict[str, Any] = {
        "experiment": EXPERIMENT,
        "layer": ctx["layer"],
        "layer_kind": ctx["kind"],
        "model_outputs": "fine" if m.fine else "coarse",
        "data": data.description,
        "stand_in": data.stand_in or False,
        "grouping": group.describe(),
        "class_means": ctx["class_means_source"],
        **m.numbers,
    }
    if ctx["robustness"] is not None:
        summary["robustness"] = ctx["robustness"]
        tables["robustness"] = ctx["robustness"]
    summary["notes"] = _notes(m, ctx)
    summary["config"] = ctx["cfg"]
    summary["provenance"] = ctx["provenance"]
    order = sorted(range(m.cos.shape[0]), key=lambda r: (int(m.outputs[r]), r))
    unit_labels = [f"unit {r} → {int(m.outputs[r])}" for r in order]
    what = "fine" if m.fine else "coarse"
    # one unit per row (a head): the per-unit panel would repeat the left one
    per_unit = None if all(len(r) == 1 for r in m.rows) else m.cos[order].numpy()
    figure = probe_heatmap(
        m.group_cos.numpy(),
        row_labels,
        cols,
        per_unit,
        unit_labels,
        title=f"layer {ctx['layer'] or '(model)'}: units by output ({what} model)",
        # the stand-in label names the data itself, e.g. "Fashion-MNIST (stand-in for MNIST)"
        note=(data.stand_in or f"{data.description.get('name')}")
        + f"; averaging index {m.numbers['averaging_index']:.3f} "
        f"(1 = exact average, {m.numbers['index_single_feature']:.3f} = one feature)",
    )
    return summary, tables, figure
