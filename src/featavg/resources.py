"""Resource guards: estimate what a run needs before it allocates; refuse what cannot fit.

:func:`estimate` gives a coarse :class:`ResourceEstimate` of a run (or of several configs
run as one ensemble): the peak bytes of its largest tensors and a flop count turned into a
rough wall time. An experiment may supply its own (``Experiment.resources(cfg)``); otherwise
the generic estimators here read the config's shape:

* synthetic configs (``data``, ``net``, ``train``, ``seeds``; the experiments' extra fields
  such as ``ks``/``ds``, ``init_stds``, ``eps``, ``attack``, ``n_attack``): members
  S x (n_train + n_test) x d float32 data, S x units x d weights, the Gram matrices
  S x n^2 when the Gram engine is picked, preactivations S x units x batch, the training
  records, adversarial start directions S x n x d, PGD states S x radii x points x units;
* image configs (``train.dataset``, ``train.sgd``, ``attack``): the uint8 dataset, two
  models (weights, gradients, momentum) and a batch of activations per model, per-image
  activation sizes from a small table of the builtin architectures.

``featavg train`` (:mod:`featavg.trained_models`) uses :func:`training_estimate`: the
dataset and the models trained together, from the config alone (a cached model is served
without the check, as a cached run is).

Anything else is not checked. The estimates count what dominates, not every temporary:
treat them as good to a factor of ~2. :func:`check` refuses (a
:class:`~featavg.config.ConfigError`, one line with the estimate and the limit) a run
whose memory exceeds what the machine has free (``MemAvailable`` of /proc/meminfo and the
cgroup limit; the free CUDA memory on CUDA) or whose time exceeds :data:`MAX_SECONDS`;
``allow_large=True`` (CLI ``--allow-large``) skips both. Sweeps refuse grids of more than
:data:`MAX_SWEEP_CELLS` cells the same way (:func:`check_grid`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featavg.config import ConfigError
from featavg.machine import available_memory

if TYPE_CHECKING:  # torch loads only when a run does (the CLI's parser needs none of it)
    import torch

MAX_SECONDS = 7 * 24 * 3600.0  # a run estimated longer than a week is refused
MAX_SWEEP_CELLS = 10_000  # a larger grid is refused (its plan alone is ~1 s per 1000 cells)
# rough sustained float32 throughput, flop/s: 2 CPU cores (the `runtime` of every experiment
# is measured there) and one GPU; used only for the time estimate
CPU_FLOPS, CUDA_FLOPS = 2e10, 1e13
OVERRIDE = "--allow-large (allow_large=True)"
_F32 = 4
# what a run adds beyond its tensors: the libraries it loads (matplotlib for the figures),
# allocator slack; measured 40-130 MiB growth beyond the tensors on synthetic runs
RUN_OVERHEAD = 128 * 2**20
# a spawned pool worker: its own interpreter with torch and featavg loaded
WORKER_OVERHEAD = 384 * 2**20
# one training record: ~16 small per-member tensors (loss, accuracy, metrics) at ~400 bytes
# of Python and torch overhead each, plus 4 bytes per member
_RECORD_TENSORS, _TENSOR_OVERHEAD = 16, 400


@dataclass(frozen=True)
class ResourceEstimate:
    """memory: peak bytes on the compute device; host: peak bytes of CPU memory (equal to
    ``memory`` for CPU runs; data are drawn or loaded on the host first); flops: total
    floating-point operations; what: the dominant term, for the refusal message."""

    memory: float
    host: float
    flops: float
    what: str

    def seconds(self, device: torch.device) -> float:
        """Rough wall time: flops at :data:`CPU_FLOPS` or :data:`CUDA_FLOPS`."""
        return self.flops / (CUDA_FLOPS if device.type == "cuda" else CPU_FLOPS)

    def __add__(self, other: ResourceEstimate) -> ResourceEstimate:
        """Two workloads alive at once (e.g. the cells of a process pool)."""
        what = self.what if self.memory >= other.memory else other.what
        return ResourceEstimate(
            self.memory + other.memory, self.host + other.host, self.flops + other.flops, what
        )


def gib(nbytes: float) -> str:
    """'3.2 GiB', '512 MiB', '12 KiB': a byte count for a one-line message."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{nbytes:.0f} B"


