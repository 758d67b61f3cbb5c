"""A training run in a child process, for the kill-and-resume test of test_image_trainer.py
(which also runs it in-process, :func:`run`, for the uninterrupted reference); and the tiny
model and data those tests share.

    python image_trainer_child.py OUT [--resume] [--hang-after-batches K]

trains a binary and a 3-class tiny CNN together for EPOCHS epochs with a checkpoint at
OUT/run.ckpt and writes their final state_dicts and records (without the timing entries) to
OUT/final.pt. With --hang-after-batches K it instead writes OUT/hanging once model 0 has
trained on K batches and sleeps, waiting to be killed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

from featavg.seeding import generator
from featavg.training.image_sgd import TIMING_KEYS, ImageSGD, SGDConfig

EPOCHS = 4
N_IMAGES = 512
BATCH = 64  # 8 batches per epoch
# every feature of the trainer that carries state across epochs
CONFIG = SGDConfig(
    epochs=EPOCHS,
    batch_size=BATCH,
    lr=0.05,
    momentum=0.9,
    weight_decay=5e-4,
    nesterov=True,
    schedule="onecycle",
    augment="crop-flip",
    crop_padding=2,
)


def tiny_cnn(classes: int, seed: int = 0) -> nn.Sequential:
    """Conv-BN-ReLU x2, global average pool, linear head: (N, 3, 8, 8) -> (N, classes).
    BatchNorm so that the running statistics (buffers) must be checkpointed too."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, stride=2),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, classes),
        )


def toy_data(n: int = N_IMAGES, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Random uint8 images (n, 3, 8, 8) and two learnable labelings from their channel
    means: binary (red brighter than green) and 3-class (the brightest channel)."""
    x = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=generator(seed, "toy"))
    means = x.float().mean((2, 3))
    return x, [(means[:, 0] > means[:, 1]).long(), means.argmax(1)]


def without_timing(records: list[list[dict]]) -> list[list[dict]]:
    """The records minus the entries that measure the machine (they differ between runs)."""
    return [[{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rs] for rs in records]


def run(out: Path, *, resume: bool = False, hang_after_batches: int | None = None) -> None:
    """Train the two tiny CNNs with a checkpoint at out/run.ckpt and write out/final.pt (or
    hang, see the module docstring)."""
    models = [tiny_cnn(2, seed=1), tiny_cnn(3, seed=2)]
    if hang_after_batches is not None:
        seen = [0]

        def hang(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
            if module.training:
                seen[0] += 1
                if seen[0] > hang_after_batches:  # about to train on one batch more
                    (out / "hanging").write_text(str(os.getpid()))
                    time.sleep(600)

        models[0].register_forward_pre_hook(hang)
    x, targets = toy_data()
    trainer = ImageSGD(CONFIG, checkpoint=out / "run.ckpt", resume=resume)
    records = trainer.fit(models, x, targets, seed=7)
    final = {"models": [m.state_dict() for m in models], "records": without_timing(records)}
    torch.save(final, out / "final.pt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--hang-after-batches", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run(args.out, resume=args.resume, hang_after_batches=args.hang_after_batches)


if __name__ == "__main__":
    sys.exit(main())
