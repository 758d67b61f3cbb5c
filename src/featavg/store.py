"""Run directories: where results go, written atomically, with provenance (open_lth style).

By default a run lives in ``runs/<experiment>-<hash>/`` where the hash covers the effective
config and the package version, so identical runs share a directory (a cache hit) and
different ones never collide. Every file is written to a temporary name and renamed, and
``summary.json`` is written last: its presence marks a finished run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from featavg import __version__

if TYPE_CHECKING:  # matplotlib is imported only where figures are drawn
    from matplotlib.figure import Figure

DEFAULT_ROOT = Path("runs")


def config_hash(experiment: str, config: dict[str, Any]) -> str:
    """12 hex digits over (experiment, config, package version)."""
    blob = json.dumps(
        {"experiment": experiment, "config": config, "version": __version__}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_dir(experiment: str, config: dict[str, Any], root: str | Path = DEFAULT_ROOT) -> Path:
    """The default run directory ``root/<experiment>-<hash>``."""
    return Path(root) / f"{experiment}-{config_hash(experiment, config)}"


def write_bytes(path: Path, data: bytes) -> None:
    """Atomic write: a temporary file in the same directory, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (NaN/inf are refused: a result is a number or explicitly null)."""
    write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomic CSV write; the header is the union of the rows' keys in first-seen order."""
    header: list[str] = []
    for row in rows:
        header += [k for k in row if k not in header]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    write_bytes(path, buf.getvalue().encode())


def write_figure(path: Path, fig: Figure) -> None:
    """Atomic PNG write of a matplotlib figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    write_bytes(path, buf.getvalue())


def git_commit() -> str:
    """The source tree's commit ('+dirty' if modified), or 'unknown' outside a checkout."""
    src = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=src,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(device: torch.device | str, wall_time_s: float, seeds: list[int]) -> dict[str, Any]:
    """Version, commit, seeds, device, wall time and library versions of a run."""
    return {
        "featavg_version": __version__,
        "git_commit": git_commit(),
        "seeds": seeds,
        "device": str(device),
        "wall_time_s": round(wall_time_s, 3),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
    }


def cached_summary(
    directory: Path, experiment: str, config: dict[str, Any]
) -> dict[str, Any] | None:
    """The finished run's summary if ``directory`` holds this very experiment and config."""
    path = directory / "summary.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if summary.get("experiment") != experiment or summary.get("config") != config:
        return None
    if summary.get("provenance", {}).get("featavg_version") != __version__:
        return None
    return summary
