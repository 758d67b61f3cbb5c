"""The probe's run directory: ``<root>/probe-<hash>/``, cached like every experiment's.

The hash (:func:`featavg.runs.run_dir`) covers the probe's identity, stored as the
summary's ``config``: the model (a sha256 over its class, structure, parameters and buffers;
for the CLI also the checkpoint file's sha256 and how it was built), the data's content
fingerprint, the layer, the grouping, the given class means' fingerprint and the options,
plus the package version and source. Files (written through :func:`featavg.runs.staged_dir`,
so a directory is whole or absent):

* ``summary.json``: the numbers (see :func:`featavg.probing.probe`), notes, config, provenance;
* ``cosines.csv``: cos(w_r, mu_j), one row per unit r (its output o(r) and group s(r)),
  one column ``mu_<j>`` per fine class;
* ``group_cosines.csv``: the Fig. 2c/d cells, one row per output c (mean over its units);
* ``units.csv``: per unit: output, group, the rule that assigned it, A_r, 1/|J_s|, norm;
* ``heatmap.png``; ``robustness.csv`` when a robustness curve was asked for;
* ``manifest.json``: the sha256 of every other file (written last).

The door that keeps these directories is :func:`featavg.probing.cached.probe_cached`.

``featavg report`` shows such a directory like any run: :data:`CLAIM` and :data:`FIGURES`
hold the section's text for it. Importing this module does not import torch.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featavg import runs
from featavg.experiments.spec import Claim

if TYPE_CHECKING:
    import torch
    from torch import nn

EXPERIMENT = "probe"

CLAIM = Claim(
    "Feature averaging probe: a layer's units against the class means of its input",
    "The paper (Fig. 2c/d) compares the units w_r of a head with the class means mu_j of its "
    "input features: a unit trained on coarse labels averages the features of its group "
    "J_s, cos(w_r, mu_j) = 1/sqrt(|J_s|) for j in J_s with orthogonal equal-norm means; a "
    "unit trained on fine labels aligns with one class mean.",
    "The probe does this for any model and layer: units are assigned to the output they "
    "push up most (mean gradient of the logits with respect to the unit's activation), the "
    "averaging index A_r is 1 for an exact average of the group's features and 1/|J_s| for "
    "a single one, and a k-way linear probe measures how much fine information the layer's "
    "input still carries beside the model's coarse accuracy.",
)

FIGURES = {
    "heatmap": "Left: mean cos(w_r, mu_j) over the units r serving each output (rows) against "
    "the class means mu_j (columns), the paper's Fig. 2c/d. Right: every unit (rows sorted "
    "by output), when there are few enough to show and not one per row."
}


def model_fingerprint(model: nn.Module) -> str:
    """16 hex digits of sha256 over the model's class, structure (repr) and every parameter
    and buffer (name, dtype, shape, bytes; non-persistent buffers such as a normalisation
    included): the in-memory model's identity."""
    from featavg.probing.data import tensor_fingerprint  # lazy: torch

    h = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}".encode())
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        h.update(f"{name} {t.dtype} {tuple(t.shape)}".encode())
        h.update(tensor_fingerprint(t).encode())
    return h.hexdigest()[:16]


def probe_directory(identity: dict[str, Any], root: str | Path) -> Path:
    """``<root>/probe-<hash of identity, version and source>``."""
    return runs.run_dir(EXPERIMENT, identity, root)


def matrix_rows(
    matrix: torch.Tensor, lead: list[dict[str, Any]], digits: int = 8
) -> list[dict[str, Any]]:
    """CSV rows: each ``lead`` row followed by ``mu_<j>`` columns of the matching matrix row."""
    rows = []
    for head, values in zip(lead, matrix.tolist(), strict=True):
        rows.append({**head, **{f"mu_{j}": round(float(v), digits) for j, v in enumerate(values)}})
    return rows


def read_matrix(path: Path) -> tuple[list[dict[str, str]], list[list[float]]]:
    """(the non-``mu_`` columns per row, the ``mu_<j>`` values per row) of a matrix CSV."""
    with path.open(newline="", encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    lead = [{k: v for k, v in r.items() if not k.startswith("mu_")} for r in records]
    values = [[float(v) for k, v in r.items() if k.startswith("mu_")] for r in records]
    return lead, values


def read_rows(path: Path) -> list[dict[str, str]]:
    """The records of a CSV file (strings)."""
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
