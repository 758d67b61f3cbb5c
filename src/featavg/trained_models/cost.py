"""What training image models costs, estimated from the config alone (no data loaded):
the tables of the builtin architectures and datasets, and :func:`training_estimate`
(``featavg train`` and every experiment that trains models check it before training)."""

from __future__ import annotations

from typing import Any

from featavg.runs.guards import F32, RUN_OVERHEAD, ResourceEstimate

# builtin image models: (parameters, float activations kept per image for a training step
# at the dataset's resolution, forward flops per image); ResNet-18 counts follow its stem
IMAGE_MODELS = {
    "resnet18-mnist": (11.2e6, 0.15e6, 0.07e9),
    "resnet18-cifar": (11.2e6, 1.7e6, 1.1e9),
    "resnet18-pretrained": (11.2e6, 0.45e6, 0.3e9),
    "resnet18-imagenet": (11.2e6, 0.12e6, 0.08e9),
    "cnn": (0.1e6, 0.05e6, 0.01e9),
    "mlp": (0.8e6, 1e3, 1.6e6),
}

# dataset: (train images, test images, values per image)
DATASET_SIZES = {
    "mnist": (60_000, 10_000, 784),
    "fashion-mnist": (60_000, 10_000, 784),
    "mnist-5k": (5_000, 5_000, 784),
    "cifar10": (50_000, 10_000, 3072),
    "cifar10-synthetic": (50_000, 10_000, 3072),
}

# a no-grad evaluation forward keeps only a few layers' outputs alive, not every layer's
# as a training step does: about this fraction of the per-image training activations
EVAL_FRACTION = 0.1


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
    loaded); coarse: good to a factor of ~2."""
    n_train, n_test, values = DATASET_SIZES.get(dataset, (60_000, 10_000, 3072))
    n_train = min(train_size or n_train, n_train)  # a subset never exceeds the dataset
    n_test = min(test_size or n_test, n_test)
    specs = [IMAGE_MODELS.get(name, IMAGE_MODELS["resnet18-cifar"]) for name in models]
    params = sum(p for p, _, _ in specs)
    # a batch larger than the data is the whole data (the trainer cuts it there)
    train_batch, eval_batch = min(sgd.batch_size, n_train), min(sgd.eval_batch_size, n_test)
    batch = max(
        sum(train_batch * acts for _, acts, _ in specs),
        sum(eval_batch * acts * EVAL_FRACTION for _, acts, _ in specs),
    )
    terms = {
        "the uint8 dataset": float((n_train + n_test) * values),
        "the models' weights, gradients and momentum": 4 * params * F32,
        "the models' activations of a batch": batch * F32,
    }
    fwd = sum(f for _, _, f in specs)
    flops = (3 * fwd * n_train + fwd * n_test) * sgd.epochs
    what = max(terms, key=lambda k: terms[k])
    memory = float(sum(terms.values())) + RUN_OVERHEAD
    host = terms["the uint8 dataset"] + params * F32 + RUN_OVERHEAD
    return ResourceEstimate(memory, host, float(flops), what)
