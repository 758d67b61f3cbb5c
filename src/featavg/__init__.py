"""featavg: feature averaging in two-layer ReLU networks (Li, Pan, Lyu, Li; ICLR 2025).

Gradient descent on coarse (binary) labels makes a two-layer ReLU net learn the average of
the class's cluster features; that average is the direction an adversary exploits.
Fine-grained (cluster) labels make it learn each feature and become far more robust.

The notebook API (each mirrors a CLI command and shares its run cache): :func:`run`,
:func:`list_experiments`, :func:`show_config`, :func:`run_sweep`, :func:`write_report`,
:func:`reproduce`, :func:`train` (an image model, cached in ``runs/models``) and
:func:`probe` (feature averaging in any model at one layer);
:func:`load` reads a finished run directory back (summary, per-seed DataFrame, tables,
figure paths). Importing the package is cheap; torch loads on first use.

Where things live: :mod:`featavg.data`, :mod:`featavg.models`, :mod:`featavg.training`,
:mod:`featavg.attacks`, :mod:`featavg.metrics` and :mod:`featavg.theory` (the science);
:mod:`featavg.experiments` (one module per experiment and its registry),
:mod:`featavg.trained_models` (``featavg train``: image models cached by config and data),
:mod:`featavg.sweep` (grids of runs), :mod:`featavg.report` and :mod:`featavg.plots`
(HTML report, figures); :mod:`featavg.config` (typed configs, :class:`ConfigError`),
:mod:`featavg.runs` (run directories), :mod:`featavg.device`, :mod:`featavg.api` (the
functions above), :mod:`featavg.loading` (:func:`load`), :mod:`featavg.cli` (the ``featavg``
command) with :mod:`featavg.headline` (numbers beside the theory), :mod:`featavg.explain`
(``show-config --explain``) and :mod:`featavg.progress` (progress bars).
"""

from featavg._version import __version__
from featavg.api import (
    RunOutput,
    list_experiments,
    probe,
    reproduce,
    run,
    run_sweep,
    show_config,
    train,
    write_report,
)
from featavg.loading import LoadedRun, load

__all__ = [
    "__version__",
    "LoadedRun",
    "RunOutput",
    "list_experiments",
    "load",
    "probe",
    "reproduce",
    "run",
    "run_sweep",
    "show_config",
    "train",
    "write_report",
]
