"""Device selection: ``auto`` is CUDA when available, else CPU."""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> torch.device, with a clear error if unavailable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available; use cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"device: must be auto, cpu, cuda or cuda:N, got {name!r}")
    return torch.device(name)
