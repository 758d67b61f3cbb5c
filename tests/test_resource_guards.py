"""Resource guards (issue 13, deliverable 2): a config is estimated before anything is
allocated and refused with one line (the estimate and the limit, exit 2) when it cannot fit
on the machine; ``--allow-large`` / ``allow_large=True`` overrides; sweep grids and
training histories cannot grow without bound."""

import math
import time

import pytest
import torch

import featavg
from featavg import runs
from featavg.api import run_sweep
from featavg.cli import main
from featavg.config import ConfigError, build_config
from featavg.experiments import synthetic_common
from featavg.experiments.registry import get_experiment
from featavg.experiments.runner import run_experiment
from featavg.runs import guards
from featavg.runs.context import open_context
from featavg.runs.guards import ResourceEstimate, check, check_grid
from featavg.sweep import plan
from featavg.trained_models.cost import training_estimate

EXP = "synthetic-alignment"
SMALL = {"data": {"d": 60, "k": 4, "n_train": 80, "n_test": 40}, "train": {"steps": 20}}
# d = n = 10^6 with 10 seeds: the data alone are 10 x 2e6 x 1e6 float32 = 80 TB
HUGE = {"data": {"d": 10**6, "n_train": 10**6, "n_test": 10**6}, "seeds": 10}
CPU = torch.device("cpu")


def _estimate(name: str, overrides: dict) -> ResourceEstimate:
    exp = get_experiment(name)
    return exp.estimate([build_config(exp.config_cls, overrides)])


@pytest.fixture
def no_sampling(monkeypatch):
    """Fail the test if any synthetic data is drawn (a refusal must come first)."""

    def refuse(*args, **kwargs):
        raise AssertionError("data were drawn before the resource check")

    monkeypatch.setattr(synthetic_common, "sample_synthetic_stacked", refuse)


def test_the_synthetic_estimate_counts_the_data_and_scales_with_them():
    # independent reference: S (n_train + n_test) d float32 values of input data
    d, n, n_test, seeds = 2000, 3000, 1000, 4
    data = seeds * (n + n_test) * d * 4
    est = _estimate(EXP, {"data": {"d": d, "n_train": n, "n_test": n_test}, "seeds": seeds})
    tensors = est.memory - guards.RUN_OVERHEAD  # the fixed part: libraries, slack
    assert data <= tensors <= 2 * data and est.what.startswith("data")
    twice = _estimate(EXP, {"data": {"d": d, "n_train": n, "n_test": n_test}, "seeds": 2 * seeds})
    assert twice.memory - guards.RUN_OVERHEAD == pytest.approx(2 * tensors, rel=0.05)
    assert twice.flops == pytest.approx(2 * est.flops, rel=0.05)


def test_every_experiment_has_an_estimate_and_its_defaults_fit_a_laptop():
    from featavg.experiments.registry import EXPERIMENTS

    for name, exp in EXPERIMENTS.items():
        for overrides in (dict(exp.tiny), {}):
            est = exp.estimate([build_config(exp.config_cls, overrides)])
            assert 0 < est.memory < 4 * 2**30, (name, guards.gib(est.memory))
            assert 0 < est.seconds(CPU) < 3600, (name, est.seconds(CPU))


def test_a_config_too_large_for_the_machine_is_refused_in_one_line(tmp_path, no_sampling):
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        run_experiment(EXP, overrides=HUGE, out=tmp_path / "run", ctx=open_context("cpu"))
    text = str(err.value)
    assert time.perf_counter() - start < 5 and "\n" not in text and len(text) < 400
    assert text.startswith(f"resources: {EXP} needs ~") and "TiB" in text
    assert "of free CPU memory" in text and "--allow-large" in text
    assert not (tmp_path / "run").exists()


