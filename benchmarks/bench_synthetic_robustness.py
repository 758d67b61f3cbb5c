"""Benchmark: the 10-seed ``synthetic-robustness`` run vs a plain-PyTorch loop, whole commands.

Both are timed from process start to exit (imports, data, training, attacks, figures); ours
runs --repeats times (median reported), the plain loop once:
  ours:  featavg run synthetic-robustness --seeds 10 --force --quiet --out DIR
  plain: benchmarks/plain_robustness_loop.py --seeds 10 (one nn.Module + torch.optim.SGD per
         net, one full-dimensional PGD call per radius and read-out)
Ours additionally computes exact minimal radii and the analytic attack. The script prints
the ratio and checks that the mean PGD curves agree within seed noise: at every radius
|ours - plain| <= 3 * sqrt(se_ours^2 + se_plain^2) + 0.02 (se: standard error over seeds).

Run: .venv/bin/python benchmarks/bench_synthetic_robustness.py [--seeds 10]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scipy.special import stdtrit

HERE = Path(__file__).resolve().parent
READOUTS = ("binary", "multiclass", "derived_sum", "derived_argmax")


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def stats(per_seed: list[list[float]]):
    n = len(per_seed)
    cols = list(zip(*per_seed, strict=True))
    mean = [sum(c) / n for c in cols]
    se = [
        math.sqrt(sum((v - m) ** 2 for v in c) / max(n - 1, 1) / n)
        for c, m in zip(cols, mean, strict=True)
    ]
    return mean, se


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of ours (the median counts; plain runs once)"
    )
    args = parser.parse_args()
    featavg = str(Path(sys.executable).with_name("featavg"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ours"
        ours_cmd = [featavg, "run", "synthetic-robustness", "--seeds", str(args.seeds)]
        ours_cmd += ["--force", "--quiet", "--out", str(out)]
        runs = sorted(timed(ours_cmd) for _ in range(max(1, args.repeats)))
        t_ours = runs[len(runs) // 2]
        plain_json = Path(tmp) / "plain.json"
        t_plain = timed(
            [
                sys.executable,
                str(HERE / "plain_robustness_loop.py"),
                "--seeds",
                str(args.seeds),
                "--out",
                str(plain_json),
            ]
        )
        ours = json.loads((out / "summary.json").read_text())
        plain = json.loads(plain_json.read_text())
        rows = {}
        with open(out / "robustness.csv") as f:
            header = f.readline().strip().split(",")
            for line in f:
                rec = dict(zip(header, line.strip().split(","), strict=True))
                rows.setdefault(rec["readout"], []).append(rec)
    radii = plain["radii"]
    print(f"== synthetic-robustness, {args.seeds} seeds, whole commands ==")
    print(
        f"ours  (featavg run ...)        {t_ours:8.2f} s  (median of "
        f"{', '.join(f'{t:.2f}' for t in runs)})"
    )
    print(f"plain (nn.Module + SGD + PGD)  {t_plain:8.2f} s")
    print(f"speed-up                       {t_plain / t_ours:8.1f}x")
    print("\n== mean robust accuracy, ours vs plain (PGD, paper protocol) ==")
    all_ok = True
    t975 = stdtrit(args.seeds - 1, 0.975) if args.seeds > 1 else math.inf
    for name in READOUTS:
        ours_mean = [float(r["pgd_acc"]) for r in rows[name]]
        ours_half = [float(r["pgd_acc_hi"]) - float(r["pgd_acc"]) for r in rows[name]]
        ours_se = [h / t975 for h in ours_half]  # 95% interval half-width -> standard error
        plain_mean, plain_se = stats(plain["per_seed"][name])
        diffs = [abs(a - b) for a, b in zip(ours_mean, plain_mean, strict=True)]
        bound = [3 * math.hypot(a, b) + 0.02 for a, b in zip(ours_se, plain_se, strict=True)]
        ok = all(d <= b for d, b in zip(diffs, bound, strict=True))
        all_ok &= ok
        print(f"{name:15s} max |diff| {max(diffs):.3f}  within seed noise: {ok}")
        print("  radius " + " ".join(f"{r:5.0f}" for r in radii[::3]))
        print("  ours   " + " ".join(f"{v:5.2f}" for v in ours_mean[::3]))
        print("  plain  " + " ".join(f"{v:5.2f}" for v in plain_mean[::3]))
    print(
        f"\nradius50 (ours): binary {ours['radius50_binary']}, 10-class k-way "
        f"{ours['radius50_multiclass']}, derived sum {ours['radius50_derived_sum']}, "
        f"derived argmax {ours['radius50_derived_argmax']}"
    )
    print(f"curves agree within seed noise: {all_ok}")


if __name__ == "__main__":
    main()
