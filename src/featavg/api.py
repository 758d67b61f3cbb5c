"""The Python API: every CLI command as a function, sharing the same run cache.

    import featavg
    out = featavg.run("synthetic-robustness", seeds=5, train={"lr": 0.01})
    out.summary["radius50_binary"], out.metrics.head()

Overrides are keyword arguments: nested dicts (``train={"lr": 0.01}``) or double
underscores for dots (``train__lr=0.01``), exactly as ``--set train.lr=0.01``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featavg.config import nest
from featavg.device import DEFAULT_DEVICE
from featavg.loading import LoadedRun, load

if TYPE_CHECKING:
    from featavg.probing.core import ProbeResult
    from featavg.sweep import SweepResult
    from featavg.trained_models import TrainedModel


@dataclass(repr=False)
class RunOutput(LoadedRun):
    """What :func:`run` returns: the run read back as by :func:`featavg.load` (summary,
    per_seed, tables with the main one first, figures; ``metrics`` is the main table) and
    ``cached``: whether an earlier identical run was reused."""

    cached: bool = False

    def _state(self) -> str:
        return " (cached)" if self.cached else " (done)"


def _overrides(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword overrides, ``__`` for dots: ``train__lr=0.01`` -> ``{"train": {"lr": 0.01}}``."""
    return nest(kwargs, sep="__")


@dataclass(frozen=True)
class RunOptions:
    """How :func:`run` runs (never what it computes): the ``device``; ``force`` redoes a
    cached run; ``progress`` shows bars; ``allow_large`` lifts the memory/time guard."""

    device: str = DEFAULT_DEVICE
    force: bool = False
    progress: bool = False
    allow_large: bool = False


def _split_options(kwargs: dict[str, Any], cls: Any) -> dict[str, Any]:
    """Pop the keywords that name a field of the dataclass ``cls`` (no config field shares
    a name with one) and return them; what stays in ``kwargs`` is config."""
    names = {f.name for f in fields(cls)}
    return {k: kwargs.pop(k) for k in list(kwargs) if k in names}


def run(
    experiment: str,
    *,
    preset: str | None = None,
    out: str | Path | None = None,
    root: str | Path = "runs",
    config_file: str | Path | None = None,
    **kwargs: Any,
) -> RunOutput:
    """``featavg run EXPERIMENT``: run (or reuse the cached run of) one experiment.

    ``preset``: the experiment's named overrides (e.g. "quick"), under the others. The
    keywords ``device``, ``force``, ``progress`` and ``allow_large`` are
    :class:`RunOptions`; every other keyword is a config override (``seeds=5``,
    ``train={"lr": 0.01}`` or ``train__lr=0.01``). The device is checked first, so a bad or
    unavailable one is a ConfigError even when the run is cached. A config estimated beyond
    the machine's memory or time is a ConfigError unless ``allow_large``; a run that fails
    numerically raises :class:`featavg.faults.RunFailed`."""
    from featavg.config import deep_merge
    from featavg.experiments.registry import get_experiment
    from featavg.experiments.runner import run_experiment
    from featavg.runs.context import open_context

    opts = RunOptions(**_split_options(kwargs, RunOptions))
    ctx = open_context(opts.device, root, progress=opts.progress, allow_large=opts.allow_large)
    cfg = deep_merge(get_experiment(experiment).preset(preset), _overrides(kwargs))
    result = run_experiment(
        experiment, overrides=cfg, config_file=config_file, out=out, force=opts.force, ctx=ctx
    )
    loaded = load(result.directory)
    shared = {f.name: getattr(loaded, f.name) for f in fields(loaded)}
    return RunOutput(**shared, cached=result.cached)


def list_experiments() -> list[dict[str, str]]:
    """``featavg list``: name, description, run time and data needs of every experiment."""
    from featavg.experiments.registry import EXPERIMENTS

    return [
        {"name": e.name, "description": e.description, "runtime": e.runtime, "data": e.data}
        for e in EXPERIMENTS.values()
    ]