def duration(seconds: float) -> str:
    """'40 s', '3.5 h', '12 days'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.3g} days"


# ---------------------------------------------------------------- the machine


def device_memory(device: torch.device) -> float:
    """Free memory of the compute device: the CUDA free memory, else :func:`available_memory`."""
    if device.type == "cuda":
        import torch

        return float(torch.cuda.mem_get_info(device)[0])
    return available_memory()


# ---------------------------------------------------------------- estimates


def estimate(exp: Any, cfgs: list[Any]) -> ResourceEstimate | None:
    """The estimate of running ``cfgs`` of experiment ``exp`` as one ensemble (one config:
    a plain run): ``exp.resources(cfg)`` summed when the experiment has that hook, else the
    generic estimators of this module; None when neither applies."""
    hook = getattr(exp, "resources", None)
    parts = [hook(c) if hook is not None else generic_estimate(c) for c in cfgs]
    known = [p for p in parts if p is not None]
    if not known or len(known) < len(parts):
        return None
    total = known[0]
    for part in known[1:]:
        total = total + part
    return total


def generic_estimate(cfg: Any) -> ResourceEstimate | None:
    """:func:`synthetic_estimate` or :func:`image_estimate` by the config's fields."""
    if all(hasattr(cfg, f) for f in ("data", "net", "train", "seeds")):
        return synthetic_estimate(cfg)
    train = getattr(cfg, "train", None)
    if train is not None and hasattr(train, "sgd") and hasattr(train, "dataset"):
        return image_estimate(cfg)
    return None


@dataclass(frozen=True)
class _Job:
    """One synthetic training job: S members of n points in R^d, `units` hidden units in
    all (binary 2m + fine-grained k h), then an attack of `points` test points at `radii`
    radii (`per_record_attack`: at every training record, as synthetic-dynamics)."""

    s: int
    n: int
    n_test: int
    d: int
    units: int
    points: int = 0
    radii: int = 0
    adversarial: int = 0  # PGD steps per GD step of adversarial training (0: none)
    per_record_attack: bool = False


def _synthetic_jobs(cfg: Any) -> list[_Job]:
    """The training jobs of a synthetic config, read from its fields (module docstring)."""
    data, net, seeds = cfg.data, cfg.net, cfg.seeds
    attack = getattr(cfg, "attack", None)
    radii = len(attack.radii) if attack is not None and attack.radii is not None else 30
    units = 2 * net.m + data.k * net.h
    if hasattr(cfg, "ks") and hasattr(cfg, "ds"):  # synthetic-scaling: one job per setting
        pts, points = cfg.points_per_cluster, cfg.n_test
        settings = [(cfg.d_for_k, k) for k in cfg.ks] + [(d, cfg.k_for_d) for d in cfg.ds]
        nr = len(cfg.radii_rel)
        return [
            _Job(seeds, pts * k, points, d, 2 * net.m + k * net.h, points, nr) for d, k in settings
        ]
    if hasattr(cfg, "init_stds"):  # synthetic-ablations: one ensemble per n, then adversarial
        count = 1 + len(cfg.init_stds) + cfg.he_init + len(cfg.lrs) + len(cfg.noise_stds)
        count += len(cfg.max_cosines) + len(cfg.norm_ranges)
        jobs = [_Job(seeds * count, data.n_train, data.n_test, data.d, units)]
        jobs += [_Job(seeds, n, data.n_test, data.d, units) for n in cfg.ns]
        jobs += [_Job(seeds, n, data.n_test, data.d, units) for n, _ in cfg.n_lrs]
        if cfg.adversarial_eps:
            s = seeds * len(cfg.adversarial_eps)
            jobs.append(_Job(s, data.n_train, data.n_test, data.d, 2 * cfg.adversarial_m, 0, 0, 7))
        return jobs
    if hasattr(cfg, "eps") and hasattr(cfg, "pgd_steps"):  # synthetic-adversarial
        s = seeds * len(cfg.eps)
        return [
            _Job(s, data.n_train, data.n_test, data.d, 2 * net.m, data.n_test, radii, cfg.pgd_steps)
        ]
    points = getattr(cfg, "n_attack", None) or (data.n_test if attack is not None else 0)
    if hasattr(cfg, "radius_grid"):  # synthetic-dynamics: attacks at every record
        return [
            _Job(
                seeds,
                data.n_train,
                data.n_test,
                data.d,
                units,
                points,
                len(cfg.radius_grid()),
                0,
                True,
            )
        ]
    return [_Job(seeds, data.n_train, data.n_test, data.d, units, points, radii)]


