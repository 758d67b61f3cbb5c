"""The ``featavg`` command line: list, show-config, run, sweep, report, reproduce, train.

``featavg run`` says what happened: the headline numbers beside the theory (agrees /
deviates), the figures, then one last line ``EXPERIMENT: done|cached -> DIR/summary.json``
(``--quiet`` prints only that line). ``featavg show-config EXP --explain`` describes every
config field; ``--reproduce`` shows what ``featavg reproduce`` runs. ``featavg --version``.

Exit codes: 0 on success; 2 on bad input, i.e. a usage error (argparse) or a
:class:`~featavg.config.ConfigError` (one line on stderr naming the field and what is
allowed; also a config estimated too large for the machine without ``--allow-large``); 3
when a valid config's run failed (:class:`~featavg.faults.RunFailed`: divergence, NaN,
degenerate data; one line, nothing saved), and for ``sweep`` when any cell failed (the
others completed); 1 on anything else, which is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from featavg.config import MAX_MESSAGE, ConfigError, build_config, error_line, parse_overrides
from featavg.device import DEFAULT_DEVICE, DEVICES
from featavg.faults import RUN_FAILED_EXIT, RunFailed, one_line

if TYPE_CHECKING:
    from featavg.experiments.spec import Experiment

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
        from featavg.store import git_commit

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


# ---------------------------------------------------------------- commands


def _overrides(args: argparse.Namespace, exp: Experiment) -> dict[str, Any]:
    """The preset, then --set and --seeds on top (a --config file sits in between)."""
    overrides = parse_overrides(args.overrides)
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    return _with_preset(exp, args.preset, overrides)


def _with_preset(exp: Experiment, preset: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """Preset overrides with ``overrides`` merged on top. A --config file is applied after
    both by build_config, so it overrides the preset too only where --set does not."""
    from featavg.config import deep_merge

    return deep_merge(exp.preset(preset), overrides)


def _list(args: argparse.Namespace) -> int:
    from featavg.experiments.registry import EXPERIMENTS

    for exp in EXPERIMENTS.values():
        print(f"{exp.name:24s} {exp.description}\n{'':24s} time: {exp.runtime}; data: {exp.data}")
    return 0


def _show_config(args: argparse.Namespace) -> int:
    from featavg.experiments.registry import get_experiment
    from featavg.explain import explain_lines, reproduce_lines

    exp = get_experiment(args.experiment)
    if args.reproduce:
        if args.overrides or args.config_file or args.seeds is not None or args.preset:
            raise ConfigError(
                "--reproduce: shows the preset `featavg reproduce` runs, which takes no "
                "--set, --config or --seeds; drop them"
            )
        preset = exp.reproduce
        cfg = build_config(exp.config_cls, dict(preset)) if preset is not None else None
        print("\n".join(reproduce_lines(exp, cfg)))
        if cfg is None:
            return 0
        print("effective config:")
    else:
        cfg = build_config(exp.config_cls, _overrides(args, exp), args.config_file)
    if args.explain:
        print(f"{exp.name}: name = value  (type; allowed values), then its description")
        print("(rules across fields, e.g. data.k <= data.d, are checked when a config is built)")
        print("\n".join(explain_lines(cfg)))
        if exp.presets:
            print(f"presets (--preset): {', '.join(exp.presets)}")
    else:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    return 0


def _configure_threads(args: argparse.Namespace) -> None:
    """Apply the thread policy (``--threads``, else its default) before anything runs."""
    from featavg.threads import configure

    configure(args.threads)


def _run(args: argparse.Namespace) -> int:
    from featavg.device import resolve_device
    from featavg.experiments.registry import get_experiment
    from featavg.experiments.runner import run_experiment
    from featavg.headline import run_lines

    _configure_threads(args)
    exp = get_experiment(args.experiment)
    config = build_config(exp.config_cls, _overrides(args, exp), args.config_file)
    resolve_device(args.device)  # before the cache lookup: a cached run checks it too
    result = run_experiment(
        exp.name,
        config=config,
        out=args.out,
        device=args.device,
        force=args.force,
        progress=not args.quiet,
        allow_large=args.allow_large,
    )
    if not args.quiet:
        print("\n".join(run_lines(result.summary, result.directory, result.cached)))
    state = "cached" if result.cached else "done"
    print(f"{exp.name}: {state} -> {result.directory}/summary.json")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from featavg.api import run_sweep
    from featavg.experiments.registry import get_experiment
    from featavg.faults import is_failure
    from featavg.sweep import parse_grid

    _configure_threads(args)
    result = run_sweep(
        args.experiment,
        parse_grid(args.grid),
        seeds=args.seeds,
        overrides=_with_preset(
            get_experiment(args.experiment), args.preset, parse_overrides(args.overrides)
        ),
        config_file=args.config_file,
        out=args.out,
        executor=args.executor,
        scheduler=args.scheduler,
        workers=args.workers,
        device=args.device,
        force=args.force,
        progress=not args.quiet,
        metrics=args.metrics,
        allow_large=args.allow_large,
    )
    cached = sum(c.cached for c in result.cells)
    failed = sum(1 for c in result.cells if c.summary is not None and is_failure(c.summary))
    note = f", {failed} failed: see the status and reason columns" if failed else ""
    print(
        f"{args.experiment}: {len(result.cells)} cells ({cached} cached{note}) -> "
        f"{result.csv_path} and {result.figure_path.name}"
    )
    return RUN_FAILED_EXIT if failed else 0


def _train(args: argparse.Namespace) -> int:
    from featavg.device import resolve_device
    from featavg.trained_models import job_config, train_model

    _configure_threads(args)
    overrides = parse_overrides(args.overrides)
    for key in ("dataset", "data_dir", "grouping", "labels", "model"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.epochs is not None:
        overrides.setdefault("sgd", {})["epochs"] = args.epochs
    cfg = job_config(args.preset, overrides, args.config_file)
    resolve_device(args.device)
    trained = train_model(
        cfg,
        root=args.root,
        device=args.device,
        force=args.force,
        resume=args.resume,
        progress=not args.quiet,
        allow_large=args.allow_large,
    )
    s = trained.summary
    if not args.quiet:
        if s.get("stand_in"):
            print(f"data: {s['stand_in']}")
        print(
            f"{s['model']} on {s['data']['name']}, {s['labels']} labels ({s['grouping']['name']})"
        )
        print(f"{'epoch':>5} {'loss':>8} {'train acc':>9} {'test acc':>8} {'img/s':>8}")
        for row in s["epochs"]:
            print(
                f"{row['epoch']:>5} {row.get('loss', float('nan')):>8.4f} "
                f"{row.get('train_acc', float('nan')):>9.4f} "
                f"{row.get('test_acc', float('nan')):>8.4f} {row.get('images_per_s', 0):>8.0f}"
            )
    state = "cached" if trained.cached else "done"
    print(f"train: {state} -> {trained.checkpoint}")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from featavg.probing.cli import probe_command

    return probe_command(args)


def _report(args: argparse.Namespace) -> int:
    from featavg.report import report_command

    return report_command(args)


def _reproduce(args: argparse.Namespace) -> int:
    """Run the plan, write the page, end with the headline of its verdicts and the commands
    that open the page and call featavg (:func:`featavg.reproduction.headline`)."""
    from featavg.device import resolve_device
    from featavg.reproduction import headline, reproduce

    _configure_threads(args)
    resolve_device(args.device)  # checked first, cached runs included
    start = time.perf_counter()
    results, report = reproduce(
        args.out, args.device, args.force, progress=not args.quiet, real=args.real
    )
    elapsed = time.perf_counter() - start
    print("\n".join(headline([r.directory for r in results], report, elapsed)))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": _list,
    "show-config": _show_config,
    "run": _run,
    "sweep": _sweep,
    "report": _report,
    "train": _train,
    "probe": _probe,
    "reproduce": _reproduce,
}


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` describes; returns its exit code (2 on a ConfigError or a
    usage error, with one line of at most :data:`~featavg.config.MAX_MESSAGE` characters on
    stderr). Any other exception propagates: it is a bug."""
    from featavg.threads import passive_wait

    passive_wait()  # first thing: OpenMP reads it once, when torch loads
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except ConfigError as err:
        # one printable line of bounded length, whatever the error echoes of the input
        prefix = "featavg: error: "
        print(prefix + error_line(str(err), MAX_MESSAGE - len(prefix)), file=sys.stderr)
        return 2
    except RunFailed as err:  # a valid config whose run failed (featavg.faults): nothing saved
        print(f"featavg: run failed: {one_line(err)}", file=sys.stderr)
        return RUN_FAILED_EXIT


def entry() -> None:
    """Console-script entry point: :func:`main`, with a quiet exit when stdout is closed
    early (e.g. ``featavg show-config X | head``)."""
    try:
        code = main()
        sys.stdout.flush()  # a reader that went away shows up here, inside the try
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    # Interpreter shutdown runs several full garbage collections, each walking the ~165k
    # objects torch creates (~0.5 s in all). Collect once now, then freeze the survivors so
    # those passes skip them; atexit handlers, finalizers and file flushing still run.
    gc.collect()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
