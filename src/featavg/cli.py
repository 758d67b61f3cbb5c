"""The ``featavg`` command line: list, show-config, run."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from featavg.config import ConfigError, add_config_arguments, build_config, parse_overrides


def _add_config_args(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, "number of independent replicates (shortcut for --set seeds=S)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="featavg",
        description="Feature averaging (Li et al., ICLR 2025): reproduce and extend.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list experiments with run time and data needs")
    show = sub.add_parser("show-config", help="print the effective config of an experiment")
    _add_config_args(show)
    run = sub.add_parser("run", help="run an experiment into its run directory")
    _add_config_args(run)
    run.add_argument(
        "--out", metavar="DIR", help="run directory (default: runs/<experiment>-<config hash>)"
    )
    run.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    run.add_argument("--force", action="store_true", help="recompute even if cached")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    rep = sub.add_parser(
        "reproduce", help="run every synthetic experiment (cached) and write the report"
    )
    rep.add_argument("--out", default="runs", metavar="DIR", help="runs root (default: runs)")
    rep.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    rep.add_argument("--force", action="store_true", help="recompute even if cached")
    rep.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub) -> None:
    """The sweep and report subcommands live beside their implementations."""
    from featavg.report import add_report_parser
    from featavg.sweep import add_sweep_parser

    add_sweep_parser(sub)
    add_report_parser(sub)


def _overrides(args) -> dict:
    overrides = parse_overrides(args.overrides)
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from featavg.experiments.registry import EXPERIMENTS, get_experiment

    try:
        if args.command == "list":
            for exp in EXPERIMENTS.values():
                print(
                    f"{exp.name:24s} {exp.description}\n{'':24s} time: {exp.runtime}; "
                    f"data: {exp.data}"
                )
            return 0
        if args.command == "reproduce":
            from featavg.reproduction import reproduce

            start = time.perf_counter()
            _, report = reproduce(args.out, args.device, args.force, progress=not args.quiet)
            print(f"reproduce: done in {time.perf_counter() - start:.1f} s -> {report}")
            return 0
        if args.command == "sweep":
            from featavg.sweep import sweep_command

            return sweep_command(args)
        if args.command == "report":
            from featavg.report import report_command

            return report_command(args)
        exp = get_experiment(args.experiment)
        cfg = build_config(exp.config_cls, _overrides(args), args.config_file)
        if args.command == "show-config":
            print(json.dumps(cfg.model_dump(mode="json"), indent=2))
            return 0
        from featavg.experiments.runner import run_experiment

        result = run_experiment(
            exp.name,
            config=cfg,
            out=args.out,
            device=args.device,
            force=args.force,
            progress=not args.quiet,
        )
    except (ConfigError, ValueError) as err:
        print(f"featavg: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    state = "cached" if result.cached else "done"
    print(f"{exp.name}: {state} -> {result.directory}/summary.json")
    return 0


def entry() -> None:
    """Console-script entry point: ``main`` with a quiet exit when stdout is closed early
    (e.g. ``featavg show-config X | head``)."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    if "torch" in sys.modules:
        # Interpreter shutdown after importing torch spends ~0.5 s in libtorch's C++ static
        # destructors. Every result file is written atomically and closed by now, pools
        # and clusters are shut down by their `with` blocks, so skip the teardown.
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