def _job_estimate(job: _Job, train: Any) -> ResourceEstimate:
    """Memory and flops of one :class:`_Job` trained with ``train`` (a TrainConfig)."""
    from featavg.training.two_layer_engines import choose_formulation

    s, n, d, u = job.s, job.n, job.d, job.units
    batch = n if train.batch_size is None else min(train.batch_size, n)
    data = s * (n + job.n_test) * d * _F32
    engine = train.formulation
    if engine == "auto":  # the trainer's own rule (it keeps Gram matrices under 2 GiB)
        engine = choose_formulation(s, u, n, d, train.steps, batch, False, _F32)
    terms = {
        "data S x (n_train + n_test) x d": data,
        "weights S x units x d": 3 * s * u * d * _F32,
        "preactivations S x units x batch": 4 * s * u * batch * _F32,
    }
    records = train.steps // train.record_every + 2
    terms["training records"] = 2 * records * _RECORD_TENSORS * (_TENSOR_OVERHEAD + s * _F32)
    step_flops = 4 * s * u * batch * d
    flops = float(train.steps) * step_flops
    if engine == "gram":
        terms["Gram matrices S x n^2"] = s * n * n * _F32 + 2 * s * u * n * _F32
        flops = s * n * n * d + float(train.steps) * 2 * s * u * batch * n
    if job.adversarial:
        terms["adversarial start directions S x n x d"] = 2 * s * n * d * _F32
        flops += float(train.steps) * (2 * step_flops + job.adversarial * 4 * s * u * u * n)
    if job.points:
        # PGD state (S, radii, points, units + 1) with ~8 temporaries; projections of x
        terms["attack S x radii x points x units"] = 8 * s * job.radii * job.points * (u + 1) * _F32
        attack = 2 * s * job.points * u * d + 7 * 8 * s * job.radii * job.points * u * u
        flops += attack * (records if job.per_record_attack else 1)
    what = max(terms, key=lambda k: terms[k])
    memory = float(sum(terms.values()))
    return ResourceEstimate(memory, memory, flops, what)


def synthetic_estimate(cfg: Any) -> ResourceEstimate:
    """A synthetic config: its jobs run one after another, so the peak memory is the
    largest job's and the flops add up (module docstring)."""
    parts = [_job_estimate(job, cfg.train) for job in _synthetic_jobs(cfg)]
    peak = max(parts, key=lambda p: p.memory)
    memory = peak.memory + RUN_OVERHEAD
    return ResourceEstimate(memory, memory, sum(p.flops for p in parts), peak.what)


# builtin image models: (parameters, float activations kept per image for a training step
# at the dataset's resolution, forward flops per image); ResNet-18 counts follow its stem
_IMAGE_MODELS = {
    "resnet18-mnist": (11.2e6, 0.15e6, 0.07e9),
    "resnet18-cifar": (11.2e6, 1.7e6, 1.1e9),
    "resnet18-pretrained": (11.2e6, 0.45e6, 0.3e9),
    "resnet18-imagenet": (11.2e6, 0.12e6, 0.08e9),
    "cnn": (0.1e6, 0.05e6, 0.01e9),
    "mlp": (0.8e6, 1e3, 1.6e6),
}
# dataset: (train images, test images, values per image)
_DATASETS = {
    "mnist": (60_000, 10_000, 784),
    "fashion-mnist": (60_000, 10_000, 784),
    "mnist-5k": (5_000, 5_000, 784),
    "cifar10": (50_000, 10_000, 3072),
    "cifar10-synthetic": (50_000, 10_000, 3072),
}


def image_estimate(cfg: Any) -> ResourceEstimate:
    """A real-data robustness config: the uint8 dataset on the device, two models trained
    together (weights, gradients, momentum, a batch of activations each), then a PGD
    attack of ``attack.points`` test points over every radius, ``attack.batch_size`` at a
    time (module docstring). Coarse: per-image sizes come from :data:`_IMAGE_MODELS`."""
    train, attack = cfg.train, getattr(cfg, "attack", None)
    n_train, n_test, values = _DATASETS.get(train.dataset, (60_000, 10_000, 3072))
    n_train, n_test = train.train_size or n_train, train.test_size or n_test
    default = "resnet18-mnist" if values == 784 else "resnet18-cifar"
    params, acts, fwd = _IMAGE_MODELS.get(train.model, _IMAGE_MODELS[default])
    sgd = train.sgd
    terms = {
        "the uint8 dataset": float((n_train + n_test) * values),
        "two models' weights, gradients and momentum": 2 * 4 * params * _F32,
        "two models' activations of a batch": 2 * sgd.batch_size * acts * _F32,
    }
    flops = 2 * 3 * fwd * n_train * sgd.epochs + 2 * fwd * n_test
    if attack is not None:
        points = attack.points or n_test
        chunk = min(attack.batch_size or points, points)
        terms["attack activations of a chunk"] = chunk * acts * _F32
        flops += 3 * fwd * points * len(attack.radii) * attack.steps
    what = max(terms, key=lambda k: terms[k])
    memory = float(sum(terms.values())) + RUN_OVERHEAD
    host = terms["the uint8 dataset"] + 2 * params * _F32 + RUN_OVERHEAD
    return ResourceEstimate(memory, host, flops, what)


