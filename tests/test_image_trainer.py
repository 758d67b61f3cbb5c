"""The image trainer (featavg.training.image_sgd): learning, batched augmentation, one data
pass for several models, determinism, frozen parameters, schedules, checkpoints and
kill-and-resume."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from featavg.config import ConfigError
from featavg.seeding import generator
from featavg.training.augment import crop_flip, draw_crop_flip
from featavg.training.checkpoint import (
    ProgressDiscarded,
    load_checkpoint,
    read_progress,
    save_checkpoint,
    save_progress,
)
from featavg.training.image_sgd import ImageSGD, SGDConfig, evaluate, predict_logits
from featavg.training.interface import Trainer
from image_trainer_child import CONFIG, run, tiny_cnn, toy_data, without_timing
from kill_points import wait_for

CHILD = Path(__file__).with_name("image_trainer_child.py")
FAST = SGDConfig(epochs=2, batch_size=64, lr=0.05, augment="crop-flip", crop_padding=2)


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# ---- training ----------------------------------------------------------------------------


def margin_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images whose red channel is 64 levels brighter for label 1: learnable with a
    margin wide enough that eval-mode BatchNorm (running statistics) classifies well too."""
    g = generator(0, "margin")
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randint(0, 192, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    x[:, 0] += (y * 64).to(torch.uint8)[:, None, None]
    return x, y


def test_learns_a_toy_task_and_records_every_epoch():
    x, y = margin_data(768)
    trainer = ImageSGD(SGDConfig(epochs=4, batch_size=32, lr=0.02), eval_data=(x[512:], [y[512:]]))
    assert isinstance(trainer, Trainer)
    model = tiny_cnn(2)
    seen = []
    hook = lambda epoch, m: seen.append((epoch, m.training)) or {"norm": torch.ones(1)}  # noqa: E731
    (records,) = trainer.fit([model], x[:512], [y[:512]], on_record=[hook])
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert seen == [(e, False) for e in range(1, 5)]  # hooks see the model in eval mode
    assert records[-1]["loss"].item() < 0.3 * records[0]["loss"].item()
    assert records[-1]["train_acc"].item() > max(0.95, records[0]["train_acc"].item())
    assert records[-1]["test_acc"].item() > 0.9  # held-out images: it learned the rule
    assert all(r["images_per_s"] > 0 and r["wall_s"] > 0 for r in records)
    assert records[0]["norm"].shape == (1,)
    assert not model.training
    # the recorded test accuracy is evaluate() on the final model, and evaluate() is the
    # plain argmax accuracy of the eval-mode logits
    model.train()
    acc = evaluate(model, x[512:], y[512:], batch_size=100)
    assert model.training  # mode restored
    assert acc == pytest.approx(records[-1]["test_acc"].item())
    with torch.no_grad():
        manual = (model.eval()(x[512:].float() / 255).argmax(1) == y[512:]).double().mean()
    assert acc == pytest.approx(float(manual))
    assert predict_logits(model, x[:10], batch_size=3, device="cpu").shape == (10, 2)


def test_progress_bar_prints_one_line_per_epoch_in_logs(capsys):
    x, (y, _) = toy_data(128)
    ImageSGD(FAST).fit([tiny_cnn(2)], x, [y], progress=True)
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" in ")[0] for line in err] == [
        "epoch 1/2: 2/2 batch",
        "epoch 2/2: 2/2 batch",
    ]
    ImageSGD(FAST).fit([tiny_cnn(2)], x, [y], progress=False)
    assert capsys.readouterr().err == ""


def test_two_models_in_one_pass_equal_each_trained_alone():
    x, targets = toy_data(256)
    together = [tiny_cnn(2, seed=1), tiny_cnn(3, seed=2)]
    records = ImageSGD(FAST).fit(together, x, targets, seed=3)
    for i, classes in enumerate((2, 3)):
        alone = tiny_cnn(classes, seed=i + 1)
        (alone_records,) = ImageSGD(FAST).fit([alone], x, [targets[i]], seed=3)
        assert_same_weights(together[i], alone)
        assert without_timing([records[i]]) == without_timing([alone_records])


