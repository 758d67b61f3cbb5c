"""What featavg prints at the terminal after a command: the lines ``featavg run`` shows
before its last one (what ran, the headline numbers beside the theory, the figures).

Kept apart from :mod:`featavg.headline` (the numbers beside the theory, which
:mod:`featavg.loading` also shows in a run's repr) and from :mod:`featavg.loading` (reading a
run directory back), which both feed it: neither imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featavg.experiments.summary import is_number
from featavg.headline import headline_lines, seeds_text
from featavg.loading import figure_paths, run_seeds


def real_data_lines(summary: dict[str, Any]) -> list[str]:
    """For a run on image data: the data it ran on (with its stand-in or subset label),
    the pooled verdict at a few radii (gap, interval, sign count) and what the curves are
    (an attack's upper bounds, or checked against AutoAttack); nothing for other runs."""
    from featavg.experiments.image_seeds import verdict_lines

    dataset = summary.get("dataset")
    if not isinstance(dataset, dict):
        return []
    label = summary.get("stand_in_label") or dataset.get("stand_in")
    name = dataset.get("name", "?")
    train, test = dataset.get("train_size", "?"), dataset.get("test_size", "?")
    sizes = f"{train} training / {test} test images"
    lines = [f"data: {label or name} ({sizes}; {summary.get('points_attacked', '?')} attacked)"]
    lines += verdict_lines(summary)
    verified = summary.get("autoattack")
    method = (summary.get("config") or {}).get("attack", {}).get("method", "the attack")
    if isinstance(verified, dict) and verified:
        lines.append(f"curves: {method}, checked against AutoAttack: {verified.get('note', '')}")
    else:
        lines.append(
            f"curves: {method}; an attack's curve is an upper bound on the robust accuracy "
            "(featavg run --verify autoattack checks it against AutoAttack)"
        )
    return lines


def run_lines(summary: dict[str, Any], directory: Path, cached: bool) -> list[str]:
    """What ``featavg run`` prints before its last line: what ran (seeds, device, time),
    the headline table (:func:`headline_lines`) and the figure paths."""
    name = str(summary.get("experiment"))
    prov = summary.get("provenance") or {}
    wall = prov.get("wall_time_s")
    ran = f"{seeds_text(run_seeds(summary))} on {prov.get('device', '?')}"
    if cached:
        took = f" (took {wall:.1f} s)" if is_number(wall) else ""
        lines = [f"{name}: cached run of {ran}{took}"]
    else:
        lines = [f"{name}: {ran}" + (f" in {wall:.1f} s" if is_number(wall) else "")]
    lines += real_data_lines(summary)
    lines += headline_lines(summary)
    figures = figure_paths(directory, name)
    lines.append("figures:" if figures else "figures: none")
    lines += [f"  {path}" for path in figures.values()]
    return lines