# a no-grad evaluation forward keeps only a few layers' outputs alive, not every layer's
# as a training step does: about this fraction of the per-image training activations
_EVAL_FRACTION = 0.1


def training_estimate(
    dataset: str,
    train_size: int | None,
    test_size: int | None,
    models: list[str],
    sgd: Any,
) -> ResourceEstimate:
    """``featavg train``: the builtin image ``models`` (resolved names) trained together in
    one epoch loop of ``sgd`` (epochs, batch_size, eval_batch_size) on ``dataset`` cut to
    ``train_size`` / ``test_size`` images: the uint8 dataset, each model's weights,
    gradients and momentum and its activations of a training batch (or, when larger, of an
    evaluation batch), a test-set evaluation every epoch. From the config alone (no data
    loaded); coarse like :func:`image_estimate`."""
    n_train, n_test, values = _DATASETS.get(dataset, (60_000, 10_000, 3072))
    n_train = min(train_size or n_train, n_train)  # a subset never exceeds the dataset
    n_test = min(test_size or n_test, n_test)
    specs = [_IMAGE_MODELS.get(name, _IMAGE_MODELS["resnet18-cifar"]) for name in models]
    params = sum(p for p, _, _ in specs)
    # a batch larger than the data is the whole data (the trainer cuts it there)
    train_batch, eval_batch = min(sgd.batch_size, n_train), min(sgd.eval_batch_size, n_test)
    batch = max(
        sum(train_batch * acts for _, acts, _ in specs),
        sum(eval_batch * acts * _EVAL_FRACTION for _, acts, _ in specs),
    )
    terms = {
        "the uint8 dataset": float((n_train + n_test) * values),
        "the models' weights, gradients and momentum": 4 * params * _F32,
        "the models' activations of a batch": batch * _F32,
    }
    fwd = sum(f for _, _, f in specs)
    flops = (3 * fwd * n_train + fwd * n_test) * sgd.epochs
    what = max(terms, key=lambda k: terms[k])
    memory = float(sum(terms.values())) + RUN_OVERHEAD
    host = terms["the uint8 dataset"] + params * _F32 + RUN_OVERHEAD
    return ResourceEstimate(memory, host, float(flops), what)


# ---------------------------------------------------------------- the guards


def check(
    name: str, est: ResourceEstimate | None, device: torch.device, allow_large: bool = False
) -> None:
    """Refuse (a one-line :class:`ConfigError`: estimate, limit, the override) an estimate
    that needs more memory than is free on ``device`` (and on the host) or more time than
    :data:`MAX_SECONDS`. Nothing to check without an estimate or with ``allow_large``."""
    if est is None or allow_large:
        return
    where = "CUDA" if device.type == "cuda" else "CPU"
    limits = [(est.memory, device_memory(device), f"free {where} memory")]
    if device.type == "cuda":
        limits.append((est.host, available_memory(), "free CPU memory"))
    for need, have, label in limits:
        if need > have:
            raise ConfigError(
                f"resources: {name} needs ~{gib(need)} ({est.what}; a coarse estimate), more "
                f"than the {gib(have)} of {label}; make the config smaller, or pass "
                f"{OVERRIDE} to run anyway"
            )
    seconds = est.seconds(device)
    if seconds > MAX_SECONDS:
        raise ConfigError(
            f"resources: {name} needs ~{duration(seconds)} on {where} ({est.flops:.2g} flop; a "
            f"coarse estimate), more than the {duration(MAX_SECONDS)} limit; make the config "
            f"smaller, or pass {OVERRIDE} to run anyway"
        )


def check_grid(grid: dict[str, list[Any]], allow_large: bool = False) -> int:
    """The number of cells of ``grid``; a ConfigError above :data:`MAX_SWEEP_CELLS`
    (unless ``allow_large``), before any cell config is built."""
    cells = math.prod(len(values) for values in grid.values())
    if cells > MAX_SWEEP_CELLS and not allow_large:
        sizes = " x ".join(str(len(v)) for v in grid.values())
        raise ConfigError(
            f"--grid: {cells} cells ({sizes}), more than the limit of {MAX_SWEEP_CELLS}; "
            f"use fewer values, or pass {OVERRIDE} to run anyway"
        )
    return cells
