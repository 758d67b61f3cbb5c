"""Every experiment, by name: the ``EXPERIMENT`` object of each module listed here.

Adding an experiment: write its module (config class, ``run`` and ``EXPERIMENT``; see
:mod:`featavg.experiments.spec`), its test, and one line in :data:`MODULES`. The order of
:data:`MODULES` is the order of ``featavg list``, ``featavg reproduce`` and the report: the
paper's figures first, then our extensions, then the appendix.
"""

from __future__ import annotations

import importlib
from typing import Any

from featavg.config import ConfigError, did_you_mean
from featavg.experiments.spec import REPRODUCE, REPRODUCE_REAL, Experiment

MODULES = (
    "featavg.experiments.synthetic_alignment",
    "featavg.experiments.synthetic_robustness",
    "featavg.experiments.synthetic_scaling",
    "featavg.experiments.synthetic_ablations",
    "featavg.experiments.synthetic_dynamics",
    "featavg.experiments.synthetic_adversarial",
    "featavg.experiments.mnist_robustness",
    "featavg.experiments.mnist_linf",
    "featavg.experiments.cifar10_robustness",
    "featavg.experiments.cifar10_features",
)

EXPERIMENTS: dict[str, Experiment[Any]] = {}


def register(experiment: Experiment[Any]) -> Experiment[Any]:
    """Add an experiment (e.g. from a user's own module) under its name; returns it.
    A second experiment under a taken name is refused."""
    if not isinstance(experiment, Experiment):
        raise TypeError(f"register: expected an Experiment, got {type(experiment).__name__}")
    known = EXPERIMENTS.get(experiment.name)
    if known is not None and known is not experiment:
        raise ValueError(f"register: an experiment named {experiment.name!r} exists already")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def unregister(name: str) -> None:
    """Remove an experiment added with :func:`register` (tests use it to clean up)."""
    EXPERIMENTS.pop(name, None)


for _module in MODULES:
    register(importlib.import_module(_module).EXPERIMENT)


def get_experiment(name: str) -> Experiment[Any]:
    """The registered experiment, or a ConfigError listing the valid names."""
    if name not in EXPERIMENTS:
        hint = did_you_mean(name, EXPERIMENTS)
        raise ConfigError(f"experiment: unknown {name!r}{hint}; allowed: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def reproduce_plan(real: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """(name, overrides) of every experiment ``featavg reproduce`` runs, in registry order:
    those with a :data:`~featavg.experiments.spec.REPRODUCE` preset (the synthetic ones, a
    couple of minutes in all). ``real`` (``featavg reproduce --real``): then, after them,
    those with a :data:`~featavg.experiments.spec.REPRODUCE_REAL` preset (the real-data
    experiments: trained image models, CPU minutes to hours)."""
    names = [REPRODUCE, REPRODUCE_REAL] if real else [REPRODUCE]
    return [
        (e.name, e.preset(name))
        for name in names
        for e in EXPERIMENTS.values()
        if name in e.presets
    ]
