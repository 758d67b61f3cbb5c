"""The run context: how a run executes, beside what it computes (its config).

An experiment's ``run(cfg, ctx)`` gets everything that is not science from here: the device,
the run store it lives in (where its trained models are cached: ``ctx.models_root``),
whether to show progress, whether the resource guards may be overridden, and named random
streams. Nothing here is part of a run's identity: the same config gives the same numbers
in any context (up to the device's floating-point behaviour).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featavg.runs.identity import DEFAULT_ROOT

if TYPE_CHECKING:
    import torch

MODELS = "models"  # the trained-model cache inside a run store


@dataclass(frozen=True)
class RunContext:
    """device: the resolved torch device; root: the run store (runs and sweeps under it,
    trained models under ``root/models``); progress: progress bars on stderr; allow_large:
    run even when the resource guards estimate more than the machine has."""

    device: torch.device
    root: Path = DEFAULT_ROOT
    progress: bool = False
    allow_large: bool = False

    @property
    def models_root(self) -> Path:
        """The trained-model cache of this run store (shared by every experiment in it and
        by ``featavg train --root ROOT``)."""
        return Path(self.root) / MODELS

    def with_(self, **changes: Any) -> RunContext:
        """A copy with ``changes`` (e.g. ``root=`` for a run written elsewhere)."""
        return dataclasses.replace(self, **changes)

    def generator(self, seed: int, stream: str) -> torch.Generator:
        """The named random stream ``stream`` of run ``seed``
        (:func:`featavg.seeding.generator`): draws never depend on call order."""
        from featavg.seeding import generator

        return generator(seed, stream)


def open_context(
    device: str = "auto",
    root: str | Path = DEFAULT_ROOT,
    *,
    progress: bool = False,
    allow_large: bool = False,
) -> RunContext:
    """A :class:`RunContext` with ``device`` resolved (a ConfigError when this machine lacks
    it: checked before any cache lookup, so a cached run checks it too)."""
    from featavg.device import resolve_device

    return RunContext(resolve_device(device), Path(root), progress, allow_large)
