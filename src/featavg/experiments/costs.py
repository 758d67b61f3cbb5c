"""What experiment runs cost, estimated from their configs before anything is allocated.

Each experiment declares its own ``cost(cfg)`` (:class:`~featavg.experiments.spec.Experiment`);
the pieces they share are here:

* synthetic runs are made of :class:`Job` s (S members of n points in R^d with U hidden
  units, then optionally an attack): :func:`synthetic_estimate` counts S x (n_train + n_test)
  x d float32 data, S x units x d weights, the Gram matrices S x n^2 when the Gram engine is
  picked, preactivations S x units x batch, the training records, adversarial start
  directions S x n x d, PGD states S x radii x points x units;
* real-data runs (:func:`image_run_estimate`): the models trained together
  (:func:`featavg.trained_models.cost.training_estimate`), then the attacks of every
  read-out: minimum-norm steps and PGD steps per point and radius; heads on frozen
  features (:func:`features_run_estimate`) add the features and the heads' training.

The estimates count what dominates, not every temporary: treat them as good to a factor
of ~2 (:mod:`featavg.runs.guards` refuses what cannot fit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from featavg.runs.guards import F32, RUN_OVERHEAD, ResourceEstimate
from featavg.trained_models.cost import DATASET_SIZES, IMAGE_MODELS, training_estimate

# one training record: ~16 small per-member tensors (loss, accuracy, metrics) at ~400 bytes
# of Python and torch overhead each, plus 4 bytes per member
_RECORD_TENSORS, _TENSOR_OVERHEAD = 16, 400
# the read-outs every real-data run attacks (binary, group of argmax, sum, 10-way)
READOUTS = 4
# the block heads on frozen features: the backbone's feature width and the heads' outputs
# (binary and 10-class)
FEATURE_DIM, HEAD_OUTPUTS = 512, 2 + 10
# one optimiser step of a small head costs at least ~0.1 ms (Python, kernel launches)
# whatever its flops: a billion epochs of a tiny head take weeks, not the flops' seconds
STEP_FLOOR_FLOPS = 2e6


@dataclass(frozen=True)
class Job:
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


def job_estimate(job: Job, train: Any) -> ResourceEstimate:
    """Memory and flops of one :class:`Job` trained with ``train`` (a TrainConfig)."""
    from featavg.training.two_layer_engines import choose_formulation

    s, n, d, u = job.s, job.n, job.d, job.units
    batch = n if train.batch_size is None else min(train.batch_size, n)
    data = s * (n + job.n_test) * d * F32
    engine = train.formulation
    if engine == "auto":  # the trainer's own rule (it keeps Gram matrices under 2 GiB)
        engine = choose_formulation(s, u, n, d, train.steps, batch, False, F32)
    terms = {
        "data S x (n_train + n_test) x d": data,
        "weights S x units x d": 3 * s * u * d * F32,
        "preactivations S x units x batch": 4 * s * u * batch * F32,
    }
    records = train.steps // train.record_every + 2
    terms["training records"] = 2 * records * _RECORD_TENSORS * (_TENSOR_OVERHEAD + s * F32)
    step_flops = 4 * s * u * batch * d
    flops = float(train.steps) * step_flops
    if engine == "gram":
        terms["Gram matrices S x n^2"] = s * n * n * F32 + 2 * s * u * n * F32
        flops = s * n * n * d + float(train.steps) * 2 * s * u * batch * n
    if job.adversarial:
        terms["adversarial start directions S x n x d"] = 2 * s * n * d * F32
        flops += float(train.steps) * (2 * step_flops + job.adversarial * 4 * s * u * u * n)
    if job.points:
        # PGD state (S, radii, points, units + 1) with ~8 temporaries; projections of x
        terms["attack S x radii x points x units"] = 8 * s * job.radii * job.points * (u + 1) * F32
        attack = 2 * s * job.points * u * d + 7 * 8 * s * job.radii * job.points * u * u
        flops += attack * (records if job.per_record_attack else 1)
    what = max(terms, key=lambda k: terms[k])
    memory = float(sum(terms.values()))
    return ResourceEstimate(memory, memory, flops, what)


def synthetic_estimate(jobs: Sequence[Job], train: Any) -> ResourceEstimate:
    """A synthetic run made of ``jobs`` trained with ``train`` (a TrainConfig), one after
    another: the peak memory is the largest job's, the flops add up."""
    parts = [job_estimate(job, train) for job in jobs]
    peak = max(parts, key=lambda p: p.memory)
    memory = peak.memory + RUN_OVERHEAD
    return ResourceEstimate(memory, memory, sum(p.flops for p in parts), peak.what)


