"""Device selection: ``auto`` is CUDA when available, else CPU.

A device name is user input (``--device``), so a bad or unavailable one is a
:class:`~featavg.config.ConfigError`. :func:`check_device_name` checks the spelling without
importing torch (a sweep's client checks it for workers elsewhere); :func:`resolve_device`
also checks that this machine has the device.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from featavg.config import ConfigError

if TYPE_CHECKING:
    import torch

DEVICES = "auto, cpu, cuda or cuda:N"

# the default of every command and API function that runs something
DEFAULT_DEVICE = "auto"


def check_device_name(name: str) -> str:
    """``name`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; else a ConfigError."""
    if name in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", name):
        return name
    raise ConfigError(f"device: must be {DEVICES}, got {name!r}")


def resolve_device(name: str = DEFAULT_DEVICE) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> torch.device; a ConfigError if this machine
    lacks it."""
    import torch

    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device: {name!r} requested but CUDA is not available; use cpu or auto"
            )
        count = torch.cuda.device_count()
        if name != "cuda" and int(name.split(":")[1]) >= count:
            raise ConfigError(
                f"device: {name!r} requested but this machine has {count} CUDA device(s)"
            )
    return torch.device(name)
