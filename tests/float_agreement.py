"""What "agree to float rounding" means in the README's determinism promises, and the
comparison the tests make of two run directories under it.

Two runs of the same config that round differently (another thread count, a cell trained
alone instead of in an ensemble) agree when every number of the summary (provenance aside)
and of every table is within :data:`REL` relative of the other's, and everything else (the
keys, the columns, any text) is equal.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

# The results are float32 computations: one unit in the last place is 2^-24 to 2^-23
# (6e-8 to 1.2e-7) relative, and a sum whose terms are added in another order (another
# thread split, another vectorised kernel for another ensemble size) lands a few units
# away. Measured on an AMD EPYC (AVX-512) and with torch's AVX2 and scalar kernels: at
# most 2.1e-7 (2 units); 5e-7 allows 4 units at the top of a binade, 8 at the bottom.
REL = 5e-7


def _flat(value: Any, key: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(v, f"{key}.{k}", out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flat(v, f"{key}[{i}]", out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[key] = float(value)
    else:
        out[key] = value


def _cell(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def run_numbers(directory: Path) -> dict[str, Any]:
    """Every result of a run directory, flattened: ``summary.json`` without its provenance
    (key paths such as ``summary.per_seed.x[2]``) and every CSV table cell
    (``metrics.csv:<row>.<column>``); numbers as floats, anything else as it is."""
    out: dict[str, Any] = {}
    summary = json.loads((directory / "summary.json").read_text())
    summary.pop("provenance", None)
    _flat(summary, "summary", out)
    for table in sorted(directory.glob("*.csv")):
        with open(table, newline="") as f:
            rows = list(csv.reader(f))
        out[f"{table.name}:columns"] = rows[0] if rows else []
        for r, row in enumerate(rows[1:]):
            out[f"{table.name}:{r}.rows"] = len(row)
            for column, text in zip(rows[0], row, strict=False):
                out[f"{table.name}:{r}.{column}"] = _cell(text)
    return out


def agree(a: Any, b: Any, rel: float = REL) -> bool:
    """Numbers within ``rel`` relative (``|a - b| <= rel * max(|a|, |b|)``; NaN agrees
    with NaN), anything else equal."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or abs(a - b) <= rel * max(abs(a), abs(b))
    return bool(a == b)


def disagreements(a: Path, b: Path, rel: float = REL) -> list[str]:
    """The results (keys of :func:`run_numbers`) on which run directories ``a`` and ``b``
    do not agree, with both values; empty when they agree."""
    na, nb = run_numbers(a), run_numbers(b)
    return [
        f"{key}: {na.get(key)!r} vs {nb.get(key)!r}"
        for key in sorted(set(na) | set(nb))
        if key not in na or key not in nb or not agree(na[key], nb[key], rel)
    ]
