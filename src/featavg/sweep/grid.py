"""Grid parsing (``--grid KEY=V1,V2``) and the names and labels of grid cells."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from featavg.config import ConfigError, clip, parse_value, shown


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets, so list values like ``[1,2],[3,4]`` survive."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["train.lr=0.001,0.01", "data.k=4,8"]`` -> ``{"train.lr": [0.001, 0.01],
    "data.k": [4, 8]}``; values parsed like ``--set`` values. Raises :class:`ConfigError`
    (a key given twice, an empty or repeated value; which values a key takes is checked
    when the sweep is planned, against the experiment's config)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(
                f"--grid {shown(item)}: expected KEY=V1,V2,..., e.g. train.lr=1e-3,1e-2"
            )
        if key in grid:
            raise ConfigError(
                f"--grid {clip(key, 60)}: given twice; list all its values in one --grid"
            )
        if key == "seeds":
            raise ConfigError("--grid seeds: use --seeds N (seeds are batched inside each cell)")
        raw = _split_values(text)
        if any(not v.strip() for v in raw):
            raise ConfigError(f"--grid {shown(item)}: empty value in the list")
        try:
            values = [parse_value(v.strip()) for v in raw]
        except ConfigError as err:
            raise ConfigError(f"--grid {clip(key, 60)}: {err}") from None
        canon = [json.dumps(v, sort_keys=True) for v in values]
        if len(set(canon)) != len(canon):  # the same cell twice (1 and 1.0: see plan_sweep)
            raise ConfigError(f"--grid {shown(item)}: a value is repeated")
        grid[key] = values
    return grid


def format_value(value: Any) -> str:
    """A grid value as text: strings as they are, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def cell_label(values: dict[str, Any]) -> str:
    """Human-readable ``train.lr=0.01, data.k=4``."""
    return ", ".join(f"{k}={format_value(v)}" for k, v in values.items())


def cell_name(values: dict[str, Any]) -> str:
    """Deterministic, filesystem-safe directory name: sanitised label + 8-hex hash.

    The hash keeps names unique when sanitising or truncating maps two cells together."""
    label = "__".join(f"{k}={format_value(v)}" for k, v in values.items())
    label = re.sub(r"[^A-Za-z0-9._=+-]", "_", label)[:80]
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]
    return f"{label}-{digest}"
