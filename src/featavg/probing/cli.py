"""``featavg probe``: measure feature averaging in a model at one layer, from the shell.

    featavg probe --checkpoint runs/models/fashion-mnist-coarse-<hash>/model.pt --layer net.fc
    featavg probe --builtin resnet18-pretrained --checkpoint resnet18.pt --data cifar10 \\
        --data-dir ~/data --layer net.fc --grouping halves
    featavg probe --model mypkg.nets:make_net --checkpoint weights.pt --data mnist --layer fc1

Writes ``<root>/probe-<hash>/`` (summary.json, cosines.csv, group_cosines.csv, units.csv,
heatmap.png, manifest.json), cached by model, data, layer, grouping and options; the last
line is ``probe: done|cached -> DIR/summary.json``. Nothing here imports torch until the
command runs (the parser is built for every featavg command).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from featavg.config import ConfigError
from featavg.device import DEFAULT_DEVICE, DEVICES

if TYPE_CHECKING:
    from featavg.data.images import ImageDataset
    from featavg.probing.options import ProbeOptions

# the summary numbers printed after a run, in this order (those present)
SHOWN = (
    "coarse_accuracy",
    "fine_accuracy",
    "probe_accuracy",
    "probe_chance",
    "cos_same_group_mean",
    "cos_same_group_exact_average",
    "cos_other_group_mean",
    "cos_diag_mean",
    "averaging_index",
    "index_exact_average",
    "index_single_feature",
)


def add_probe_parser(sub: Any) -> None:
    """Register ``featavg probe`` on the subparsers ``sub``."""
    from featavg.threads import THREADS_HELP

    p = sub.add_parser(
        "probe",
        help="measure feature averaging in any model at one layer (cosines, averaging "
        "index, linear probe)",
        description="Compare a layer's units with the class means of its input (the paper's "
        "Fig. 2c/d for any model): cosines, the averaging index (1 = exact average of a "
        "group's features, 1/|J_s| = one feature), a fine-label linear probe beside the "
        "coarse accuracy. --model MODULE:FACTORY imports and runs that code. The model "
        "receives pixels in [0, 1], N x 1 x 28 x 28 for mnist, mnist-5k and fashion-mnist, "
        "N x 3 x 32 x 32 for cifar10 and cifar10-synthetic, and must return logits (N, O): "
        "O = the groups, the fine classes, or 1 (a margin) for two groups.",
    )
    p.add_argument(
        "--model",
        dest="factory",
        metavar="MODULE:FACTORY",
        help="a user factory: MODULE is a dotted module name (looked up in the current "
        "directory first, as python -m does, then on sys.path) or a path to a .py file; "
        "FACTORY() must return an nn.Module mapping pixels to logits (see above)",
    )
    p.add_argument("--builtin", metavar="NAME", help="a builtin architecture (with --checkpoint)")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="weights, read with torch.load(weights_only=True): a featavg model.pt (or its "
        "directory) or a plain state dict",
    )
    p.add_argument("--layer", required=True, metavar="NAME", help="as in model.named_modules()")
    p.add_argument("--data", metavar="NAME", help="dataset (default: a featavg model's own)")
    p.add_argument("--data-dir", metavar="DIR", help="dataset files in torchvision's layout")
    p.add_argument("--grouping", metavar="G", help="parity, halves, a JSON/TOML file or 10 ints")
    p.add_argument("--train-size", type=int, metavar="N", help="class-balanced train subset")
    p.add_argument("--test-size", type=int, metavar="N", help="class-balanced test subset")
    p.add_argument("--num-classes", type=int, metavar="K", help="outputs of a --builtin")
    p.add_argument("--normalization", metavar="NAME", help="of a --builtin (default: recipe)")
    p.add_argument("--centre", action="store_true", help="subtract the global feature mean")
    p.add_argument("--probe-points", type=int, default=2048, metavar="N", help="per split")
    p.add_argument("--grad-points", type=int, default=2048, metavar="N", help="unit assignment")
    p.add_argument(
        "--robust-eps", metavar="E1,E2,...", help="also an L2 robustness curve at these radii"
    )
    p.add_argument("--robust-points", type=int, default=500, metavar="N")
    p.add_argument("--batch-size", type=int, default=256, metavar="B")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="subsets and subsamples")
    p.add_argument("--out", metavar="DIR", help="run directory (default: ROOT/probe-<hash>)")
    p.add_argument("--root", default="runs", metavar="DIR", help="runs root (default: runs)")
    p.add_argument("--device", default=DEFAULT_DEVICE, help=f"{DEVICES} (default {DEFAULT_DEVICE})")
    p.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
    p.add_argument("--force", action="store_true", help="recompute even if cached")
    p.add_argument("--quiet", action="store_true", help="only the final line")


def _eps(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--robust-eps: expected numbers like 0,0.5,1, got {text!r}") from None


def _data(name: str, args: argparse.Namespace) -> ImageDataset:
    from featavg.data.images import load_dataset

    data = load_dataset(name, args.data_dir, stand_in=True, seed=args.seed)
    for size, flag in ((args.train_size, "--train-size"), (args.test_size, "--test-size")):
        if size is not None and size < 10:
            raise ConfigError(f"{flag}: must be >= 10, got {size}")
    return replace(
        data,
        train=data.train.subset(args.train_size, args.seed, "train/subset"),
        test=data.test.subset(args.test_size, args.seed, "test/subset"),
    )


def _options(args: argparse.Namespace) -> ProbeOptions:
    """The measurement options from the flags, checked before anything is loaded."""
    from featavg.probing.options import ProbeOptions

    return ProbeOptions(
        centre=args.centre,
        probe_points=args.probe_points,
        grad_points=args.grad_points,
        robust_eps=_eps(args.robust_eps),
        robust_points=args.robust_points,
        batch_size=args.batch_size,
        seed=args.seed,
    )


def probe_command(args: argparse.Namespace) -> int:
    """Run ``featavg probe`` (see the module docstring); returns the exit code."""
    from pathlib import Path

    from featavg.data.groupings import Grouping, get_grouping
    from featavg.device import resolve_device
    from featavg.probing.options import ProbeRun
    from featavg.threads import configure

    options = _options(args)  # bad flags fail before any model or data is loaded
    configure(args.threads)
    dev = resolve_device(args.device)
    from featavg.probing.cached import probe_cached
    from featavg.probing.loading import load_model

    if args.factory is None and args.checkpoint is None:
        raise ConfigError("--model or --checkpoint: say which model to probe")
    for flag, value in (
        ("--num-classes", args.num_classes),
        ("--normalization", args.normalization),
    ):
        if value is not None and args.builtin is None:  # else silently ignored
            raise ConfigError(f"{flag}: describes a --builtin architecture; give --builtin NAME")
    data = _data(args.data, args) if args.data else None
    loaded = load_model(
        factory=args.factory,
        builtin=args.builtin,
        checkpoint=args.checkpoint,
        data=data,
        dataset_name=args.data,
        num_classes=args.num_classes,
        normalization=args.normalization,
        device=dev,
    )
    trained = loaded.trained_on or {}
    if data is None:
        described = trained.get("dataset") or {}
        if not described.get("name"):
            raise ConfigError("--data: needed (which dataset to probe on)")
        data = _data(str(described["name"]), args)
        if described.get("stand_in") and data.stand_in is None:
            data = replace(data, stand_in=str(described["stand_in"]))
    if args.grouping is None and trained.get("grouping"):
        g = trained["grouping"]
        grouping = Grouping(str(g["name"]), tuple(int(v) for v in g["groups"]))
    else:  # checked against the data's classes now, not when the first pass reads labels
        grouping = get_grouping(args.grouping or "parity", len(data.classes))
    how = ProbeRun(
        root=Path(args.root),
        out=Path(args.out) if args.out is not None else None,
        force=args.force,
        progress=not args.quiet,
        model_info=loaded.info,
    )
    result = probe_cached(
        loaded.model,
        data,
        grouping,
        layer=args.layer,
        options=replace(options, class_names=data.classes),
        how=how,
    )
    if not args.quiet:
        print("\n".join(result_lines(result.summary, weights_loaded=args.checkpoint is not None)))
    print(f"probe: {'cached' if result.cached else 'done'} -> {result.directory}/summary.json")
    return 0


def result_lines(s: dict[str, Any], *, weights_loaded: bool = True) -> list[str]:
    """What ``featavg probe`` prints: the data (with its stand-in label), the layer, the
    averaging index beside its two references (also on the measured class means), the
    accuracies and cosines, and the notes that qualify them."""
    lines = []
    if not weights_loaded:
        lines.append(
            "notice: no weights loaded (no --checkpoint): this probes the factory's model as "
            "it comes, untrained unless the factory loads weights itself"
        )
    if s.get("stand_in"):
        lines.append(f"data: {s['stand_in']}")
    lines.append(
        f"layer {s['layer']!r} ({s['layer_kind']}), {s['units']} units, {s['model_outputs']} model"
    )
    if "averaging_index" in s:
        lines.append(
            f"  averaging index {s['averaging_index']:.3f}  (exact average of a group's "
            f"features: {s.get('index_exact_average', 1.0):.3f}, one feature: "
            f"{s.get('index_single_feature', float('nan')):.3f}; on the measured class means: "
            f"{s.get('index_exact_average_measured_means', float('nan')):.3f} and "
            f"{s.get('index_single_feature_measured_means', float('nan')):.3f})"
        )
    for key in SHOWN:
        if key in s and key not in (
            "averaging_index",
            "index_exact_average",
            "index_single_feature",
        ):
            lines.append(f"  {key:30s} {s[key]:.4f}")
    lines += [f"  note: {n}" for n in s.get("notes", []) if "says little" in n]
    return lines