def test_same_seed_is_bit_identical_and_another_seed_differs():
    x, (y, _) = toy_data(256)
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        runs[name] = tiny_cnn(2)
        ImageSGD(FAST).fit([runs[name]], x, [y], seed=seed)
    assert_same_weights(runs["a"], runs["b"])
    assert not torch.equal(runs["a"][0].weight, runs["c"][0].weight)


def test_frozen_parameters_stay_frozen():
    x, (y, _) = toy_data(128)
    model = tiny_cnn(2)
    for p in model[0].parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ImageSGD(FAST.model_copy(update={"weight_decay": 0.1})).fit([model], x, [y])
    assert torch.equal(model[0].weight, before["0.weight"])  # weight decay did not touch it
    assert torch.equal(model[0].bias, before["0.bias"])
    assert not torch.equal(model[3].weight, before["3.weight"])  # the rest trained


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_schedule_follows_the_torch_formula_per_step(schedule):
    x, (y, _) = toy_data(100)  # 4 steps per epoch, the last batch partial (4 images)
    cfg = SGDConfig(epochs=3, batch_size=32, lr=0.1, schedule=schedule)
    (records,) = ImageSGD(cfg).fit([tiny_cnn(2)], x, [y])
    total = 3 * 4

    def expected(t: int) -> float:  # lr after t optimiser steps
        if schedule == "cosine":
            return 0.1 * (1 + math.cos(math.pi * t / total)) / 2
        initial, end1, end2 = 0.1 / 25, 0.3 * total - 1, total - 1

        def anneal(start: float, end: float, pct: float) -> float:
            return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))

        if t <= end1:
            return anneal(initial, 0.1, t / end1)
        return anneal(0.1, initial / 1e4, (t - end1) / (end2 - end1))

    got = [r["lr"].item() for r in records]
    want = [expected(4 * e) for e in (1, 2, 3)]
    assert got == pytest.approx(want, rel=1e-5, abs=1e-9)


def test_config_is_validated():
    with pytest.raises(ValidationError):
        SGDConfig(nesterov=True, momentum=0.0)
    with pytest.raises(ValidationError):
        SGDConfig(batch_size=0)
    with pytest.raises(ValidationError):
        SGDConfig(optimizer="adam")  # type: ignore[call-arg]
    with pytest.warns(UserWarning, match="ignored on the CPU"):
        ImageSGD(SGDConfig(compile=True), device="cpu")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lr", 1e300),
        ("lr", 3.5e38),  # just past float32's largest finite value
        ("lr", float("inf")),
        ("lr", 1e-300),  # vanishes in float32: training would not move
        ("weight_decay", 1e300),
    ],
)
def test_float_settings_must_fit_float32(field, value):
    with pytest.raises(ValidationError, match=field) as err:
        SGDConfig(**{field: value})
    assert "float32" in str(err.value) or "finite" in str(err.value)


