"""Named builtin image models for the CLI (``featavg train --model``, ``featavg probe
--builtin``) and the API.

    model = build_model("resnet18-mnist", num_classes=10, in_channels=1, image_size=28,
                        normalization=default_normalization("resnet18-mnist", "mnist"))

Every builtin is an :class:`~featavg.models.image_classifier.ImageClassifier`: pixels in
[0, 1] in, logits out, ``features`` the penultimate layer. The ResNet-18 variants follow
SPEC §3.1-§3.3; ``cnn`` and ``mlp`` are small CPU models (:mod:`.small_image`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from featavg.config import ConfigError
from featavg.models.image_classifier import (
    CIFAR_AUTHORS,
    CIFAR_PRETRAINED,
    MNIST_HALF,
    ImageClassifier,
    Normalization,
)
from featavg.models.resnet import resnet18
from featavg.models.small_image import MLP, SmallCNN
from featavg.seeding import generator as seeded_generator

# (num_classes, in_channels, image_size, generator) -> the network behind the normalisation
NetBuilder = Callable[[int, int, int, torch.Generator | None], nn.Module]

MNIST_DATASETS = ("mnist", "fashion-mnist", "mnist-5k")
CIFAR_PREFIX = "cifar10"


@dataclass(frozen=True)
class BuiltinModel:
    """A named model: its builder, what it is, and the input it requires (None: any)."""

    name: str
    description: str
    build: NetBuilder
    in_channels: int | None = None
    image_size: int | None = None


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            "resnet18-mnist",
            "ResNet-18, 1-channel 7x7/2 stem + max-pool, 28x28 -> 7x7 (SPEC §3.1)",
            lambda k, c, s, g: resnet18(k, "mnist", c, generator=g),
            in_channels=1,
            image_size=28,
        ),
        BuiltinModel(
            "resnet18-cifar",
            "ResNet-18, 3x3/1 stem without max-pool (SPEC §3.2 'standard')",
            lambda k, c, s, g: resnet18(k, "cifar", c, generator=g),
        ),
        BuiltinModel(
            "resnet18-pretrained",
            "ResNet-18, 3x3/1 stem + max-pool: huyvnphan/PyTorch_CIFAR10's layout and keys "
            "(SPEC §3.3)",
            lambda k, c, s, g: resnet18(k, "pretrained", c, generator=g),
        ),
        BuiltinModel(
            "resnet18-imagenet",
            "ResNet-18, 7x7/2 stem + max-pool: torchvision's resnet18 (SPEC §3.2 'authors')",
            lambda k, c, s, g: resnet18(k, "imagenet", c, generator=g),
        ),
        BuiltinModel(
            "cnn",
            "small strided CNN (channels 16, 32, 64), a CPU stand-in for ResNet-18",
            lambda k, c, s, g: SmallCNN(c, k, s, generator=g),
        ),
        BuiltinModel(
            "mlp",
            "MLP with one hidden layer of 256 ReLU units",
            lambda k, c, s, g: MLP(c * s * s, k, generator=g),
        ),
    )
}


def builtin_model(name: str) -> BuiltinModel:
    """The registry entry ``name``; a ConfigError listing the allowed names otherwise."""
    if name not in BUILTIN_MODELS:
        raise ConfigError(f"model: must be one of {', '.join(BUILTIN_MODELS)}, got {name!r}")
    return BUILTIN_MODELS[name]


def build_model(
    name: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    normalization: Normalization,
    *,
    seed: int | None = None,
) -> ImageClassifier:
    """The builtin ``name`` for (N, in_channels, image_size, image_size) pixels in [0, 1]
    and ``num_classes`` logits, behind ``normalization``.

    ``seed`` draws the initial weights from ``featavg.seeding.generator(seed, "model/init")``
    (the same weights on every device and whatever else drew before); ``None`` uses the
    global RNG. ConfigError (one line) on an unknown name, an input the model does not take
    (``resnet18-mnist`` needs 1 x 28 x 28) or a normalisation with the wrong channel count.
    """
    entry = builtin_model(name)
    if num_classes < 1 or in_channels < 1 or image_size < 1:
        raise ConfigError(
            f"model {name}: num_classes, in_channels and image_size must be >= 1, got "
            f"{num_classes}, {in_channels}, {image_size}"
        )
    if entry.in_channels is not None and in_channels != entry.in_channels:
        raise ConfigError(
            f"model {name}: needs {entry.in_channels}-channel images, got {in_channels} "
            "channels (use resnet18-cifar or cnn for other data)"
        )
    if entry.image_size is not None and image_size != entry.image_size:
        raise ConfigError(
            f"model {name}: needs {entry.image_size}x{entry.image_size} images, got "
            f"{image_size}x{image_size}"
        )
    if len(normalization.mean) not in (1, in_channels):
        raise ConfigError(
            f"normalization {normalization.name}: has {len(normalization.mean)} channels, "
            f"the data {in_channels}"
        )
    gen = None if seed is None else seeded_generator(seed, "model/init")
    return ImageClassifier(entry.build(num_classes, in_channels, image_size, gen), normalization)


def default_normalization(model_name: str, dataset_name: str) -> Normalization:
    """The SPEC's normalisation for a model on a dataset.

    MNIST-like data (``mnist``, ``fashion-mnist``, ``mnist-5k``) -> MNIST_HALF (§3.1);
    CIFAR-10 (``cifar10``, ``cifar10-synthetic``) -> CIFAR_PRETRAINED for
    ``resnet18-pretrained`` (what its public weights expect, §3.3), else CIFAR_AUTHORS (§3.2).
    ConfigError for an unknown model or dataset.
    """
    builtin_model(model_name)
    if dataset_name in MNIST_DATASETS:
        return MNIST_HALF
    if dataset_name.startswith(CIFAR_PREFIX):
        return CIFAR_PRETRAINED if model_name == "resnet18-pretrained" else CIFAR_AUTHORS
    raise ConfigError(
        f"dataset: no default normalization for {dataset_name!r}; known: "
        f"{', '.join(MNIST_DATASETS)}, {CIFAR_PREFIX}*"
    )