def radius_count(cfg: Any, default: int = 30) -> int:
    """The number of radii of a synthetic config's attack (``default`` when it has none)."""
    attack = getattr(cfg, "attack", None)
    return len(attack.radii) if attack is not None and attack.radii is not None else default


def image_run_estimate(cfg: Any) -> ResourceEstimate:
    """A real-data run (``cfg.train``, ``cfg.attack``): the models trained together
    (:func:`~featavg.trained_models.cost.training_estimate`: the binary and the 10-class
    one), then every read-out attacked on ``attack.points`` test points, ``attack.batch_size``
    at a time: the minimum-norm stage (``attack.min_norm_steps``, else the method's default)
    plus the grid stage (:func:`attack_passes`), once more for ``also_per_radius``, and the
    AutoAttack check of ``attack.verify``; all of it once per seed."""
    train, attack = cfg.train, getattr(cfg, "attack", None)
    model = train.model if train.model != "auto" else None
    names = [model or ("resnet18-cifar" if train.dataset.startswith("cifar") else "resnet18-mnist")]
    est = training_estimate(train.dataset, train.train_size, train.test_size, names * 2, train.sgd)
    if attack is None:
        return est
    _, n_test, _ = DATASET_SIZES.get(train.dataset, (60_000, 10_000, 3072))
    _, acts, fwd = IMAGE_MODELS.get(names[0], IMAGE_MODELS["resnet18-cifar"])
    points = min(attack.points or n_test, train.test_size or n_test)
    chunk = min(attack.batch_size or points, points)
    passes = attack_passes(attack)
    # the seeds run one after another: the memory of one, the time of all
    flops = (est.flops + READOUTS * 3 * fwd * points * passes) * int(getattr(cfg, "seeds", 1))
    memory = max(est.memory, chunk * acts * F32 + RUN_OVERHEAD)
    what = est.what if memory == est.memory else "attack activations of a chunk"
    return ResourceEstimate(memory, est.host, float(flops), what)


def attack_passes(attack: Any) -> float:
    """Gradient evaluations per attacked point and read-out of an image attack section:
    the minimum-norm steps, then the grid stage: PGD at every radius for per-radius,
    incremental and fmn+pgd (their worst case); :data:`DESCENT_FRACTION` of the worst
    case for a descent (fmn+apgd, +descend); then ``also_per_radius`` and
    :data:`VERIFY_PASSES` for ``verify=autoattack``."""
    from featavg.attacks.robustness_curve import CURVE_METHODS

    spec = CURVE_METHODS[attack.method]
    min_norm = 0 if spec.min_norm is None else (attack.min_norm_steps or spec.min_norm_steps)
    grid = attack.steps * len(attack.radii)  # PGD at every radius
    worst = (spec.refine_steps or attack.steps) * len(attack.radii)  # the stage's, likewise
    if spec.refine is None:
        stage = 0.0
    else:
        stage = DESCENT_FRACTION * worst if spec.descends else float(worst)
    passes = float(min_norm + stage + (grid if attack.also_per_radius else 0))
    return passes + (VERIFY_PASSES if getattr(attack, "verify", "none") == "autoattack" else 0)


