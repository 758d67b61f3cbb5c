"""The ``featavg`` argument parser: every subcommand and its options (nothing here imports
torch: the parser is built before the thread policy lets torch load)."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from featavg.config import ConfigError
from featavg.device import DEFAULT_DEVICE, DEVICES

# ---------------------------------------------------------------- options


def _add_experiment_options(p: argparse.ArgumentParser, seeds_help: str) -> None:
    """EXPERIMENT and its config: --set, --config, --seeds (run, show-config, sweep)."""
    p.add_argument("experiment", help="experiment name (see `featavg list`)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set train.lr=0.01 (repeatable)",
    )
    p.add_argument(
        "--config", dest="config_file", metavar="FILE", help="TOML or YAML file with config fields"
    )
    p.add_argument("--seeds", type=int, metavar="S", help=seeds_help)
    p.add_argument(
        "--preset",
        metavar="NAME",
        help="named overrides of the experiment, e.g. paper or quick (see show-config "
        "--explain); --config and --set apply on top",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """How runs execute: --device, --threads, --force, --quiet (run, sweep, reproduce)."""
    from featavg.threads import THREADS_HELP

    p.add_argument(
        "--device",
        default=DEFAULT_DEVICE,
        help=f"{DEVICES} (default {DEFAULT_DEVICE}: CUDA when available); checked even when "
        "the run is cached",
    )
    p.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
    p.add_argument("--force", action="store_true", help="recompute even if cached")
    p.add_argument(
        "--allow-large",
        action="store_true",
        help="run even when the estimated memory or time exceeds what this machine has "
        "(run, sweep, train: refused by default, with the estimate and the limit)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars and no results table: only the final line",
    )


class _VersionAction(argparse.Action):
    """``--version``: the package version and, in a git checkout, its commit (looked up
    only when asked)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from featavg import __version__
        from featavg.runs import git_commit

        commit = git_commit()
        print(f"featavg {__version__}" + (f" (git {commit})" if commit != "unknown" else ""))
        parser.exit()


def _add_sweep_options(p: argparse.ArgumentParser, executors: list[str]) -> None:
    p.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="a config field and its values, e.g. --grid train.lr=1e-3,1e-2 (repeatable; "
        "the first key is the figure's x axis)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="sweep directory (default: runs/sweep-<experiment>-<hash>)"
    )
    p.add_argument(
        "--executor",
        choices=executors,
        default="local",
        help="local (in-process, default), process (a process pool) or dask (a cluster)",
    )
    p.add_argument(
        "--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://host:8786"
    )
    p.add_argument(
        "--workers", type=int, metavar="N", help="pool size for --executor process (default 2)"
    )
    p.add_argument(
        "--metric",
        dest="metrics",
        action="append",
        metavar="KEY",
        help="summary key to plot (repeatable; default: up to 4 that vary across cells)",
    )


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are a ConfigError (one line, exit code 2), as
    bad config values are, instead of the usage text and the error; its subparsers too."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see {self.prog} --help)")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # Python 3.11's argparse drops a '--' given as ``--option=--`` and hands the
        # command an empty list; '--' is what was typed, so it is the value (then checked
        # like any other), as newer Pythons have it
        if arg_strings == ["--"] and action.option_strings and action.nargs is None:
            value = self._get_value(action, "--")
            self._check_value(action, value)
            return value
        return super()._get_values(action, arg_strings)