def test_float_settings_at_the_float32_edges_are_accepted():
    cfg = SGDConfig(lr=3.4e38, weight_decay=3.4e38, momentum=0.0)
    assert cfg.lr == 3.4e38
    assert SGDConfig(lr=1.2e-38, weight_decay=0.0).lr == 1.2e-38


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--set", "sgd.lr=1e300", "--root"],
        ["train", "--set", "sgd.weight_decay=1e300", "--root"],
        ["run", "mnist-robustness", "--set", "train.sgd.lr=1e300", "--out"],
    ],
)
def test_an_overflowing_learning_rate_is_refused_by_name(tmp_path, capsys, argv):
    """Once a traceback from the first optimiser step (the value overflowed float32)."""
    from featavg.cli import main

    assert main([*argv, str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "float32" in err
    assert ("sgd.lr" in err) or ("sgd.weight_decay" in err)
    assert not (tmp_path / "out").exists()  # refused before anything ran


# ---- augmentation ------------------------------------------------------------------------


def reference_crop_flip(x, offsets, flips, padding):
    """One image at a time, the way torchvision does it: pad, slice, maybe mirror."""
    h, w = x.shape[2:]
    out = []
    for img, (oy, ox), flip in zip(x, offsets.tolist(), flips.tolist(), strict=True):
        padded = torch.nn.functional.pad(img, (padding,) * 4)
        crop = padded[:, oy : oy + h, ox : ox + w]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_crop_flip_equals_a_per_sample_loop(dtype):
    x = torch.randint(0, 256, (64, 3, 6, 5), generator=generator(0, "t")).to(dtype)
    offsets, flips = draw_crop_flip(64, 3, generator(1, "t"))
    out = crop_flip(x, offsets, flips, 3)
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.equal(out, reference_crop_flip(x, offsets, flips, 3))


def test_crop_flip_identity_mirror_and_ranges():
    x = torch.rand(8, 2, 7, 7, generator=generator(0, "t"))
    centre = torch.full((8, 2), 4)
    assert torch.equal(crop_flip(x, centre, torch.zeros(8, dtype=torch.bool), 4), x)
    assert torch.equal(crop_flip(x, centre, torch.ones(8, dtype=torch.bool), 4), x.flip(-1))
    # the largest offset shifts the image up-left by `padding`, zeros entering at the edge
    corner = crop_flip(x, torch.full((8, 2), 8), torch.zeros(8, dtype=torch.bool), 4)
    assert torch.equal(corner[:, :, :3, :3], x[:, :, 4:, 4:])
    assert torch.all(corner[:, :, 3:, :] == 0) and torch.all(corner[:, :, :, 3:] == 0)
    offsets, flips = draw_crop_flip(4000, 4, generator(2, "t"))
    assert offsets.shape == (4000, 2) and flips.shape == (4000,)
    assert set(offsets.unique().tolist()) == set(range(9))  # {0, ..., 2 padding}, all hit
    assert 0.45 < flips.float().mean().item() < 0.55
    # the draw depends on the stream only: equal streams, equal parameters
    again = draw_crop_flip(4000, 4, generator(2, "t"))
    assert torch.equal(offsets, again[0]) and torch.equal(flips, again[1])


# ---- checkpoints -------------------------------------------------------------------------


class _Custom:
    """Some object that only pickle code execution can rebuild."""


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))  # would run at load time


def test_save_checkpoint_is_atomic_with_ordinary_file_mode(tmp_path):
    path = tmp_path / "sub" / "c.pt"
    old = os.umask(0o027)
    try:
        save_checkpoint(path, {"a": torch.arange(3)})
        save_checkpoint(path, {"a": torch.arange(4), "b": [1.5, "x"]})  # replaces it
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o640  # 0o666 minus the umask, not 0o600
    assert os.listdir(path.parent) == ["c.pt"]  # no temporary file left behind
    state = load_checkpoint(path)
    assert torch.equal(state["a"], torch.arange(4)) and state["b"] == [1.5, "x"]


def test_load_checkpoint_refuses_code_and_bad_files(tmp_path):
    marker = tmp_path / "pwned"
    evil, custom = tmp_path / "evil.pt", tmp_path / "custom.pt"
    torch.save({"w": _Evil(marker)}, evil)
    torch.save(_Custom(), custom)
    for path in (evil, custom):
        with pytest.raises(ConfigError, match="pickle code execution.*weights_only=False") as err:
            load_checkpoint(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()  # nothing ran
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(100)}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    torch.save([1, 2], tmp_path / "list.pt")
    for name in ("truncated.pt", "garbage.pt", "list.pt", "missing.pt"):
        with pytest.raises(ConfigError, match=name) as err:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(err.value)


