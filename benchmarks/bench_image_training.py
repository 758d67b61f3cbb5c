"""Benchmark: featavg's image trainer vs a plain PyTorch loop, one epoch of the MNIST recipe.

Recipe (SPEC §3.1): ResNet-18 with the MNIST stem, inputs Normalize(0.5, 0.5), SGD lr 0.01
momentum 0.9, batch 128, cross-entropy, no augmentation. Data: MNIST when its files are in
``--data-dir``, else Fashion-MNIST (the stand-in here; same shapes and sizes).

The baseline, measured in the same run, is the loop one writes by hand: a ``Dataset`` whose
``__getitem__`` turns one uint8 image into a normalised float tensor (ToTensor + Normalize),
a shuffling ``DataLoader``, a per-batch ``.to(device)``, the same ResNet-18 with every 3x3
conv a plain ``nn.Conv2d`` (``skip_padding_taps=False``), torch.optim.SGD.

Ours (:class:`featavg.training.image_sgd.ImageSGD`): uint8 data on the device, batches
gathered and normalised as tensors (normalisation inside the model), no per-sample Python;
channels_last; bf16 autocast on CUDA; and featavg's ResNet-18, whose 3x3 convs on the
<= 2x2 maps of layer3/layer4 run as exact dense products (``Conv3x3``: the CPU backward of
a 3x3 conv at 1x1 is pathologically slow in oneDNN). ``--split`` adds the plain loop with
featavg's ResNet, to split the gain between model and trainer; ``--two`` trains the binary
and the 10-class model in ONE pass over the data (ours) vs two plain loops.

Run: .venv/bin/python benchmarks/bench_image_training.py [--images 60000] [--device auto]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from featavg.data.groupings import get_grouping
from featavg.data.images import load_dataset
from featavg.device import resolve_device
from featavg.models.image_classifier import MNIST_HALF, NONE, ImageClassifier
from featavg.models.resnet import resnet18
from featavg.training.image_sgd import ImageSGD, SGDConfig


class PlainMNIST(Dataset):  # type: ignore[type-arg]
    """What torchvision's MNIST + ToTensor + Normalize(0.5, 0.5) do, one sample at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x.numpy(), y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = torch.from_numpy(self.x[i]).float().div(255)
        return (img - 0.5) / 0.5, self.y[i]


def plain_epoch(x, y, classes, device, seed, skip_padding_taps=False):
    """One epoch the usual way; returns wall seconds."""
    torch.manual_seed(seed)
    net = resnet18(classes, "mnist", skip_padding_taps=skip_padding_taps)
    model = ImageClassifier(net, NONE).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(PlainMNIST(x, y), batch_size=128, shuffle=True, num_workers=0)
    model.train()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def our_epoch(x, ys, device, seed):
    """One epoch of ImageSGD over len(ys) models sharing the batches; returns wall seconds."""
    torch.manual_seed(seed)
    models = [
        ImageClassifier(resnet18(int(y.max()) + 1, "mnist"), MNIST_HALF).to(device) for y in ys
    ]
    trainer = ImageSGD(SGDConfig(epochs=1), device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.fit(models, x, list(ys), seed=seed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60000, help="training images (<= 60000)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--two", action="store_true", help="also time two models in one pass")
    parser.add_argument(
        "--split", action="store_true", help="also time the plain loop with featavg's ResNet"
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load_dataset("mnist", args.data_dir)
    train = data.train.subset(args.images, 0, "bench")
    x, fine = train.x, train.y
    coarse = get_grouping("parity").coarse(fine)
    label = data.stand_in or "MNIST"
    n = len(fine)
    print(
        f"ResNet-18 (MNIST stem), one epoch of {n} images of {label}, batch 128, on {device}"
        f" ({torch.get_num_threads()} threads)"
    )
    if device.type == "cuda":  # warm-up: cuDNN autotuning and allocator, for both loops
        plain_epoch(x[:2048], fine[:2048], 10, device, 0)
        our_epoch(x[:2048], [fine[:2048]], device, 0)
    plain = plain_epoch(x, fine, 10, device, 0)
    ours = our_epoch(x, [fine], device, 0)
    print(f"plain PyTorch loop : {n / plain:8.0f} images/s  ({plain:6.1f} s)")
    print(f"featavg ImageSGD   : {n / ours:8.0f} images/s  ({ours:6.1f} s)")
    print(f"ratio (ours/plain) : {plain / ours:8.2f}x")
    if args.split:
        mixed = plain_epoch(x, fine, 10, device, 0, skip_padding_taps=True)
        print(f"plain loop, featavg ResNet: {n / mixed:8.0f} images/s  ({mixed:6.1f} s)")
    if args.two:
        plain2 = plain_epoch(x, coarse, 2, device, 0) + plain_epoch(x, fine, 10, device, 1)
        ours2 = our_epoch(x, [coarse, fine], device, 0)
        print(
            f"binary + 10-class: plain {plain2:6.1f} s, ours (one pass) {ours2:6.1f} s, "
            f"ratio {plain2 / ours2:.2f}x"
        )


if __name__ == "__main__":
    main()