def test_the_cli_exits_2_and_allow_large_overrides(tmp_path, capsys, monkeypatch):
    # figures are not the subject: skip matplotlib's rendering (~1 s per figure)
    monkeypatch.setattr(runs, "write_figure", lambda path, fig: path.write_bytes(b"png"))
    out = tmp_path / "run"
    args = ["run", EXP, *(f"--set=data.{k}={v}" for k, v in SMALL["data"].items())]
    args += ["--set=train.steps=20", "--out", str(out), "--quiet"]
    monkeypatch.setattr(guards, "available_memory", lambda: 1024.0)  # a 1 KiB machine
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("featavg: error: resources: ")
    assert "than the 1 KiB of free CPU memory" in err[0] and not out.exists()
    assert main([*args, "--allow-large"]) == 0 and (out / "summary.json").is_file()
    # the API takes the same switch
    monkeypatch.setattr(guards, "available_memory", lambda: 1024.0)
    with pytest.raises(ConfigError, match="resources: "):
        featavg.run(EXP, out=tmp_path / "api", force=True, device="cpu", **SMALL)
    done = featavg.run(EXP, out=tmp_path / "api", device="cpu", allow_large=True, **SMALL)
    assert done.summary["experiment"] == EXP


def test_time_is_bounded_too(no_sampling, tmp_path):
    # 10^12 GD steps fit in memory (records every 10^12 steps) but would never finish
    cfg = {**SMALL, "train": {"steps": 10**12, "record_every": 10**12}}
    with pytest.raises(ConfigError, match=r"resources: .* needs ~[\d.e+]+ days on CPU .* limit"):
        run_experiment(EXP, overrides=cfg, out=tmp_path / "run", ctx=open_context("cpu"))


def test_training_histories_are_bounded(no_sampling, tmp_path):
    # a record at every one of 10^9 steps: ~13 TB of small tensors, refused up front
    cfg = {**SMALL, "train": {"steps": 10**9, "record_every": 1}}
    est = _estimate(EXP, cfg)
    assert est.what == "training records" and est.memory > 10**12
    with pytest.raises(ConfigError, match="training records"):
        run_experiment(EXP, overrides=cfg, out=tmp_path / "run", ctx=open_context("cpu"))


def test_cuda_runs_check_device_and_host_memory(monkeypatch):
    est = ResourceEstimate(memory=8 * 2**30, host=2 * 2**30, flops=1e9, what="data")
    cuda = torch.device("cuda")
    monkeypatch.setattr(guards, "device_memory", lambda device: 4 * 2**30)
    with pytest.raises(ConfigError, match=r"needs ~8 GiB \(data; .* 4 GiB of free CUDA memory"):
        check("x", est, cuda)
    monkeypatch.setattr(guards, "device_memory", lambda device: 16 * 2**30)
    monkeypatch.setattr(guards, "available_memory", lambda: 1 * 2**30)
    with pytest.raises(ConfigError, match=r"needs ~2 GiB .* 1 GiB of free CPU memory"):
        check("x", est, cuda)
    check("x", est, cuda, allow_large=True)  # the override skips both
    check("x", None, cuda)  # no estimate: nothing to check


def test_available_memory_reads_the_machine():
    free = guards.available_memory()
    assert 0 < free < math.inf
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
    assert free <= total


def test_an_absurd_sweep_grid_is_refused_before_any_cell_is_planned(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "build_config", lambda *a, **k: pytest.fail("a cell was built"))
    grid = {"train.lr": [10.0**-i for i in range(1, 201)], "seed": list(range(100))}
    with pytest.raises(ConfigError, match=r"--grid: 20000 cells \(200 x 100\), more than .*10000"):
        run_sweep(EXP, grid, overrides=SMALL, out=tmp_path / "s", progress=False)
    assert check_grid(grid, allow_large=True) == 20000
    assert not (tmp_path / "s").exists()


