"""What an experiment declares about itself: one :class:`Experiment` object per module.

An experiment module defines its config class, its ``run`` and a module-level
``EXPERIMENT = Experiment(...)`` that states everything the rest of featavg needs:

* the claim (the paper's statement, what we add) and the captions of its figures;
* its checks: measured summary keys beside a closed-form value and a tolerance;
* the tables it writes and the columns each must have (the first table is the main one);
* its presets: ``featavg reproduce``'s, a seconds-long ``tiny`` one for tests, and the
  user's (``paper``, ``quick``);
* what a run costs (memory, time: checked before it runs), its data needs, expected run
  time, and the fields a sweep may batch into one ensemble.

The registry, ``reproduce``, the API's main table, the report (order, prose, checks) and
the test that runs every experiment on its tiny config all read these objects, so adding an
experiment touches its module, its test and one registry line. Nothing here imports torch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel

from featavg.config import ConfigError, did_you_mean

if TYPE_CHECKING:
    from featavg.experiments.output import ExperimentOutput
    from featavg.runs.context import RunContext
    from featavg.runs.guards import ResourceEstimate


@dataclass(frozen=True)
class Expected:
    """A deviation from the closed form that the paper or our own closed forms predict.

    reason: why, in words a reader of the report can follow (the paper's statement, or the
    regime the closed form assumes and this setting leaves). side: where the measured value
    is predicted to lie against the theory, "above", "below" or "either"; a deviation on
    the other side is not explained by the reason and stays an unexpected one.
    """

    reason: str
    side: Literal["above", "below", "either"] = "either"


@dataclass(frozen=True)
class Check:
    """One row of "key numbers beside the theory".

    key: the summary key of the measured mean (its ``<key>_ci95`` gives the interval).
    theory: the closed-form value (computed from the config), or the name of the summary
    key that holds it (a ``theory_...`` entry the run writes), or None (reported without a
    verdict). tol: the tolerance, absolute or (``relative``) a fraction of |theory|.
    expected: set when the paper or our closed forms predict that this value deviates from
    ``theory`` (the report then says "deviates as expected", with the reason).
    """

    label: str
    key: str
    theory: float | str | None = None
    theory_label: str = ""
    tol: float = 0.0
    relative: bool = False
    note: str = ""
    expected: Expected | None = None

    def keys(self) -> tuple[str, ...]:
        """The summary keys this check reads."""
        return (self.key, self.theory) if isinstance(self.theory, str) else (self.key,)


def no_expected(cfg: Any) -> Mapping[str, Expected]:
    """The default of a grid check: no setting is predicted to deviate."""
    return {}


@dataclass(frozen=True)
class GridCheck:
    """Verdict column of a table of settings (e.g. the ablations): in the summary entry
    ``entry`` ({setting: {metric: value}}), ``metric`` of every row against the row's
    ``row_theory`` key, else the summary's ``theory_key``. ``expected(cfg)``: the settings
    (by name) whose deviation the paper or our closed forms predict, with the reason."""

    entry: str
    metric: str
    row_theory: str
    theory_key: str
    theory_label: str
    tol: float
    expected: Callable[[Any], Mapping[str, Expected]] = no_expected


@dataclass(frozen=True)
class Claim:
    """What a run is about: its title, the paper's statement (in the paper's notation) and
    what our exact computations add. Shown at the top of the run's report section."""

    title: str
    paper: str
    beyond: str = ""


def no_checks(cfg: Any) -> list[Check]:
    """The default: an experiment without closed-form checks."""
    return []


def no_keys(cfg: Any) -> tuple[str, ...]:
    """The default: no summary keys declared beyond those the checks read."""
    return ()


C = TypeVar("C", bound=BaseModel)

#: one finished single-seed run of an experiment whose seeds are runs: (directory, summary)
SeedRun = tuple[Path, dict[str, Any]]

#: the named presets featavg itself reads: ``featavg reproduce`` runs every experiment that
#: has REPRODUCE (the synthetic ones, a couple of minutes in all), ``featavg reproduce
#: --real`` also those with REPRODUCE_REAL (trained image models, CPU minutes each); the
#: tests run every experiment on TINY (seconds). A preset that is absent means "not part of
#: it"; ``{}`` means "with the defaults".
REPRODUCE, REPRODUCE_REAL, TINY = "reproduce", "reproduce-real", "tiny"