def test_resume_after_an_interrupted_epoch_matches_an_uninterrupted_run(tmp_path):
    """In-process version of the kill test: a hook raises during epoch 2, before its
    checkpoint is written; the resumed run ends where the uninterrupted one does."""
    cfg = CONFIG.model_copy(update={"epochs": 3})
    x, targets = toy_data(192)
    full = [tiny_cnn(2, seed=1), tiny_cnn(3, seed=2)]
    full_records = ImageSGD(cfg).fit(full, x, targets, seed=4)

    def crash(epoch, model):
        if epoch == 2:
            raise KeyboardInterrupt
        return {}

    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        ImageSGD(cfg, checkpoint=ckpt).fit(
            [tiny_cnn(2, seed=1), tiny_cnn(3, seed=2)], x, targets, seed=4, on_record=[crash, None]
        )
    assert read_progress(ckpt)["epoch"] == 1
    resumed = [tiny_cnn(2, seed=1), tiny_cnn(3, seed=2)]
    records = ImageSGD(cfg, checkpoint=ckpt, resume=True).fit(resumed, x, targets, seed=4)
    for a, b in zip(full, resumed, strict=True):
        assert_same_weights(a, b)
    assert without_timing(records) == without_timing(full_records)
    # a finished run resumes to itself without training
    again = [tiny_cnn(2, seed=1), tiny_cnn(3, seed=2)]
    ImageSGD(cfg, checkpoint=ckpt, resume=True).fit(again, x, targets, seed=4)
    assert_same_weights(again[1], full[1])


def test_resume_refuses_another_run(tmp_path):
    x, (y, _) = toy_data(128)
    ckpt = tmp_path / "run.ckpt"
    ImageSGD(FAST, checkpoint=ckpt).fit([tiny_cnn(2)], x, [y], seed=0)
    saved = ckpt.read_bytes()
    other_lr = FAST.model_copy(update={"lr": 0.1})
    with pytest.raises(ConfigError, match=r"another config: lr: 0.05 in the checkpoint, 0.1 now"):
        ImageSGD(other_lr, checkpoint=ckpt, resume=True).fit([tiny_cnn(2)], x, [y], seed=0)
    with pytest.raises(ConfigError, match="other data or seed"):
        ImageSGD(FAST, checkpoint=ckpt, resume=True).fit([tiny_cnn(2)], x, [y], seed=1)
    with pytest.raises(ConfigError, match="other data or seed"):
        ImageSGD(FAST, checkpoint=ckpt, resume=True).fit([tiny_cnn(2)], x, [1 - y], seed=0)
    with pytest.raises(ConfigError, match="other models") as err:
        ImageSGD(FAST, checkpoint=ckpt, resume=True).fit([tiny_cnn(3)], x, [y], seed=0)
    assert "\n" not in str(err.value)
    assert ckpt.read_bytes() == saved  # another run's file is left as it was
    # a caller that owns the path discards it instead, with a warning, and starts over
    fresh = tiny_cnn(3)
    with pytest.warns(ProgressDiscarded, match="other models.*discarded, training starts over"):
        ImageSGD(FAST, checkpoint=ckpt, resume=True, foreign="discard").fit([fresh], x, [y], seed=0)
    reference = tiny_cnn(3)
    ImageSGD(FAST).fit([reference], x, [y], seed=0)
    assert_same_weights(fresh, reference)


# ---- progress files that do not verify ------------------------------------------------

RESUME = CONFIG.model_copy(update={"epochs": 2})  # onecycle, nesterov, crop-flip: all states


def two_models() -> list[nn.Sequential]:
    return [tiny_cnn(2, seed=1), tiny_cnn(3, seed=2)]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """(the progress file after epoch 1 of 2, the uninterrupted run's final weights and
    records): a run stopped by an exception in epoch 2, before its checkpoint."""
    x, targets = toy_data(128)
    full = two_models()
    records = ImageSGD(RESUME).fit(full, x, targets, seed=4)

    def stop(epoch, model):
        if epoch == 2:
            raise KeyboardInterrupt
        return {}

    ckpt = tmp_path_factory.mktemp("interrupted") / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        ImageSGD(RESUME, checkpoint=ckpt).fit(
            two_models(), x, targets, seed=4, on_record=[stop, None]
        )
    return ckpt.read_bytes(), [m.state_dict() for m in full], without_timing(records)