def test_a_sweep_checks_the_cells_a_pool_runs_at_once(tmp_path, monkeypatch):
    grid = {"data.k": [3, 4]}  # two groups (k is not a batch field)
    base = {"data": {"d": 60, "n_train": 80, "n_test": 40}, "train": SMALL["train"]}
    one = _estimate(EXP, {"data": {**base["data"], "k": 4}, "train": SMALL["train"]})
    # room for one cell (and its worker) but not two: a pool of 2 is refused
    room = one.memory + guards.WORKER_OVERHEAD
    monkeypatch.setattr(guards, "available_memory", lambda: 1.5 * room)
    with pytest.raises(ConfigError, match=f"resources: sweep {EXP} needs"):
        run_sweep(EXP, grid, overrides=base, out=tmp_path / "p", executor="process", workers=2)
    monkeypatch.setattr(guards, "available_memory", lambda: 0.5 * one.memory)
    with pytest.raises(ConfigError, match=f"resources: sweep {EXP} needs"):
        run_sweep(EXP, grid, overrides=base, out=tmp_path / "l", progress=False)
    assert not (tmp_path / "p").exists() and not (tmp_path / "l").exists()


def test_the_image_estimate_follows_the_batch_and_the_model():
    small = _estimate("mnist-robustness", {"train": {"sgd": {"batch_size": 32}}})
    big = _estimate("mnist-robustness", {"train": {"sgd": {"batch_size": 4096}}})
    assert big.memory > small.memory
    cnn = _estimate("mnist-robustness", {"train": {"model": "cnn"}})
    assert cnn.memory < small.memory and cnn.flops < small.flops


# ---------------------------------------------------------------- featavg train

# a model that trains in about a second on the 5000-digit MNIST subset (no MNIST files here)
TRAIN_SMALL = [
    "--data",
    "mnist",
    "--model",
    "mlp",
    "--set",
    "train_size=200",
    "--set",
    "test_size=50",
]


def test_the_training_estimate_follows_batch_model_epochs_and_data():
    from featavg.training.image_sgd import SGDConfig

    def est(dataset="cifar10", models=("resnet18-cifar",), **sgd):
        return training_estimate(dataset, None, None, list(models), SGDConfig(**sgd))

    base = est()
    assert est(batch_size=1024).memory > base.memory
    assert est(batch_size=10**9).memory == est(batch_size=50_000).memory  # cut at the data
    assert est(epochs=20).flops == pytest.approx(2 * base.flops)
    assert est(models=("resnet18-cifar", "resnet18-cifar")).memory > base.memory
    assert est(dataset="mnist", models=("resnet18-mnist",)).memory < base.memory
    # the paper's CIFAR recipe at full batch needs hundreds of GiB: refused on this machine
    with pytest.raises(ConfigError, match=r"^resources: train resnet18-cifar needs ~.*TiB|GiB"):
        check("train resnet18-cifar", est(batch_size=50_000), CPU)


@pytest.mark.slow  # loads the 5000-digit subset four times; torch.optim imports torch._dynamo
def test_featavg_train_refuses_a_training_too_large_and_allow_large_overrides(
    tmp_path, capsys, monkeypatch
):
    root = tmp_path / "runs"
    # over a CPU-week of training: 10^8 epochs of even a tiny MLP
    code = main(["train", *TRAIN_SMALL, "--epochs", str(10**8), "--root", str(root)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert "resources: train mlp needs ~" in err and "--allow-large" in err
    assert not list((root / "models").glob("[!.]*"))  # nothing trained, nothing written
    # with the machine's limit shrunk, the small training is refused; --allow-large runs it
    monkeypatch.setattr(guards, "MAX_SECONDS", 1e-9)
    args = ["train", *TRAIN_SMALL, "--epochs", "1", "--root", str(root), "--quiet"]
    assert main(args) == 2 and "resources: train mlp" in capsys.readouterr().err
    assert main([*args, "--allow-large"]) == 0
    assert capsys.readouterr().out.startswith("train: done")
    # a cached model is served without the check (nothing is allocated for it)
    assert main(args) == 0 and capsys.readouterr().out.startswith("train: cached")
    with pytest.raises(ConfigError, match="resources: train mlp"):  # the API checks too
        featavg.train(
            root=root,
            dataset="mnist",
            model="mlp",
            seed=1,
            train_size=200,
            test_size=50,
            sgd={"epochs": 1},
            device="cpu",
        )
