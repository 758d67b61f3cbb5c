"""What each ``featavg`` subcommand does, given its parsed arguments; each returns its exit
code (see :mod:`featavg.cli`)."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from featavg.config import ConfigError, build_config, parse_overrides
from featavg.faults import RUN_FAILED_EXIT

if TYPE_CHECKING:
    from featavg.experiments.spec import Experiment

# ---------------------------------------------------------------- commands


def _overrides(args: argparse.Namespace, exp: Experiment[Any]) -> dict[str, Any]:
    """The preset, then --set, --seeds, --data-dir and --verify on top (a --config file
    sits in between)."""
    overrides = parse_overrides(args.overrides)
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    # the shortcut flags of the real-data experiments: (flag, config section, field, refusal)
    shortcuts = (
        ("--data-dir", "train", "data_dir", "reads no image files (it draws its data)"),
        ("--verify", "attack", "verify", "has no curves to check (real-data only)"),
    )
    for flag, section, field, refusal in shortcuts:
        value = getattr(args, field, None)
        if value is None:
            continue
        declared = exp.config_cls.model_fields.get(section)
        fields = getattr(declared.annotation, "model_fields", {}) if declared else {}
        if field not in fields:
            raise ConfigError(f"{flag}: {exp.name} {refusal}")
        overrides.setdefault(section, {})[field] = value
    return _with_preset(exp, args.preset, overrides)


def _with_preset(
    exp: Experiment[Any], preset: str | None, overrides: dict[str, Any]
) -> dict[str, Any]:
    """Preset overrides with ``overrides`` merged on top. A --config file is applied after
    both by build_config, so it overrides the preset too only where --set does not."""
    from featavg.config import deep_merge

    return deep_merge(exp.preset(preset), overrides)


def list_experiments(args: argparse.Namespace) -> int:
    from featavg.experiments.registry import EXPERIMENTS

    for exp in EXPERIMENTS.values():
        print(f"{exp.name:24s} {exp.description}\n{'':24s} time: {exp.runtime}; data: {exp.data}")
    return 0


def show_config(args: argparse.Namespace) -> int:
    from featavg.experiments.registry import get_experiment
    from featavg.explain import explain_lines, reproduce_lines

    exp = get_experiment(args.experiment)
    if args.reproduce:
        if args.overrides or args.config_file or args.seeds is not None or args.preset:
            raise ConfigError(
                "--reproduce: shows the preset `featavg reproduce` runs, which takes no "
                "--set, --config or --seeds; drop them"
            )
        from featavg.experiments.spec import REPRODUCE

        has = REPRODUCE in exp.presets
        cfg = build_config(exp.config_cls, exp.preset(REPRODUCE)) if has else None
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


def run(args: argparse.Namespace) -> int:
    from featavg.experiments.registry import get_experiment
    from featavg.experiments.runner import run_experiment
    from featavg.runs.context import open_context
    from featavg.terminal import run_lines

    _configure_threads(args)
    exp = get_experiment(args.experiment)
    config = build_config(exp.config_cls, _overrides(args, exp), args.config_file)
    # the device is resolved before the cache lookup: a cached run checks it too
    ctx = open_context(args.device, progress=not args.quiet, allow_large=args.allow_large)
    result = run_experiment(exp.name, config, out=args.out, force=args.force, ctx=ctx)
    if not args.quiet:
        print("\n".join(run_lines(result.summary, result.directory, result.cached)))
    state = "cached" if result.cached else "done"
    print(f"{exp.name}: {state} -> {result.directory}/summary.json")
    return 0


def sweep(args: argparse.Namespace) -> int:
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
    data = f" on {result.data_label}" if result.data_label else ""
    print(
        f"{args.experiment}{data}: {len(result.cells)} cells ({cached} cached{note}) -> "
        f"{result.csv_path} and {result.figure_path.name}"
    )
    return RUN_FAILED_EXIT if failed else 0


def train(args: argparse.Namespace) -> int:
    from featavg.runs.context import open_context
    from featavg.trained_models import job_config, train_model

    _configure_threads(args)
    overrides = parse_overrides(args.overrides)
    for key in ("dataset", "data_dir", "grouping", "labels", "model"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.epochs is not None:
        overrides.setdefault("sgd", {})["epochs"] = args.epochs
    cfg = job_config(args.preset, overrides, args.config_file)
    ctx = open_context(
        args.device, args.root, progress=not args.quiet, allow_large=args.allow_large
    )
    trained = train_model(cfg, ctx, force=args.force, resume=args.resume)
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


def probe(args: argparse.Namespace) -> int:
    from featavg.probing.cli import probe_command

    return probe_command(args)


def report(args: argparse.Namespace) -> int:
    from featavg.report import report_command

    return report_command(args)


def reproduce(args: argparse.Namespace) -> int:
    """Run the plan, write the page, end with the headline of its verdicts and the commands
    that open the page and call featavg (:func:`featavg.reproduction.headline`)."""
    from featavg.device import resolve_device
    from featavg.reproduction import headline
    from featavg.reproduction import reproduce as reproduce_all

    _configure_threads(args)
    resolve_device(args.device)  # checked first, cached runs included
    start = time.perf_counter()
    results, report = reproduce_all(
        args.out, args.device, args.force, progress=not args.quiet, real=args.real
    )
    elapsed = time.perf_counter() - start
    print("\n".join(headline([r.directory for r in results], report, elapsed)))
    return 0
