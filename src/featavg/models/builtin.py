"""Named builtin image models for the CLI (``featavg train --model``, ``featavg probe
--builtin``) and the API.

    model = build_model("resnet18-mnist", num_classes=10, in_channels=1, image_size=28,
                        normalization=default_normalization("resnet18-mnist", "mnist"))

Every builtin is an :class:`~featavg.models.image_classifier.ImageClassifier`: pixels in
[0, 1] in, logits out, ``features`` the penultimate layer. The ResNet-18 variants follow
the paper's and the authors' recipes; ``cnn`` and ``mlp`` are small CPU models
(:mod:`.small_image`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from featavg.config import ConfigError, shown
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
# (num_classes, in_channels, image_size) -> its number of parameters (at most)
ParameterCount = Callable[[int, int, int], int]

# what a builtin can be built for: far above any data set here, far below sizes that would
# exhaust memory before a message could say why (a model file or a flag may ask for anything)
MAX_CLASSES = 100_000
MAX_CHANNELS = 4
MAX_IMAGE_SIZE = 4096
# 2 GB of float32 weights; ResNet-18 with MAX_CLASSES outputs has 62 M
MAX_PARAMETERS = 500_000_000

MNIST_DATASETS = ("mnist", "fashion-mnist", "mnist-5k")
CIFAR_PREFIX = "cifar10"


@dataclass(frozen=True)
class BuiltinModel:
    """A named model: its builder, what it is, its parameter count (known before building
    it, so that no size is refused only once memory runs out) and the input it requires
    (None: any)."""

    name: str
    description: str
    build: NetBuilder
    parameters: ParameterCount
    in_channels: int | None = None
    image_size: int | None = None


# ResNet-18 without its stem and head (both stems); per input channel its stem has 64 K x K
# filters (K = 7 or 3), per class its head 512 weights and a bias
_RESNET18_BODY = 11_167_104
# the small CNN's three blocks at 4 channels and its pooled features (at most 64)
_CNN_BODY_MAX, _CNN_FEATURES = 23_840, 64
# the MLP's hidden width
_MLP_HIDDEN = 256


def _resnet18_parameters(stem_kernel: int) -> ParameterCount:
    return lambda k, c, s: _RESNET18_BODY + 64 * stem_kernel**2 * c + 513 * k


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            "resnet18-mnist",
            "ResNet-18, 1-channel 7x7/2 stem + max-pool, 28x28 -> 7x7 (the authors' MNIST)",
            lambda k, c, s, g: resnet18(k, "mnist", c, generator=g),
            _resnet18_parameters(7),
            in_channels=1,
            image_size=28,
        ),
        BuiltinModel(
            "resnet18-cifar",
            "ResNet-18, 3x3/1 stem without max-pool (the usual CIFAR-10 recipe)",
            lambda k, c, s, g: resnet18(k, "cifar", c, generator=g),
            _resnet18_parameters(3),
        ),
        BuiltinModel(
            "resnet18-pretrained",
            "ResNet-18, 3x3/1 stem + max-pool: huyvnphan/PyTorch_CIFAR10's layout and keys "
            "(the authors' pretrained CIFAR-10 backbone)",
            lambda k, c, s, g: resnet18(k, "pretrained", c, generator=g),
            _resnet18_parameters(3),
        ),
        BuiltinModel(
            "resnet18-imagenet",
            "ResNet-18, 7x7/2 stem + max-pool: torchvision's resnet18 (the authors' CIFAR-10)",
            lambda k, c, s, g: resnet18(k, "imagenet", c, generator=g),
            _resnet18_parameters(7),
        ),
        BuiltinModel(
            "cnn",
            "small strided CNN (channels 16, 32, 64), a CPU stand-in for ResNet-18",
            lambda k, c, s, g: SmallCNN(c, k, s, generator=g),
            lambda k, c, s: _CNN_BODY_MAX + (_CNN_FEATURES + 1) * k,  # at most
        ),
        BuiltinModel(
            "mlp",
            "MLP with one hidden layer of 256 ReLU units",
            lambda k, c, s, g: MLP(c * s * s, k, generator=g),
            lambda k, c, s: (c * s * s + 1) * _MLP_HIDDEN + (_MLP_HIDDEN + 1) * k,
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
    global RNG. ConfigError (one line) on an unknown name, a size out of bounds
    (:func:`check_size`) or over :data:`MAX_PARAMETERS` parameters, an input the model does
    not take (``resnet18-mnist`` needs 1 x 28 x 28) or a normalisation with the wrong
    channel count.
    """
    entry = builtin_model(name)
    check_size(name, num_classes, in_channels, image_size)
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
    count = entry.parameters(num_classes, in_channels, image_size)
    if count > MAX_PARAMETERS:
        raise ConfigError(
            f"model {name}: {count:,} parameters for {num_classes} classes, {in_channels} "
            f"channels and {image_size}x{image_size} images, over the limit of "
            f"{MAX_PARAMETERS:,}"
        )
    gen = None if seed is None else seeded_generator(seed, "model/init")
    return ImageClassifier(entry.build(num_classes, in_channels, image_size, gen), normalization)


def check_size(name: str, num_classes: int, in_channels: int, image_size: int) -> None:
    """ConfigError (one line naming the field) unless each of num_classes, in_channels and
    image_size is an int within 1..its bound (:data:`MAX_CLASSES`, :data:`MAX_CHANNELS`,
    :data:`MAX_IMAGE_SIZE`)."""
    for field, value, bound in (
        ("num_classes", num_classes, MAX_CLASSES),
        ("in_channels", in_channels, MAX_CHANNELS),
        ("image_size", image_size, MAX_IMAGE_SIZE),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= bound:
            raise ConfigError(
                f"model {name}: {field} must be an integer in 1..{bound}, got {shown(value)}"
            )


def default_normalization(model_name: str, dataset_name: str) -> Normalization:
    """The recipe's normalisation for a model on a dataset.

    MNIST-like data (``mnist``, ``fashion-mnist``, ``mnist-5k``) -> MNIST_HALF (the authors');
    CIFAR-10 (``cifar10``, ``cifar10-synthetic``) -> CIFAR_PRETRAINED for
    ``resnet18-pretrained`` (what its public weights expect), else CIFAR_AUTHORS (the authors'
    CIFAR-10 script).
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
