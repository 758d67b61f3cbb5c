"""``featavg probe`` refuses bad options and stops on broken models the way every command
does: a bad option is exit 2 with one line naming it, before any model or data is loaded;
one seed bound for probe, run and train; a model whose logits are NaN or inf is a numerical
fault (exit 3, one line), found before any pass over the data; nothing is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from featavg.cli import main
from featavg.config import ConfigError, build_config
from featavg.experiments.registry import EXPERIMENTS
from featavg.probing.options import MAX_SEED, ProbeOptions
from featavg.trained_models.jobs import TrainJobConfig

SMALL = ["--train-size", "200", "--test-size", "100", "--probe-points", "100", "--quiet"]


def _plain_mlp(path: Path, change=None) -> Path:
    """An untrained 2-logit builtin MLP as a plain state dict (``change`` edits it)."""
    from featavg.models.builtin import build_model
    from featavg.models.image_classifier import MNIST_HALF

    state = build_model("mlp", 2, 1, 28, MNIST_HALF, seed=0).state_dict()
    if change is not None:
        change(state)
    torch.save(state, path)
    return path


def _probe(tmp_path: Path, checkpoint: Path, *extra: str) -> int:
    root = tmp_path / "runs"
    return main([
        "probe", "--builtin", "mlp", "--checkpoint", str(checkpoint), "--data", "mnist-5k",
        "--layer", "net.fc", *SMALL, "--root", str(root), *extra,
    ])  # fmt: skip


BAD_OPTIONS = {
    "a radius past float32": (["--robust-eps", "0,1e308"], "robust_eps"),
    "a NaN radius": (["--robust-eps", "0,nan"], "robust_eps"),
    "a negative radius": (["--robust-eps=-1,0"], "robust_eps"),
    "no radius": (["--robust-eps", ","], "robust_eps"),
    "zero robust points": (["--robust-eps", "0,1", "--robust-points", "0"], "robust_points"),
    "negative robust points": (["--robust-eps", "0,1", "--robust-points", "-5"], "robust_points"),
    "negative robust points, no radii": (["--robust-points", "-5"], "robust_points"),
    "a negative seed": (["--seed", "-1"], "seed"),
    "a seed of 2^64": (["--seed", str(2**64)], "seed"),
    "a seed of 2^63": (["--seed", str(2**63)], "seed"),
    "too few probe points": (["--probe-points", "5"], "probe_points"),
    "zero grad points": (["--grad-points", "0"], "grad_points"),
    "zero batch": (["--batch-size", "0"], "batch_size"),
}


@pytest.mark.parametrize(("args", "option"), BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_a_bad_probe_option_is_one_line_exit_2(tmp_path, capsys, args, option):
    """Once: ``--robust-eps 0,1e308`` and ``--robust-points 0`` gave tracebacks,
    ``--robust-points -5`` exited 0, ``--seed -1`` and seeds past 64 bits were accepted."""
    plain = _plain_mlp(tmp_path / "plain.pt")
    assert _probe(tmp_path, plain, *args) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"featavg: error: {option}: "), lines
    assert not out and not (tmp_path / "runs").exists()


def test_probe_run_and_train_share_one_seed_bound():
    """The largest seed every command takes is 2^63 - 1; one more is refused by each."""
    assert ProbeOptions(seed=MAX_SEED).seed == MAX_SEED
    for name in ("synthetic-alignment", "mnist-robustness", "cifar10-robustness"):
        assert build_config(EXPERIMENTS[name].config_cls, {"seed": MAX_SEED}).seed == MAX_SEED
    assert build_config(TrainJobConfig, {"seed": MAX_SEED}).seed == MAX_SEED
    for bad in (-1, MAX_SEED + 1, 2**64):
        with pytest.raises(ConfigError, match=r"^seed: "):
            ProbeOptions(seed=bad)
        for name in ("synthetic-alignment", "mnist-robustness", "cifar10-robustness"):
            with pytest.raises(ConfigError, match=r"^seed: "):
                build_config(EXPERIMENTS[name].config_cls, {"seed": bad})
        with pytest.raises(ConfigError, match=r"^seed: "):
            build_config(TrainJobConfig, {"seed": bad})


def test_real_data_seeds_past_the_bound_are_refused_before_the_first_trains(tmp_path, capsys):
    """Seeds seed..seed+seeds-1 are separate runs: once the first trained and was written,
    then the second was refused (exit 2 after the compute)."""
    out = tmp_path / "run"
    argv = ["run", "mnist-robustness", "--preset", "tiny", "--set", "train.model=mlp",
            "--set", "train.dataset=mnist-5k", "--set", f"seed={MAX_SEED}", "--set", "seeds=2",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("featavg: error: seeds: "), err
    assert list(tmp_path.iterdir()) == []  # no seed run, no trained model


def _nan_first_weight(state):
    next(iter(state.values())).view(-1)[0] = float("nan")


def _nan_head(state):
    state["net.fc.weight"][0, 0] = float("nan")


def _overflowing(state):
    for value in state.values():
        value.mul_(3e38)  # finite weights whose products overflow float32


BROKEN = {"a NaN weight": _nan_first_weight, "a NaN in the head": _nan_head,
          "weights that overflow": _overflowing}  # fmt: skip


@pytest.mark.parametrize("change", BROKEN.values(), ids=BROKEN.keys())
def test_weights_that_give_non_finite_logits_are_a_numerical_fault(tmp_path, capsys, change):
    """Once: exit 0 with numbers measured on NaN, or a traceback after the whole probe and
    an empty root. Now the README's numerical-fault line, exit 3, nothing written."""
    broken = _plain_mlp(tmp_path / "broken.pt", change)
    assert _probe(tmp_path, broken) == 3
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("featavg: run failed: model: "), lines
    assert "non-finite" in lines[0] and not (tmp_path / "runs").exists()


def test_a_user_model_with_nan_logits_is_a_numerical_fault(tmp_path, capsys):
    module = tmp_path / "nan_logits_net.py"
    module.write_text(
        "import torch\nfrom torch import nn\n"
        "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(784, 2)\n"
        "    def forward(self, x):\n        return self.fc(x.flatten(1)) * float('nan')\n"
        "def make():\n    return M()\n"
    )
    code = main(["probe", "--model", f"{module}:make", "--data", "mnist-5k", "--layer", "fc",
                 *SMALL, "--root", str(tmp_path / "runs")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1 and "non-finite logits" in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("flag", "value"), [("--normalization", "nope"), ("--num-classes", "7")])
def test_builtin_flags_without_builtin_are_refused_not_ignored(tmp_path, capsys, flag, value):
    """Once silently ignored (exit 0, even for a normalisation that does not exist) when the
    model came from a checkpoint without --builtin or from --model."""
    from featavg.models.model_file import MODEL_FILE

    model = tmp_path / MODEL_FILE
    model.write_bytes(b"")  # never read: the flags are checked first
    argv = ["probe", "--checkpoint", str(model), "--data", "mnist-5k", "--layer", "net.fc",
            *SMALL, "--root", str(tmp_path / "runs"), flag, value]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"featavg: error: {flag}: describes a --builtin architecture; give --builtin NAME"
    assert not (tmp_path / "runs").exists()
