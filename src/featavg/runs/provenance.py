"""Provenance: what every run records about the code, the machine and the libraries."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featavg._version import __version__
from featavg.runs import identity

if TYPE_CHECKING:
    import torch


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
    """Version, source fingerprint, commit, seeds, device, wall time and library versions."""
    return {
        "featavg_version": __version__,
        "source_fingerprint": identity.source_fingerprint(),
        "git_commit": git_commit(),
        "seeds": seeds,
        "device": str(device),
        "wall_time_s": round(wall_time_s, 3),
        "torch_version": _torch_version(),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
    }


def _torch_version() -> str:
    # imported here, not at module level: the CLI imports this module before it applies
    # the thread policy, which must come before torch starts its OpenMP runtime
    import torch

    return str(torch.__version__)
