"""Issue 13, deliverables 2 and 3 at full count: resource guards and numerical faults.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/reliability_guards.py [--quick] [--full]

Numerical faults: every fault of the issue (a diverging learning rate, an init that
underflows to 0 or overflows or is too large for GD to move, zero-norm or overflowing
centers, infinite noise, NaN/inf injected into the training or test data, a zero-norm
center injected, a non-finite headline number) is injected at several sizes, up to the
paper's d = 3072, n = 1000, with both GD formulations and SGD. Each must end in a one-line
RunFailed or ConfigError with nothing written. Healthy configs at the same sizes are the
control (a false alarm would refuse a good run). Sweeps over learning rates with diverging
values at random places must record exactly those cells as failed and finish the rest.

Resource guards: configs far beyond the machine (data, seeds, steps, records, radii, grid
cells) must be refused in one line, fast, before any data are drawn; and the estimate of a
few real runs is compared with their measured peak memory (in subprocesses).

Prints the counts of the issue's closing table; exits 1 if a must-be-0 count is not 0.
``--full`` adds every synthetic experiment's reproduce config to the controls (minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from featavg.config import ConfigError, deep_merge
from featavg.experiments import synthetic_common
from featavg.experiments.costs import negligible
from featavg.experiments.output import ExperimentOutput
from featavg.experiments.registry import EXPERIMENTS, register, unregister
from featavg.experiments.runner import run_experiment
from featavg.experiments.spec import Claim, Experiment
from featavg.experiments.synthetic_common import SyntheticRunConfig
from featavg.faults import RunFailed
from featavg.runs.context import open_context
from featavg.sweep import run_sweep

EXP = "synthetic-alignment"
# (d, k, n_train, n_test, steps): tiny to the paper's synthetic config
SIZES = [
    (20, 2, 16, 8, 10),
    (60, 4, 80, 40, 20),
    (300, 10, 400, 100, 30),
    (3072, 10, 1000, 200, 30),
]
counts: Counter[str] = Counter()
examples: dict[str, str] = {}


def base(size: tuple[int, int, int, int, int], **train: Any) -> dict[str, Any]:
    d, k, n, n_test, steps = size
    return {
        "data": {"d": d, "k": k, "n_train": n, "n_test": n_test},
        "train": {"steps": steps, **train},
        "seeds": 2,
    }


def attempt(kind: str, name: str, overrides: dict[str, Any], fault: bool, tmp: Path) -> None:
    """One run: a fault must end in a one-line RunFailed / ConfigError and write nothing;
    a control must succeed."""
    out = tmp / f"run{counts['inputs']}"
    counts["inputs"] += 1
    counts["faults injected" if fault else "controls"] += 1
    try:
        run_experiment(name, overrides=overrides, out=out, ctx=open_context("cpu"))
        outcome = "ok"
    except (RunFailed, ConfigError) as err:
        outcome = "refused"
        text = str(err)
        if "\n" in text or len(text) > 500:
            counts["messages not one short line"] += 1
        examples.setdefault(kind, text)
    except Exception:  # noqa: BLE001 - counted: every traceback is a failure of this issue
        outcome = "traceback"
        counts["tracebacks"] += 1
        examples.setdefault(f"TRACEBACK {kind}", traceback.format_exc(limit=3))
    saved = (out / "summary.json").exists()
    if fault:
        counts["faults detected"] += outcome == "refused"
        counts["faults saved as normal results"] += saved or outcome == "ok"
        counts["fault runs that wrote files"] += out.exists()
    else:
        counts["false alarms (good runs refused)"] += outcome != "ok"
        if outcome != "ok":
            examples.setdefault(f"FALSE ALARM {kind}", str(overrides))


def poisoned_sampler(rng: random.Random, what: str) -> Any:
    draw = synthetic_common.sample_synthetic_stacked

    def sample(*args: Any, **kwargs: Any) -> Any:
        data = draw(*args, **kwargs)
        if what == "center":
            s, k = data.centers.shape[:2]
            data.centers[rng.randrange(s), rng.randrange(k)] = 0.0
        else:
            split, value = (data.x_train, math.nan) if what == "nan" else (data.x_test, math.inf)
            s, n, d = split.shape
            split[rng.randrange(s), rng.randrange(n), rng.randrange(d)] = value
        return data

    return sample


def numerical_faults(tmp: Path, rng: random.Random, quick: bool) -> None:
    sizes = SIZES[:2] if quick else SIZES
    for size in sizes:
        for formulation in ("direct", "gram"):
            for batch in (None, max(4, size[2] // 4)):
                train = {"formulation": formulation, "batch_size": batch}
                for lr in (1e2, 1e3, 1e5, 1e30):
                    attempt("lr", EXP, base(size, lr=lr, **train), True, tmp)
                for std in (1e-46, 1e6, 1e20, 1e37):
                    cfg = deep_merge(base(size, **train), {"net": {"init_std": std}})
                    attempt("init", EXP, cfg, True, tmp)
                attempt("control", EXP, base(size, **train), False, tmp)
                attempt("control lr 0.1", EXP, base(size, lr=0.1, **train), False, tmp)
        for data in ({"norm_range": [1e-60, 1e-60]}, {"norm_range": [1e30, 1e30]}):
            attempt("centers", EXP, deep_merge(base(size), {"data": data}), True, tmp)
        attempt("noise", EXP, deep_merge(base(size), {"data": {"noise_std": math.inf}}), True, tmp)
        for what in ("nan", "inf", "center"):
            for _ in range(2 if quick else 5):
                synthetic_common.sample_synthetic_stacked = poisoned_sampler(rng, what)
                try:
                    attempt(f"injected {what}", EXP, base(size), True, tmp)
                finally:
                    synthetic_common.sample_synthetic_stacked = DRAW
    non_finite_results(tmp, rng, 10 if quick else 40)


def non_finite_results(tmp: Path, rng: random.Random, count: int) -> None:
    """A fake experiment returning a NaN/inf at a random key that must be finite."""
    keys = ["test_acc", "cos_same_class_mean_binary", "bias_mean_binary", "loss", "theory_cos"]
    for i in range(count):
        key, value = rng.choice(keys), rng.choice([math.nan, math.inf, -math.inf])
        numbers: dict[str, Any] = {"per_seed": {key: [0.5, value]}} if i % 2 else {key: value}

        def run(cfg: Any, ctx: Any, numbers=numbers) -> Any:
            return ExperimentOutput(numbers=dict(numbers))

        fake = Claim("f", "f")
        exp = Experiment("guards-fake", "fake", SyntheticRunConfig, run, negligible, fake, {})
        register(exp)
        try:
            attempt("non-finite result", "guards-fake", {"seed": i}, True, tmp)
        finally:
            unregister("guards-fake")


def sweeps(tmp: Path, rng: random.Random, quick: bool) -> None:
    """lr grids with diverging values at random places: exactly those cells fail."""
    for i in range(2 if quick else 6):
        good = rng.sample([1e-3, 3e-3, 1e-2, 3e-2, 0.1], 3)
        bad = rng.sample([1e2, 1e3, 1e5], rng.randint(1, 2))
        lrs = good + bad
        rng.shuffle(lrs)
        counts["sweep cells"] += len(lrs)
        counts["sweep cells with a fault injected"] += len(bad)
        try:
            result = run_sweep(
                EXP,
                {"train.lr": lrs},
                overrides=base(SIZES[1]),
                out=tmp / f"sweep{i}",
                progress=False,
            )
        except Exception:  # noqa: BLE001
            counts["tracebacks"] += 1
            examples.setdefault("TRACEBACK sweep", traceback.format_exc(limit=3))
            continue
        table = result.to_frame()
        for lr, status in zip(table["train.lr"], table["status"], strict=True):
            expected = "failed" if lr in bad else "ok"
            counts["sweep cells recorded as failed"] += status == "failed"
            counts["sweep cells with the wrong status"] += status != expected
        for cell in result.cells:
            if cell.values["train.lr"] in bad and (cell.directory / "summary.json").exists():
                counts["faults saved as normal results"] += 1


HUGE = [  # each a valid config, far beyond any laptop or workstation
    ("synthetic-alignment", {"data": {"d": 10**6, "n_train": 10**6, "n_test": 10**6}}),
    ("synthetic-alignment", {"seeds": 10**7}),
    ("synthetic-alignment", {"train": {"steps": 10**12, "record_every": 10**12}}),
    ("synthetic-alignment", {"train": {"steps": 10**9, "record_every": 1}}),
    ("synthetic-alignment", {"train": {"formulation": "gram"}, "data": {"n_train": 10**6}}),
    (
        "synthetic-robustness",
        {"attack": {"radii": [float(r) for r in range(5000)]}, "data": {"n_test": 10**6}},
    ),
    ("synthetic-robustness", {"data": {"n_test": 10**8}}),
    ("synthetic-scaling", {"ks": [2, 4], "ds": [10**8, 2 * 10**8]}),
    (
        "synthetic-ablations",
        {"init_stds": [1e-4 * (1 + i / 1000) for i in range(5000)], "data": {"d": 30000}},
    ),
    ("synthetic-dynamics", {"train": {"steps": 10**7, "record_every": 1}}),
    (
        "synthetic-adversarial",
        {"eps": [1 + i / 100 for i in range(1000)], "data": {"n_train": 10**5}},
    ),
    ("mnist-robustness", {"train": {"sgd": {"batch_size": 10**7}}}),
    ("mnist-robustness", {"train": {"sgd": {"epochs": 10**6}}}),
    ("cifar10-robustness", {"train": {"model": "resnet18-cifar", "sgd": {"batch_size": 10**6}}}),
]


def resource_guards(tmp: Path) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("data were drawn before the resource check")

    synthetic_common.sample_synthetic_stacked = refuse
    try:
        for name, overrides in HUGE:
            if name not in EXPERIMENTS:
                continue
            counts["oversized configs tried"] += 1
            out = tmp / f"huge{counts['oversized configs tried']}"
            start = time.perf_counter()
            try:
                run_experiment(name, overrides=overrides, out=out, ctx=open_context("cpu"))
                counts["oversized configs run"] += 1
            except ConfigError as err:
                counts["oversized configs refused"] += 1
                counts["  of them by the resource guard"] += str(err).startswith("resources:")
                counts["refusals slower than 2 s"] += time.perf_counter() - start > 2
                counts["messages not one short line"] += "\n" in str(err) or len(str(err)) > 500
                examples.setdefault(f"refused {name}", str(err))
            except Exception:  # noqa: BLE001 - includes the sampler's AssertionError
                counts["oversized configs that allocated or crashed"] += 1
                examples.setdefault(f"TRACEBACK huge {name}", traceback.format_exc(limit=3))
        grid = {"train.lr": [10.0**-i for i in range(300)], "seed": list(range(300))}
        counts["oversized configs tried"] += 1
        try:
            run_sweep(EXP, grid, out=tmp / "hugesweep", progress=False)
            counts["oversized configs run"] += 1
        except ConfigError as err:
            counts["oversized configs refused"] += 1
            counts["  of them by the resource guard"] += str(err).startswith("--grid: 90000")
            examples.setdefault("refused sweep grid", str(err))
    finally:
        synthetic_common.sample_synthetic_stacked = DRAW


def image_training(tmp: Path, quick: bool) -> None:
    """The image trainer: a diverging learning rate (several sizes of it, two tiny models,
    one or two models trained together) must end in a one-line NumericalFault naming the
    epoch and model, with no checkpoint written; a sane one is the control. And
    ``featavg train`` configs far beyond the machine are refused before training."""
    from featavg.faults import NumericalFault
    from featavg.seeding import generator
    from featavg.trained_models import job_config, train_model
    from featavg.training.image_sgd import ImageSGD, SGDConfig

    g = generator(0, "reliability/images")
    x = torch.randint(0, 256, (64, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 2, (64,), generator=g)

    def net(kind: str) -> torch.nn.Module:
        torch.manual_seed(0)
        if kind == "mlp":
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
            torch.nn.Linear(256, 2),
        )

    lrs = (1e8, 1e30) if quick else (1e4, 1e8, 1e12, 1e20, 1e30)
    for kind in ("mlp", "cnn"):
        for together in (1, 2):
            for lr in (*lrs, 0.01):
                fault = lr > 1
                counts["inputs"] += 1
                counts["faults injected" if fault else "controls"] += 1
                ckpt = tmp / f"image{counts['inputs']}.ckpt"
                cfg = SGDConfig(epochs=2, batch_size=16, lr=lr, momentum=0.9)
                try:
                    ImageSGD(cfg, checkpoint=ckpt).fit(
                        [net(kind) for _ in range(together)], x, [y] * together
                    )
                    outcome = "ok"
                except NumericalFault as err:
                    outcome = "refused"
                    text = str(err)
                    counts["messages not one short line"] += "\n" in text or len(text) > 500
                    examples.setdefault("image trainer", text)
                except Exception:  # noqa: BLE001 - counted
                    outcome = "traceback"
                    counts["tracebacks"] += 1
                    examples.setdefault("TRACEBACK image", traceback.format_exc(limit=3))
                if fault:
                    counts["faults detected"] += outcome == "refused"
                    counts["faults saved as normal results"] += outcome == "ok"
                    # a checkpoint of a finished, finite epoch is fine; of the NaN one, never
                    counts["fault runs that wrote files"] += outcome == "ok" and ckpt.exists()
                else:
                    counts["false alarms (good runs refused)"] += outcome != "ok"
    huge = [
        {"model": "mlp", "train_size": 200, "test_size": 50, "sgd": {"epochs": 10**8}},
        {"model": "resnet18-mnist", "sgd": {"batch_size": 60_000, "epochs": 1}},
        {"model": "resnet18-mnist", "sgd": {"epochs": 10**5}},
    ]
    for overrides in huge:
        counts["oversized configs tried"] += 1
        start = time.perf_counter()
        try:
            train_model(
                job_config(None, {"dataset": "mnist", **overrides}), open_context("cpu", tmp)
            )
            counts["oversized configs run"] += 1
        except ConfigError as err:
            counts["oversized configs refused"] += 1
            counts["  of them by the resource guard"] += str(err).startswith("resources:")
            counts["messages not one short line"] += "\n" in str(err) or len(str(err)) > 500
            examples.setdefault("refused featavg train", str(err))
        except Exception:  # noqa: BLE001
            counts["oversized configs that allocated or crashed"] += 1
            examples.setdefault("TRACEBACK train", traceback.format_exc(limit=3))
        # loading the dataset (a few seconds) comes first: the cache is keyed by its content
        counts["train refusals slower than 20 s"] += time.perf_counter() - start > 20


MEASURE = """
import json, os, sys, threading, time
from featavg.experiments.registry import get_experiment
from featavg.experiments.runner import run_experiment
from featavg.config import build_config
def rss():  # resident bytes now (ru_maxrss would count import-time peaks)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
name, overrides, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
exp = get_experiment(name)
est = exp.estimate([build_config(exp.config_cls, overrides)])
before, peak, running = rss(), [0], [True]
def watch():
    while running[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)