def _flip_a_weight_bit(path: Path, state: dict) -> None:
    data = bytearray(path.read_bytes())
    weight = state["models"][0]["0.weight"]
    # as stored: the storage's bytes (a channels_last weight is not contiguous)
    at = bytes(data).find(bytes(weight.untyped_storage()))
    assert at > 0
    data[at + 5] ^= 0x04  # one bit of one weight: still a loadable file
    path.write_bytes(bytes(data))


def _forged(change):
    """A tamper that edits the state and writes it back with a matching checksum: only the
    content checks can catch it."""

    def tamper(path: Path, state: dict) -> None:
        change(state)
        save_progress(path, state)

    return tamper


def _set(key, value):
    return _forged(lambda s: s.__setitem__(key, value))


def _first_weight(s: dict) -> torch.Tensor:
    return s["models"][0]["0.weight"]


DAMAGED = {
    "a flipped bit": _flip_a_weight_bit,
    "truncated": lambda p, s: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "empty": lambda p, s: p.write_bytes(b""),
    "garbage": lambda p, s: p.write_bytes(b"PK\x03\x04 not a zip"),
    "no checksum (the old layout)": lambda p, s: torch.save(s, p),
    "another kind of file": lambda p, s: save_checkpoint(p, {"format": "something else"}),
    "epoch 99": _set("epoch", 99),
    "epoch -3": _set("epoch", -3),
    "epoch 0": _set("epoch", 0),
    "epoch as text": _set("epoch", "1"),
    "epoch True": _set("epoch", True),
    "a NaN weight": _forged(lambda s: _first_weight(s).__setitem__(0, float("nan"))),
    "a wrong-shaped weight": _forged(
        lambda s: s["models"][0].__setitem__("0.weight", torch.zeros(3))
    ),
    "a missing weight": _forged(lambda s: s["models"][1].pop("8.bias")),
    "an RNG state of the wrong size": _forged(
        lambda s: s["rng"].__setitem__("torch", torch.zeros(10, dtype=torch.uint8))
    ),
    "a wrong-shaped momentum buffer": _forged(
        lambda s: s["optimizers"][0]["state"][0].__setitem__("momentum_buffer", torch.zeros(2))
    ),
    "a NaN momentum buffer": _forged(
        lambda s: s["optimizers"][1]["state"][0]["momentum_buffer"].fill_(float("nan"))
    ),
    "a huge learning rate": _forged(
        lambda s: s["optimizers"][0]["param_groups"][0].__setitem__("lr", 1e300)
    ),
    "another momentum": _forged(
        lambda s: s["optimizers"][0]["param_groups"][0].__setitem__("momentum", 0.5)
    ),
    "a schedule at another step": _forged(
        lambda s: s["schedulers"][0].__setitem__("last_epoch", 10**6)
    ),
    "a record missing": _forged(lambda s: s["records"][0].clear()),
    "one model short": _forged(lambda s: s["models"].pop()),
    "records as a tensor": _set("records", torch.zeros(2)),
    "a record's time None": _forged(lambda s: s["records"][0][0].__setitem__("wall_s", None)),
}


