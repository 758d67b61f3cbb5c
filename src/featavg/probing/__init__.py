"""The feature-averaging probe: any PyTorch model, any layer (``featavg probe``, and the
function ``featavg.probe``).

    result = featavg.probe(model, dataset, grouping="parity", layer="net.fc")
    result.summary["averaging_index"], result.group_cosines

:func:`probe` runs the model over the data with a hook on the layer, keeps running per-class
sums of the layer's input (never every activation), and measures: the class means mu_j, the
cosines cos(w_r, mu_j) of the layer's units with them and their Fig. 2c/d averages per
output, the averaging index (1 for an exact average of a group's features, 1/|J_s| for a
single one), a k-way linear probe of the fine labels beside the model's coarse accuracy,
and optionally a robustness curve. Modules: :mod:`.capture` (hooks, running sums),
:mod:`.measures` (the formulas), :mod:`.data` (accepted inputs), :mod:`.options` (what is
measured: :class:`ProbeOptions`; where it is kept: :class:`ProbeRun`), :mod:`.core`
(:func:`probe`: measures and returns, writes nothing), :mod:`.cached` (:func:`probe_cached`:
the same through the run store's one door), :mod:`.outputs` and :mod:`.run` (summary,
tables, figure, run directory), :mod:`.loading` (models from checkpoints or factories) and
:mod:`.cli` (``featavg probe``). Importing this package is cheap; torch loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from featavg.probing.cached import probe_cached
    from featavg.probing.core import ProbeResult, probe
    from featavg.probing.options import ProbeOptions, ProbeRun

__all__ = ["ProbeOptions", "ProbeResult", "ProbeRun", "probe", "probe_cached"]

_HOMES = {
    "ProbeOptions": "options",
    "ProbeRun": "options",
    "ProbeResult": "core",
    "probe": "core",
    "probe_cached": "cached",
}


def __getattr__(name: str) -> Any:
    # lazy: the CLI imports featavg.probing.cli before the thread policy lets torch load
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"featavg.probing.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'featavg.probing' has no attribute {name!r}")