def build_parser() -> argparse.ArgumentParser:
    """The ``featavg`` argument parser with every subcommand."""
    from featavg.report import add_report_parser
    from featavg.sweep.executors import EXECUTORS

    parser: argparse.ArgumentParser = _Parser(
        prog="featavg",
        description="Feature averaging (Li et al., ICLR 2025): reproduce and extend.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, nargs=0, help="print the version (and git commit)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list experiments with run time and data needs")
    replicates = "number of independent replicates (shortcut for --set seeds=S)"
    show = sub.add_parser("show-config", help="print the effective config of an experiment")
    _add_experiment_options(show, replicates)
    show.add_argument(
        "--explain",
        action="store_true",
        help="list every field: dotted name, value, type, allowed values, description",
    )
    show.add_argument(
        "--reproduce",
        action="store_true",
        help="what `featavg reproduce` runs for it: its overrides, seeds, effective config",
    )
    run = sub.add_parser("run", help="run an experiment into its run directory")
    _add_experiment_options(run, replicates)
    run.add_argument(
        "--out", metavar="DIR", help="run directory (default: runs/<experiment>-<config hash>)"
    )
    run.add_argument(
        "--data-dir",
        metavar="DIR",
        help="the real-data experiments' image files in torchvision's layout (shortcut for "
        "--set train.data_dir=DIR; a directory without the files is an error, never a "
        "stand-in)",
    )
    run.add_argument(
        "--verify",
        choices=("none", "autoattack"),
        help="the real-data experiments: check the curves against AutoAttack at the three "
        "largest radii (shortcut for --set attack.verify=autoattack; the autoattack extra)",
    )
    _add_run_options(run)
    sweep = sub.add_parser(
        "sweep",
        help="run an experiment over a grid of config values (local, processes or Dask)",
        description="Run an experiment at every point of a grid; cells are cached runs, so "
        "an interrupted sweep resumes where it stopped.",
    )
    _add_experiment_options(sweep, "replicates per cell (one ensemble)")
    _add_sweep_options(sweep, list(EXECUTORS))
    _add_run_options(sweep)
    add_report_parser(sub)
    _add_train_parser(sub)
    from featavg.probing.cli import add_probe_parser  # no torch: the parser only

    add_probe_parser(sub)
    rep = sub.add_parser(
        "reproduce", help="run every synthetic experiment (cached) and write the report"
    )
    rep.add_argument("--out", default="runs", metavar="DIR", help="runs root (default: runs)")
    rep.add_argument(
        "--real",
        action="store_true",
        help="also run the real-data experiments (MNIST, CIFAR-10) after the synthetic ones: "
        "trained image models, minutes each on a CPU; stand-in data where the files are absent",
    )
    _add_run_options(rep)
    return parser


def _add_train_parser(sub: Any) -> None:
    """``featavg train``: one image model into the trained-model cache."""
    from featavg.trained_models import PRESETS

    p = sub.add_parser(
        "train",
        help="train one image model (ResNet-18, CNN, MLP) and keep its checkpoint",
        description="Train one model on one dataset and grouping into runs/models/<name>-<hash>"
        "/ (model.pt, summary.json, epochs.csv): train once, attack or probe many times. "
        "Cached like every run; an interrupted training resumes from its last epoch.",
    )
    p.add_argument(
        "--preset", metavar="NAME", help=f"the paper's recipe or a CPU preset: {', '.join(PRESETS)}"
    )
    p.add_argument("--data", dest="dataset", metavar="NAME", help="dataset (see show-config)")
    p.add_argument("--data-dir", metavar="DIR", help="dataset files in torchvision's layout")
    p.add_argument("--grouping", metavar="G", help="parity, halves, a JSON/TOML file or 10 ints")
    p.add_argument("--labels", choices=["coarse", "fine"], help="coarse (grouping) or fine")
    p.add_argument("--model", metavar="NAME", help="builtin model, e.g. resnet18-mnist, cnn")
    p.add_argument("--epochs", type=int, metavar="E", help="shortcut for --set sgd.epochs=E")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field, e.g. --set sgd.lr=0.05 or --set train_size=5000 (repeatable)",
    )
    p.add_argument("--config", dest="config_file", metavar="FILE", help="TOML or YAML file")
    p.add_argument("--root", default="runs", metavar="DIR", help="runs root (default: runs)")
    p.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue an interrupted training from its last epoch checkpoint (default: on)",
    )
    _add_run_options(p)