@dataclass(frozen=True)
class Experiment(Generic[C]):
    """Everything featavg knows about one experiment (see the module docstring), generic
    in its config class ``C`` so that a type checker links the config to its run.

    name: the CLI name; description: one line for ``featavg list``; config_cls: its frozen
    pydantic config (defaults = the paper, or a CPU-sized protocol for real data);
    run(cfg, ctx): the experiment itself (ctx: :class:`~featavg.runs.context.RunContext`);
    cost(cfg): a coarse estimate of the memory and time a run of ``cfg`` needs
    (:class:`~featavg.runs.guards.ResourceEstimate`: every knob that scales the work enters
    it), checked before it runs. figures: figure name (its PNG without suffix) -> caption,
    in report order. tables: table name (its CSV without suffix) -> columns every row set
    must have; the first is the main table (``featavg.run(...).metrics``).
    checks(cfg): the rows of "key numbers beside the theory" for a config.
    summary_keys(cfg): further summary keys the run must write (beyond the checks').
    grid: a verdict column for a table of settings in the summary.
    presets: named overrides a user picks with ``--preset NAME`` (e.g. ``paper``: the
    authors' recipe, meant for a GPU; ``quick``: the same protocol in CPU minutes), and the
    ones featavg reads itself: :data:`REPRODUCE`, :data:`REPRODUCE_REAL`, :data:`TINY`.
    runtime: wall time on 2 CPU cores at the default config; data: what data it needs.
    run_batch / batch_fields: several configs differing only in ``batch_fields`` (dotted)
    run as one ensemble (sweeps use it).
    pool(cfg, seed_runs, ctx): for an experiment whose seeds are separate training runs (the
    real-data ones): with ``seeds`` > 1 the runner first makes each seed its own cached run
    (``seed=s, seeds=1``; adding seeds reuses the finished ones, a sweep may compute them as
    separate cells), then ``pool`` makes the run's output from those (:data:`SeedRun`). None:
    ``run`` takes every seed itself (the synthetic experiments: one ensemble).
    paper_refs: ids of the paper's figures this experiment reproduces, in the data file of
    :mod:`featavg.reference` (e.g. ``("fig2ab",)``); the report shows their published values
    beside the run's.
    """

    name: str
    description: str
    config_cls: type[C]
    run: Callable[[C, RunContext], ExperimentOutput]
    cost: Callable[[C], ResourceEstimate]
    claim: Claim
    figures: Mapping[str, str]
    tables: Mapping[str, Sequence[str]] = field(default_factory=dict)
    checks: Callable[[C], list[Check]] = no_checks
    summary_keys: Callable[[C], Sequence[str]] = no_keys
    grid: GridCheck | None = None
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    runtime: str = "unknown"
    data: str = "none (synthetic)"
    run_batch: Callable[[list[C], RunContext], list[ExperimentOutput]] | None = None
    batch_fields: tuple[str, ...] = ()
    paper_refs: tuple[str, ...] = ()
    pool: Callable[[C, Sequence[SeedRun], RunContext], ExperimentOutput] | None = None

    def preset(self, name: str | None) -> dict[str, Any]:
        """The overrides of preset ``name`` ({} for None); a ConfigError naming the allowed
        presets otherwise."""
        if name is None:
            return {}
        if name not in self.presets:
            allowed = ", ".join(self.presets) or "none (this experiment has no presets)"
            hint = did_you_mean(name, self.presets)
            raise ConfigError(
                f"--preset: {self.name} has no preset {name!r}{hint}; allowed: {allowed}"
            )
        return copy.deepcopy(dict(self.presets[name]))

    @property
    def tiny(self) -> dict[str, Any]:
        """The :data:`TINY` preset: a run of seconds (every experiment has one)."""
        return self.preset(TINY)

    def estimate(self, cfgs: Sequence[C]) -> ResourceEstimate:
        """What running ``cfgs`` as one ensemble needs: their costs added."""
        parts = [self.cost(c) for c in cfgs]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    @property
    def main_table(self) -> str | None:
        """The table ``featavg.run(...).metrics`` returns."""
        return next(iter(self.tables), None)

    def declared_keys(self, cfg: C) -> list[str]:
        """Every summary key a run of ``cfg`` must write: the checks' and ``summary_keys``',
        plus the grid check's entry (each once, in that order)."""
        keys: list[str] = []
        for check in self.checks(cfg):
            keys += [k for k in check.keys() if k not in keys]
        keys += [k for k in self.summary_keys(cfg) if k not in keys]
        if self.grid is not None and self.grid.entry not in keys:
            keys.append(self.grid.entry)
        return keys