def show_config(
    experiment: str,
    config_file: str | Path | None = None,
    preset: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """``featavg show-config``: the effective config as a dict."""
    from featavg.config import build_config, deep_merge
    from featavg.experiments.registry import get_experiment

    exp = get_experiment(experiment)
    merged = deep_merge(exp.preset(preset), _overrides(overrides))
    return build_config(exp.config_cls, merged, config_file).model_dump(mode="json")


def reproduce(
    out: str | Path = "runs",
    device: str = DEFAULT_DEVICE,
    force: bool = False,
    progress: bool = True,
    real: bool = False,
) -> Path:
    """``featavg reproduce``: every synthetic experiment and the report; returns its path.
    ``real`` (``--real``): also, after them, the real-data experiments (MNIST, CIFAR-10;
    minutes each on a CPU, stand-in data where the files are absent). The device is checked
    first (cached runs included)."""
    from featavg.device import resolve_device
    from featavg.reproduction import reproduce as _reproduce

    resolve_device(device)
    return _reproduce(out, device, force, progress, real=real)[1]


def write_report(
    run_dirs: list[str | Path] | None = None,
    out: str | Path | None = None,
    root: str | Path = "runs",
) -> Path:
    """``featavg report``: one self-contained report.html over the given run directories."""
    from featavg.report import write_report as _write_report

    return _write_report(
        [Path(p) for p in run_dirs] if run_dirs else None, Path(out) if out else None, Path(root)
    )


def run_sweep(experiment: str, grid: dict[str, list[Any]], **kwargs: Any) -> SweepResult:
    """``featavg sweep``: every grid cell (with ``seeds`` replicates each) into its own
    cached run; see :func:`featavg.sweep.run_sweep` for the arguments, and give the
    :class:`featavg.sweep.SweepOptions` (``executor``, ``workers``, ``device``, ...) as
    keywords too. With the local or
    process executor the device is checked here first (cached cells included); a Dask
    cluster's workers check their own."""
    from featavg.device import resolve_device
    from featavg.sweep import SweepOptions
    from featavg.sweep import run_sweep as _run_sweep

    options = SweepOptions(**_split_options(kwargs, SweepOptions))
    if options.executor in ("local", "process"):
        resolve_device(options.device)
    return _run_sweep(experiment, grid, **kwargs, options=options)


def train(
    preset: str | None = None,
    *,
    root: str | Path = "runs",
    config_file: str | Path | None = None,
    device: str = DEFAULT_DEVICE,
    force: bool = False,
    resume: bool = True,
    progress: bool = False,
    allow_large: bool = False,
    **overrides: Any,
) -> TrainedModel:
    """``featavg train``: train (or reuse the cached) image model of ``preset`` <-
    ``config_file`` <- overrides (``sgd={"epochs": 2}`` or ``sgd__epochs=2``); returns the
    :class:`~featavg.trained_models.TrainedModel` (model in eval mode, summary, directory).
    A training estimated too large for the machine is refused unless ``allow_large``.

        m = featavg.train("mnist-quick", labels="fine")
        m.model(x), m.summary["final_test_acc"], m.checkpoint
    """
    from featavg.runs.context import open_context
    from featavg.trained_models import job_config, train_model

    ctx = open_context(device, root, progress=progress, allow_large=allow_large)
    cfg = job_config(preset, _overrides(overrides), config_file)
    return train_model(cfg, ctx, force=force, resume=resume)


def probe(
    model: Any,
    data: Any,
    fine_labels: Any = None,
    grouping: Any = "parity",
    *,
    layer: str,
    **options: Any,
) -> ProbeResult:
    """``featavg probe``: feature averaging in any ``nn.Module`` at the layer ``layer`` (a
    ``named_modules()`` name): class means of its input, cosines with its units, the
    averaging index, a linear probe of the fine labels.

    ``options``: the measurement settings of :class:`~featavg.probing.options.ProbeOptions`
    (class_means, centre, num_classes, class_names, probe_points, grad_points, robust_eps,
    robust_points, batch_size, seed) and how it runs, :class:`~featavg.probing.options.ProbeRun`
    (root or out: keep it in a cached run directory; force, device, progress, model_info).
    The result: :class:`~featavg.probing.core.ProbeResult`.

        r = featavg.probe(model, dataset, grouping="parity", layer="net.fc", root="runs")
        r.summary["averaging_index"], r.group_cosines
    """
    import dataclasses

    from featavg.config import ConfigError
    from featavg.probing.cached import probe_cached
    from featavg.probing.options import ProbeOptions, ProbeRun

    run_keys = {f.name for f in dataclasses.fields(ProbeRun)}
    option_keys = {f.name for f in dataclasses.fields(ProbeOptions)}
    unknown = sorted(set(options) - run_keys - option_keys)
    if unknown:
        allowed = ", ".join(sorted(run_keys | option_keys))
        raise ConfigError(f"probe: unknown option {unknown[0]!r}; allowed: {allowed}")
    how = {k: v for k, v in options.items() if k in run_keys}
    for key in ("root", "out"):
        if how.get(key) is not None:
            how[key] = Path(how[key])
    return probe_cached(
        model,
        data,
        grouping,
        layer=layer,
        fine_labels=fine_labels,
        options=ProbeOptions(**{k: v for k, v in options.items() if k in option_keys}),
        how=ProbeRun(**how),
    )
