"""Benchmark: the default robustness curve against AutoAttack, radius by radius, and its cost.

Setting: the quick models of the brief, a binary (coarse) and a 10-class (fine) ResNet-18
trained for 2 epochs on 3000 images of the real 5000-digit MNIST subset (mnist-5k), e.g.

    featavg train --data mnist-5k --set train_size=3000 --set test_size=1000 --epochs 2 \\
        --model resnet18-mnist --labels coarse      # and --labels fine

(pass their directories as --models; ``--data fashion-mnist`` trains the Fashion-MNIST
pair). The attack is in the normalised input space with no box, as the image experiments
attack (radii in the paper's units), L2, radii 0, 0.1, ..., 2.0, on the 200 test points
the quick preset attacks (a class-balanced subset, stream ``attack/points`` of seed 0).
Read-outs: the binary model plainly (cross-entropy) and the 10-class model by class group
(prediction: the group of the argmax; loss: the group cross-entropy).

Per read-out it runs the default curve method (``DEFAULT_METHOD``), then AutoAttack's
APGD-CE (and, for the 10-class model, APGD-T through the group logits; see
:mod:`featavg.attacks.autoattack`; 100 iterations, AutoAttack's L2 standard budget) at
every radius > 0 on the points the curve still calls robust there
(:func:`featavg.attacks.autoattack.verify_autoattack`). Printed per radius: the curve's
robust accuracy, the accuracy robust under both attacks, their gap (how much the curve
overstates robustness against AutoAttack), and AutoAttack's gradient evaluations and wall
time there; per read-out, the curve's gradient evaluations against the paper's per-radius
PGD-7 protocol (R x (points correct clean) x 7, counted exactly as that method counts).

Target: a gap of at most 1 point at every radius, at least 4x fewer gradient evaluations
than per-radius PGD-7; where the gap exceeds 1 point the benchmark says so (FAIL) with the
measured value.

Run: PYTHONPATH=src .venv/bin/python benchmarks/bench_autoattack_gap.py
    --models runs/models/mnist-5k-coarse-<hash> runs/models/mnist-5k-fine-<hash>
    [--points 200] [--method NAME] [--threads 1] [--iterations 100]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from featavg.attacks import DEFAULT_METHOD, METHODS, AttackSettings, robustness_curve
from featavg.attacks.autoattack import AutoAttackBudget, verify_autoattack
from featavg.attacks.readouts import build_readouts
from featavg.config import build_config
from featavg.data.groupings import get_grouping
from featavg.trained_models import TrainJobConfig, load_job_data, load_trained_model

RADII = [round(0.1 * i, 1) for i in range(21)]  # normalised units
TARGET_RATIO = 4.0  # at least this many times fewer gradient evaluations than PGD-7
TARGET_GAP = 0.01  # robust accuracy at most AutoAttack's + 1 point at every radius
PGD_STEPS = 7  # the paper's per-radius protocol


def load(dirs: list[str], points: int) -> tuple[dict, torch.Tensor, torch.Tensor, list, str]:
    """(read-outs {name: Readout}, normalised points (N, 1, 28, 28), fine labels (N,),
    the grouping's group ids (10,), description) of the binary and 10-class models in
    ``dirs``."""
    models = [load_trained_model(d)[0] for d in dirs]
    summary = json.loads((Path(dirs[0]) / "summary.json").read_text())
    fields = {k: v for k, v in summary["config"].items() if k in TrainJobConfig.model_fields}
    cfg = build_config(TrainJobConfig, fields)
    groups = get_grouping(cfg.grouping).groups
    test = load_job_data(cfg).test.subset(points, 0, "attack/points")
    with torch.no_grad():
        x = models[0].normalize(test.x.float().div(255))
    nets = [m.net.eval() for m in models]
    for net in nets:
        net.requires_grad_(False)
    readouts = build_readouts(nets[0], nets[1], groups, ("binary", "group_argmax"))
    data = summary.get("stand_in") or summary["config"]["dataset"]
    accs = []
    for d in dirs:
        s = json.loads((Path(d) / "summary.json").read_text())
        accs.append(f"{s['labels']} {s['final_test_acc']:.3f}")
    return (
        readouts,
        x,
        test.y.long(),
        list(groups),
        f"{data} ({', '.join(accs)} clean test accuracy)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs=2, required=True, metavar=("BINARY", "TENCLASS"))
    parser.add_argument("--points", type=int, default=200, help="test points (default 200)")
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS)
    parser.add_argument("--iterations", type=int, default=100, help="APGD iterations")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--readouts", nargs="+", default=["binary", "group_argmax"],
        choices=["binary", "group_argmax"], help="read-outs to attack (default: both)",
    )  # fmt: skip
    parser.add_argument(
        "--every", type=int, default=1, help="check AutoAttack at every k-th radius > 0"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    readouts, x, y_fine, groups, what = load(args.models, args.points)
    print(f"{what}: {x.shape[0]} points, L2, normalised space, no box; "
          f"{torch.get_num_threads()} threads; method {args.method}")  # fmt: skip
    budget = AutoAttackBudget(n_iter=args.iterations)
    for name, readout in readouts.items():
        if name not in args.readouts:
            continue
        y = readout.labels(y_fine, groups)
        settings = AttackSettings(objective=readout.objective)
        cpu = time.process_time()
        curve = robustness_curve(readout.module, x, y, RADII, method=args.method, settings=settings)
        curve_cpu = time.process_time() - cpu
        clean = int(curve.per_point_correct[0].sum())
        pgd7 = len(RADII) * clean * PGD_STEPS
        ratio = pgd7 / max(curve.gradient_evaluations, 1)
        cpu = time.process_time()
        checked = RADII[1:][args.every - 1 :: args.every]
        checks = verify_autoattack(readout.module, readout.objective, x, y, curve, checked, budget)
        aa_cpu = time.process_time() - cpu
        aa_grads = sum(c.gradient_evaluations for c in checks)
        gap = max(c.gap for c in checks)
        print(f"\n== {readout.label} ({name}); {clean} of {x.shape[0]} points correct clean")
        print(f"{'r':>4} {'curve':>6} {'both':>6} {'gap':>6} {'AA grads':>9} {'AA wall s':>9}")
        for c in checks:
            print(
                f"{c.eps:>4.1f} {c.curve_accuracy:>6.3f} {c.verified_accuracy:>6.3f} "
                f"{c.gap:>+6.3f} {c.gradient_evaluations:>9d} {c.wall_s:>9.1f}"
            )
        print(
            f"curve: {curve.gradient_evaluations} gradient evaluations "
            f"({curve.gradient_evaluations / max(clean, 1):.1f} per point correct clean), "
            f"{curve.wall_s:.1f} s wall, {curve_cpu:.1f} s CPU; per-radius PGD-7: {pgd7} "
            f"({PGD_STEPS * len(RADII)} per point): {ratio:.2f}x fewer "
            f"[{'PASS' if ratio >= TARGET_RATIO else 'FAIL'} >= {TARGET_RATIO:g}x]"
        )
        print(
            f"AutoAttack: {aa_grads} gradient evaluations, {aa_cpu:.1f} s CPU; largest gap "
            f"{100 * gap:+.1f} points [{'PASS' if gap <= TARGET_GAP + 1e-12 else 'FAIL'} "
            f"<= {100 * TARGET_GAP:g}]",
            flush=True,
        )


if __name__ == "__main__":
    main()
