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
    lines += headline_lines(summary)
    figures = figure_paths(directory, name)
    lines.append("figures:" if figures else "figures: none")
    lines += [f"  {path}" for path in figures.values()]
    return lines
