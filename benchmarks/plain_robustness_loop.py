"""Plain-PyTorch baseline for ``synthetic-robustness`` (what one writes by hand).

Per seed: the same synthetic data (featavg.data, so both sides see identical points), one
nn.Module per network (binary net, 10-class net), torch.optim.SGD full-batch GD, then one
full-dimensional L2 PGD call per radius (7 steps, step eps/4, random start on the eps-sphere,
no box) for each read-out: binary net, 10-way accuracy of the 10-class net, its derived
binary classifier in sum form and in argmax form. Writes the mean curves to JSON and a figure.

Run: .venv/bin/python benchmarks/plain_robustness_loop.py --seeds 10 --out /tmp/plain.json
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from featavg.data import SyntheticConfig, sample_synthetic  # noqa: E402

RADII = [float(r) for r in range(0, 60, 2)]


class TwoLayer(nn.Module):
    def __init__(self, d, units, readout):
        super().__init__()
        self.lin = nn.Linear(d, units)
        nn.init.normal_(self.lin.weight, std=1e-5)
        nn.init.zeros_(self.lin.bias)
        self.register_buffer("readout", readout)

    def forward(self, x):
        return torch.relu(self.lin(x)) @ self.readout.T


def fit(net, x, loss_fn, steps=100, lr=1e-3):
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(net(x)).backward()
        opt.step()
    return net


def pgd_l2(forward, loss_fn, correct_fn, x, eps, steps=7):
    """One radius: random start on the sphere, steps of eps/4 along g/||g||, project."""
    if eps == 0:
        with torch.no_grad():
            return correct_fn(forward(x)).float().mean().item()
    delta = torch.randn_like(x)
    delta = eps * delta / delta.norm(dim=1, keepdim=True)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = loss_fn(forward(x + delta)).sum()
        (g,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = delta + eps / 4 * g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
            delta = delta * (eps / delta.norm(dim=1, keepdim=True)).clamp(max=1.0)
    with torch.no_grad():
        return correct_fn(forward(x + delta)).float().mean().item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", default="plain_robustness.json")
    args = parser.parse_args()
    cfg = SyntheticConfig()
    curves = {"binary": [], "multiclass": [], "derived_sum": [], "derived_argmax": []}
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        ds = sample_synthetic(cfg, seed)
        signs = ds.signs
        y01 = (ds.y_test > 0).long()
        m = 5
        bin_readout = torch.cat([torch.ones(m), -torch.ones(m)])[None]
        binary = fit(
            TwoLayer(cfg.d, 2 * m, bin_readout),
            ds.x_train,
            lambda z: F.softplus(-ds.y_train * z[:, 0]).mean(),
        )
        multi = fit(
            TwoLayer(cfg.d, cfg.k, torch.eye(cfg.k)),
            ds.x_train,
            lambda z: F.cross_entropy(z, ds.c_train),
        )
        x, yb, c = ds.x_test, ds.y_test, ds.c_test
        group = (signs > 0).long()

        def group_loss(z):
            logp = torch.log_softmax(z, 1)
            own = torch.where(group[None, :] == y01[:, None], logp, -torch.inf)
            return -torch.logsumexp(own, 1)

        readouts = {
            "binary": (binary, lambda z: F.softplus(-yb * z[:, 0]), lambda z: yb * z[:, 0] > 0),
            "multiclass": (
                multi,
                lambda z: F.cross_entropy(z, c, reduction="none"),
                lambda z: z.argmax(1) == c,
            ),
            "derived_sum": (
                lambda v: multi(v) @ signs[:, None],
                lambda z: F.softplus(-yb * z[:, 0]),
                lambda z: yb * z[:, 0] > 0,
            ),
            "derived_argmax": (multi, group_loss, lambda z: group[z.argmax(1)] == y01),
        }
        for name, (fwd, loss_fn, correct_fn) in readouts.items():
            curves[name].append([pgd_l2(fwd, loss_fn, correct_fn, x, r) for r in RADII])
    mean = {k: [sum(col) / len(col) for col in zip(*v, strict=True)] for k, v in curves.items()}
    fig, ax = plt.subplots()
    for name, ys in mean.items():
        ax.plot(RADII, ys, label=name)
    ax.legend()
    fig.savefig(args.out.replace(".json", ".png"))
    with open(args.out, "w") as f:
        json.dump({"radii": RADII, "mean": mean, "per_seed": curves}, f)


if __name__ == "__main__":
    main()
