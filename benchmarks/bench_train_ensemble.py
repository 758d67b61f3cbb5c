"""Benchmark: training S two-layer nets as one ensemble vs S plain PyTorch loops.

Paper config (SPEC §1): binary net, d = 3072, k = 10, n = 1000, m = 5 (M = 10 units),
100 full-batch GD steps at lr 1e-3. The baseline, measured in the same run, is what one
would write by hand: per network an nn.Module (nn.Linear + fixed +-1 readout), softplus
loss, loss.backward(), torch.optim.SGD. Data generation is excluded from both timings.

Run: .venv/bin/python benchmarks/bench_train_ensemble.py [--sizes 1 8 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from featavg.data import SyntheticConfig, sample_synthetic, stack_datasets
from featavg.models import NetConfig, binary_ensemble
from featavg.models.two_layer import binary_readout
from featavg.training import TrainConfig, choose_formulation, train


class PlainBinaryNet(nn.Module):
    def __init__(self, d: int, m: int):
        super().__init__()
        self.lin = nn.Linear(d, 2 * m)
        nn.init.normal_(self.lin.weight, std=1e-5)
        nn.init.zeros_(self.lin.bias)
        self.register_buffer("readout", binary_readout(m))

    def forward(self, x):
        return (torch.relu(self.lin(x)) @ self.readout.T)[:, 0]


def plain_loops(xs, ys, d, m, steps, lr):
    """One nn.Module + torch.optim.SGD loop per network."""
    for x, y in zip(xs, ys, strict=True):
        net = PlainBinaryNet(d, m)
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            F.softplus(-y * net(x)).mean().backward()
            opt.step()


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ensemble_vs_plain(sizes, repeats):
    cfg, net, tcfg = SyntheticConfig(), NetConfig(), TrainConfig()
    data = [sample_synthetic(cfg, s) for s in range(max(sizes))]
    print(
        f"\n== ensemble vs plain loops: d={cfg.d}, n={cfg.n_train}, M={2 * net.m}, "
        f"{tcfg.steps} GD steps, {torch.get_num_threads()} threads =="
    )
    print(
        f"{'S':>3} | {'ours same data':>14} | {'ours own data':>13} | {'plain loops':>11} | "
        f"{'plain/ours(own)':>15} | {'ours same(S)/ours same(1)':>25} | "
        f"{'ours same(S)/plain(1)':>21}"
    )
    base = {}
    for s in sizes:
        seeds = list(range(s))
        shared_x, shared_y = data[0].x_train, data[0].y_train
        stacked = stack_datasets(data[:s])

        def ours_same():
            train(binary_ensemble(seeds, cfg.d, net), shared_x, shared_y, tcfg)

        def ours_own():
            train(binary_ensemble(seeds, cfg.d, net), stacked.x_train, stacked.y_train, tcfg)

        def plain():
            plain_loops(
                [d.x_train for d in data[:s]],
                [d.y_train for d in data[:s]],
                cfg.d,
                net.m,
                tcfg.steps,
                tcfg.lr,
            )

        t_same = best_time(ours_same, repeats)
        t_own = best_time(ours_own, repeats)
        t_plain = best_time(plain, repeats if s <= 8 else 1)
        if s == sizes[0]:
            base = {"same": t_same, "plain": t_plain}
        print(
            f"{s:>3} | {t_same:>13.3f}s | {t_own:>12.3f}s | {t_plain:>10.3f}s | "
            f"{t_plain / t_own:>14.1f}x | {t_same / base['same']:>24.2f}x | "
            f"{t_same / base['plain']:>20.2f}x"
        )


def formulations(repeats):
    print("\n== direct vs gram (S=8 binary nets, M=10, 100 GD steps, shared data) ==")
    print(f"{'n':>5} {'d':>5} | {'direct':>8} | {'gram':>8} | {'faster':>6} | {'auto picks':>10}")
    for n, d in [(200, 784), (1000, 784), (1000, 3072), (4000, 784), (4000, 3072)]:
        x = torch.randn(n, d)
        y = torch.where(torch.rand(n) < 0.5, 1.0, -1.0)
        t = {}
        for form in ("direct", "gram"):
            cfg = TrainConfig(formulation=form)
            t[form] = best_time(
                lambda cfg=cfg: train(binary_ensemble(list(range(8)), d), x, y, cfg), repeats
            )
        auto = choose_formulation(8, 10, n, d, 100, n, True, 4)
        faster = min(t, key=t.get)
        print(
            f"{n:>5} {d:>5} | {t['direct']:>7.3f}s | {t['gram']:>7.3f}s | {faster:>6} | {auto:>10}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-formulations", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    ensemble_vs_plain(args.sizes, args.repeats)
    if not args.skip_formulations:
        formulations(args.repeats)


if __name__ == "__main__":
    main()
