"""What the synthetic experiments share: the replicate seeds, and training the binary and
the fine-grained net on every replicate's own data as two ensembles."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from featavg.data.synthetic import (
    SyntheticConfig,
    SyntheticDataset,
    check_dataset,
    sample_synthetic_stacked,
)
from featavg.metrics.alignment import binary_alignment, cosine_matrix, multiclass_alignment
from featavg.models.two_layer import (
    NetConfig,
    TwoLayerEnsemble,
    binary_ensemble,
    multiclass_ensemble,
)
from featavg.training import Record, TrainConfig, TrainOptions, train_many
from featavg.training.two_layer_gd import TwoLayerRecordHook

# extra_metrics(data, member seeds) -> (binary hook, fine-grained hook), see train_pair
ExtraMetrics = Callable[
    [SyntheticDataset, list[int]], tuple[TwoLayerRecordHook, TwoLayerRecordHook]
]


class SyntheticRunConfig(BaseModel):
    """Data, nets, training and seeds of a synthetic experiment (defaults: the paper)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    data: SyntheticConfig = SyntheticConfig()
    net: NetConfig = NetConfig()
    train: TrainConfig = TrainConfig()
    seed: int = Field(0, ge=0, description="replicate i uses seed + i for data and init")
    seeds: int = Field(1, ge=1, description="number of independent replicates")


def replicate_seeds(cfg: SyntheticRunConfig) -> list[int]:
    """Seeds of the replicates: seed, seed + 1, ..., seed + seeds - 1."""
    return [cfg.seed + i for i in range(cfg.seeds)]


@dataclass
class TrainedPair:
    """Both nets trained on each replicate's data (every tensor has a leading axis S)."""

    seeds: list[int]
    data: SyntheticDataset
    binary: TwoLayerEnsemble
    multiclass: TwoLayerEnsemble
    records_binary: list[Record]
    records_multiclass: list[Record]


# the data of every synthetic experiment's ``tiny`` config: a run in seconds (tests)
TINY_DATA = {"d": 60, "k": 4, "n_train": 80, "n_test": 40}

# config fields that may differ between the configs trained together by train_pairs
BATCH_FIELDS = ("train.lr", "net.init_std")


def _without_batch_fields(cfg: SyntheticRunConfig) -> dict[str, Any]:
    dump = cfg.model_dump(mode="json")
    for key in BATCH_FIELDS:
        section, field = key.split(".")
        dump[section].pop(field, None)
    return dump


def train_pair(
    cfg: SyntheticRunConfig,
    device: torch.device,
    progress: bool = False,
    data_cfg: SyntheticConfig | None = None,
    record_alignment: bool = True,
    extra_metrics: ExtraMetrics | None = None,
) -> TrainedPair:
    """Train the binary net on y and the fine-grained net on the cluster labels, recording
    the alignment metrics along the way unless ``record_alignment`` is False (``data_cfg``
    overrides ``cfg.data``). ``extra_metrics(data, seeds) -> (binary_fn, multiclass_fn)``
    adds per-record metrics fn(step, model) -> {name: (S,)} beside the alignment ones."""
    return train_pairs([cfg], device, progress, data_cfg, record_alignment, extra_metrics)[0]


def train_pairs(
    cfgs: Sequence[SyntheticRunConfig],
    device: torch.device,
    progress: bool = False,
    data_cfg: SyntheticConfig | None = None,
    record_alignment: bool = True,
    extra_metrics: ExtraMetrics | None = None,
) -> list[TrainedPair]:
    """:func:`train_pair` for several configs that differ only in :data:`BATCH_FIELDS`
    (learning rate, init std), all trained as one ensemble: a member per (config, seed)
    with its own rate and init scale. Returns one :class:`TrainedPair` per config."""
    base = cfgs[0]
    if any(_without_batch_fields(c) != _without_batch_fields(base) for c in cfgs[1:]):
        raise ValueError(f"configs: may differ only in {', '.join(BATCH_FIELDS)}")
    data_cfg = data_cfg or base.data
    seeds = replicate_seeds(base)
    data = sample_synthetic_stacked(data_cfg, seeds)
    check_dataset(data)  # whatever drew it: zero-norm centers or NaN never reach training
    if len(cfgs) > 1:  # every config trains on the same replicates
        data = SyntheticDataset(
            **{f.name: torch.cat([getattr(data, f.name)] * len(cfgs)) for f in fields(data)}
        )
    data = data.to(device)
    member_seeds = seeds * len(cfgs)
    stds = [c.net.init_std for c in cfgs for _ in seeds]
    rates = torch.tensor([c.train.lr for c in cfgs for _ in seeds])
    extra_b, extra_m = extra_metrics(data, member_seeds) if extra_metrics else (None, None)

    def binary_metrics(step: int, model: TwoLayerEnsemble) -> dict[str, torch.Tensor]:
        cos = cosine_matrix(model.weight, data.centers)
        out = binary_alignment(cos, model.unit_sign, data.signs)
        return {**out, **extra_b(step, model)} if extra_b else out

    def multiclass_metrics(step: int, model: TwoLayerEnsemble) -> dict[str, torch.Tensor]:
        out = multiclass_alignment(cosine_matrix(model.weight, data.centers), model.unit_class)
        return {**out, **extra_m(step, model)} if extra_m else out

    binary = binary_ensemble(member_seeds, data_cfg.d, base.net, init_std=stds).to(device)
    multi = multiclass_ensemble(member_seeds, data_cfg.d, data_cfg.k, base.net, init_std=stds)
    multi = multi.to(device)
    # one loop for both nets: the Gram formulation then reads each data set once per step
    rec_b, rec_m = train_many(
        [binary, multi],
        data.x_train,
        [data.y_train, data.c_train],
        base.train,
        lr=rates.to(device),
        seed=base.seed,
        on_record=[binary_metrics, multiclass_metrics] if record_alignment else None,
        options=TrainOptions(progress=progress),
    )
    pairs = []
    for c in range(len(cfgs)):
        idx = slice(c * len(seeds), (c + 1) * len(seeds))
        pairs.append(
            TrainedPair(
                seeds,
                SyntheticDataset(**{f.name: getattr(data, f.name)[idx] for f in fields(data)}),
                binary.subset(idx),
                multi.subset(idx),
                [{k: (v if k == "step" else v[idx]) for k, v in r.items()} for r in rec_b],
                [{k: (v if k == "step" else v[idx]) for k, v in r.items()} for r in rec_m],
            )
        )
    return pairs