thread = threading.Thread(target=watch)
thread.start()
run_experiment(name, overrides=overrides, out=out, ctx=open_context("cpu"))
running[0] = False
thread.join()
print(json.dumps({"estimate": est.memory, "measured": peak[0] - before}))
"""


def estimate_vs_measured(tmp: Path, quick: bool) -> list[str]:
    """Estimated vs measured peak memory growth of a few real runs (fresh processes)."""
    runs = [
        (EXP, {"data": {"d": 3072, "n_train": 1000, "n_test": 1000}, "seeds": 10}),
        (
            EXP,
            {
                "data": {"d": 1000, "n_train": 4000, "n_test": 1000},
                "seeds": 4,
                "train": {"steps": 20},
            },
        ),
        ("synthetic-robustness", {"seeds": 5}),
    ]
    lines = []
    for i, (name, overrides) in enumerate(runs[:1] if quick else runs):
        proc = subprocess.run(
            [sys.executable, "-c", MEASURE, name, json.dumps(overrides), str(tmp / f"m{i}")],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            got = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            lines.append(f"  {name} {overrides}: measurement failed: {proc.stderr[-300:]}")
            continue
        ratio = got["estimate"] / max(got["measured"], 1)
        lines.append(
            f"  {name} {json.dumps(overrides)}: estimate {got['estimate'] / 2**20:.0f} MiB, "
            f"measured peak growth {got['measured'] / 2**20:.0f} MiB (ratio {ratio:.2f})"
        )
    return lines


def controls(tmp: Path, full: bool) -> None:
    """Every synthetic experiment's tiny config (``full``: also its reproduce config) must
    run: the fault checks raise no false alarm on the experiments themselves."""
    for name, exp in EXPERIMENTS.items():
        if name.startswith("synthetic"):
            attempt(f"control {name} tiny", name, dict(exp.tiny), False, tmp)
            if full:
                attempt(
                    f"control {name} reproduce",
                    name,
                    exp.preset("reproduce") if "reproduce" in exp.presets else {},
                    False,
                    tmp,
                )


DRAW = synthetic_common.sample_synthetic_stacked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--full", action="store_true", help="also every reproduce config")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="featavg-guards-") as tmp_name:
        tmp = Path(tmp_name)
        numerical_faults(tmp, rng, args.quick)
        sweeps(tmp, rng, args.quick)
        resource_guards(tmp)
        image_training(tmp, args.quick)
        controls(tmp, args.full)
        measured = estimate_vs_measured(tmp, args.quick)
    print(f"reliability_guards: {time.perf_counter() - start:.0f} s")
    for key in sorted(counts):
        print(f"  {key:48s} {counts[key]}")
    print("estimate vs measured memory:")
    print("\n".join(measured))
    print("one message per kind:")
    for kind, text in examples.items():
        print(f"  [{kind}] {text.strip()[:300]}")
    must_be_zero = [
        "tracebacks",
        "faults saved as normal results",
        "fault runs that wrote files",
        "false alarms (good runs refused)",
        "messages not one short line",
        "sweep cells with the wrong status",
        "oversized configs run",
        "oversized configs that allocated or crashed",
        "refusals slower than 2 s",
        "train refusals slower than 20 s",
    ]
    bad = {key: counts[key] for key in must_be_zero if counts[key]}
    undetected = counts["faults injected"] - counts["faults detected"]
    if undetected:
        bad["faults not detected"] = undetected
    print("verdict:", "all must-be-0 counts are 0" if not bad else f"FAILED {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