# the grid stage of a descent per attacked point, as a fraction of its worst case (the
# stage at every radius of the grid), measured on the quick MNIST and Fashion-MNIST
# ResNet-18s at 21 radii beyond the 10 FMN steps: 23-26 gradient evaluations of 420 for
# fmn+apgd (benchmarks/bench_autoattack_gap.py, 200 points), ~7 of 147 for fmn+descend
# (benchmarks/bench_robustness_curve.py, 500 points): 0.05-0.06, taken x2
DESCENT_FRACTION = 0.12
# verify=autoattack per point and read-out: 3 radii x 101 gradient evaluations (100 APGD
# iterations) x the runs per point (APGD-CE, plus APGD-T over 1 target for a 2-group
# decision and 9 for the 10-way one: 4 on average over the read-outs) x the points still
# robust at the largest radii (25-60% in the benchmark's models: taken 1/2)
VERIFY_PASSES = 3 * 101 * 4 * 0.5


def features_run_estimate(cfg: Any) -> ResourceEstimate:
    """Heads on frozen features (``cifar10-features``): :func:`image_run_estimate` (the
    backbone trained when no file is given, the attacks) plus, once per seed, the features
    of every training and test image (``head.feature_batch_size`` images per backbone pass)
    and the binary and 10-class block heads (``head.width`` units per output) trained
    ``head.sgd.epochs`` epochs on them: weights, gradients and momentum, the features, a
    batch of hidden units, and every step at least :data:`STEP_FLOOR_FLOPS`."""
    est = image_run_estimate(cfg)
    train, head = cfg.train, cfg.head
    n_train, n_test, _ = DATASET_SIZES.get(train.dataset, (60_000, 10_000, 3072))
    n_train = min(train.train_size or n_train, n_train)
    n_test = min(train.test_size or n_test, n_test)
    _, acts, fwd = IMAGE_MODELS.get(cfg.backbone_arch, IMAGE_MODELS["resnet18-cifar"])
    units = head.width * HEAD_OUTPUTS
    batch = min(head.sgd.batch_size, n_train)
    terms = {
        "the frozen features": (n_train + n_test) * FEATURE_DIM * F32,
        "the heads' weights, gradients and momentum": 4 * units * FEATURE_DIM * F32,
        "the heads' hidden units of a batch": 4 * max(batch, n_test) * units * F32,
        "backbone activations of a feature batch": min(head.feature_batch_size, n_train)
        * acts
        * F32,
    }
    steps = head.sgd.epochs * math.ceil(n_train / batch)
    step = max(6 * batch * FEATURE_DIM * units, STEP_FLOOR_FLOPS)
    per_seed = fwd * (n_train + n_test) + steps * step
    flops = est.flops + per_seed * int(getattr(cfg, "seeds", 1))
    heads = float(sum(terms.values())) + RUN_OVERHEAD  # after the backbone's training
    what = est.what if heads <= est.memory else max(terms, key=lambda k: terms[k])
    return ResourceEstimate(max(est.memory, heads), est.host, float(flops), what)


def pair_jobs(cfg: Any) -> list[Job]:
    """The one job of a synthetic run that trains the binary and the fine-grained net on
    one data set, then attacks ``n_attack`` test points (all of them when the config has an
    attack and no ``n_attack``) at every radius of its attack."""
    data, net = cfg.data, cfg.net
    attack = getattr(cfg, "attack", None)
    points = getattr(cfg, "n_attack", None) or (data.n_test if attack is not None else 0)
    units = 2 * net.m + data.k * net.h
    return [Job(cfg.seeds, data.n_train, data.n_test, data.d, units, points, radius_count(cfg))]


def negligible(cfg: Any) -> ResourceEstimate:
    """The cost of a run that allocates nothing worth counting (a toy or a test's fake):
    the run's own overhead and no flops."""
    return ResourceEstimate(float(RUN_OVERHEAD), float(RUN_OVERHEAD), 0.0, "the run itself")
