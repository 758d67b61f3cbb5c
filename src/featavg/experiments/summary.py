"""What a summary.json holds besides its measurements, and which entries are metrics.

A summary is a flat JSON object: measured means ``K`` (numbers, or null for a non-finite
result), their 95% intervals ``K_ci95``, the per-seed values under ``per_seed``, nested
entries (curves, settings tables) and the metadata keys of :data:`META_KEYS`. Pure Python:
the report and the sweep table import it without torch.
"""

from __future__ import annotations

from typing import Any

# Entries every summary carries that are not measurements.
# "notes": sentences the report must show beside the numbers (e.g. what was not computed).
META_KEYS = frozenset(
    {"experiment", "data", "stand_in", "notes", "config", "provenance", "per_seed"}
)


def is_number(value: Any) -> bool:
    """A JSON number (bool excluded: True is not a measurement)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_metric_value(value: Any) -> bool:
    """A measured scalar: a number, or null (the runner stores non-finite results as null)."""
    return value is None or is_number(value)


def metric_keys(summary: dict[str, Any]) -> list[str]:
    """The scalar metrics of a summary, in summary order (intervals ``_ci95`` left out)."""
    return [
        key
        for key, value in summary.items()
        if key not in META_KEYS and not key.endswith("_ci95") and is_metric_value(value)
    ]