@pytest.mark.parametrize("tamper", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_progress_file_that_does_not_verify_is_discarded(tmp_path, interrupted, tamper):
    """Damage (caught by the checksum) and forged content (caught by the checks against the
    run): a one-line warning, the file deleted, and the run equals an uninterrupted one."""
    saved, weights, records = interrupted
    ckpt = tmp_path / "run.ckpt"
    ckpt.write_bytes(saved)
    tamper(ckpt, read_progress(ckpt))
    x, targets = toy_data(128)
    models = two_models()
    with pytest.warns(ProgressDiscarded) as caught:
        got = ImageSGD(RESUME, checkpoint=ckpt, resume=True).fit(models, x, targets, seed=4)
    (warning,) = caught
    text = str(warning.message)
    assert text.startswith(str(ckpt)) and text.endswith("discarded, training starts over")
    assert "\n" not in text
    for model, want in zip(models, weights, strict=True):
        for key, value in model.state_dict().items():
            assert torch.equal(value, want[key]), key
    assert without_timing(got) == records
    assert read_progress(ckpt)["epoch"] == 2  # rewritten whole by the new run


def test_the_untouched_progress_file_resumes_without_a_warning(tmp_path, interrupted, recwarn):
    saved, weights, records = interrupted
    ckpt = tmp_path / "run.ckpt"
    ckpt.write_bytes(saved)
    x, targets = toy_data(128)
    models = two_models()
    got = ImageSGD(RESUME, checkpoint=ckpt, resume=True).fit(models, x, targets, seed=4)
    assert not [w for w in recwarn if issubclass(w.category, ProgressDiscarded)]
    assert without_timing(got) == records
    assert all(torch.equal(v, weights[1][k]) for k, v in models[1].state_dict().items())


def test_a_failure_while_loading_leaves_the_fresh_run(tmp_path, interrupted, monkeypatch):
    """Should loading fail after the checks passed (here: the checks are switched off and
    the RNG state, loaded last, is broken), the models already loaded are reset and the
    run still equals an uninterrupted one."""
    from featavg.training import checkpoint

    saved, weights, records = interrupted
    ckpt = tmp_path / "run.ckpt"
    ckpt.write_bytes(saved)
    DAMAGED["an RNG state of the wrong size"](ckpt, read_progress(ckpt))
    monkeypatch.setattr(checkpoint, "check_training_state", lambda state, parts, device: None)
    x, targets = toy_data(128)
    models = two_models()
    with pytest.warns(ProgressDiscarded, match="does not load into this run"):
        got = ImageSGD(RESUME, checkpoint=ckpt, resume=True).fit(models, x, targets, seed=4)
    assert without_timing(got) == records
    for model, want in zip(models, weights, strict=True):
        assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("resume", [True, False])
def test_a_directory_at_the_checkpoint_path_is_refused_before_training(tmp_path, resume):
    ckpt = tmp_path / "run.ckpt"
    ckpt.mkdir()
    (ckpt / "keep.txt").write_text("mine")
    x, (y, _) = toy_data(64)
    epochs = []
    hook = lambda epoch, m: epochs.append(epoch) or {}  # noqa: E731
    with pytest.raises(ConfigError, match="a directory, cannot hold a progress") as err:
        ImageSGD(FAST, checkpoint=ckpt, resume=resume).fit([tiny_cnn(2)], x, [y], on_record=[hook])
    assert "\n" not in str(err.value) and str(ckpt) in str(err.value)
    assert epochs == []  # refused before the first epoch
    assert (ckpt / "keep.txt").read_text() == "mine"


def run_child(out: Path, *args: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(CHILD), str(out), *args], env=env, capture_output=True
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    """The acceptance test of the issue: kill -9 a training process in the middle of epoch
    3 (after two checkpoints), resume it, and get the uninterrupted run's weights, BatchNorm
    buffers and records exactly."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir(), killed.mkdir()
    run(straight)  # the uninterrupted reference, in this process (also one thread)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # 8 batches per epoch: hang before the 20th batch, i.e. the 4th of epoch 3
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(killed), "--hang-after-batches", "19"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # the child says when it is about to train batch 20, then waits there to be killed
        try:
            wait_for((killed / "hanging").exists, lambda: proc.poll() is None, "epoch 3")
        except AssertionError as err:
            proc.kill()
            stderr = proc.communicate(timeout=60)[1].decode()[-2000:]
            raise AssertionError(f"{err}: {stderr}") from None
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert not (killed / "final.pt").exists()
    assert read_progress(killed / "run.ckpt")["epoch"] == 2
    run_child(killed, "--resume")
    want = torch.load(straight / "final.pt", weights_only=True)
    got = torch.load(killed / "final.pt", weights_only=True)
    for a, b in zip(want["models"], got["models"], strict=True):
        assert a.keys() == b.keys() and any("running_mean" in k for k in a)
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert got["records"] == want["records"]
    assert [r["step"] for r in got["records"][0]] == [1, 2, 3, 4]
