"""featavg model files (featavg.models.model_file) with odd metadata or weights, and the
builtin models' size bounds: every field is checked before anything is built or loaded;
a file that does not fit is one line naming the file and the field, never a traceback or
an exhausted memory."""

from __future__ import annotations

import math

import pytest
import torch

from featavg.config import ConfigError
from featavg.models.builtin import BUILTIN_MODELS, MAX_PARAMETERS, build_model
from featavg.models.image_classifier import CIFAR_AUTHORS, MNIST_HALF
from featavg.models.model_file import (
    MODEL_FORMAT,
    head_classes,
    load_trained_model,
    model_file_digest,
)

CNN = build_model("cnn", 2, 1, 28, MNIST_HALF, seed=0)


def model_blob(**changes):
    """A featavg model file's dict (an untrained 2-class CNN for 1 x 28 x 28 images), with
    ``changes`` applied (a value of ... deletes the key)."""
    blob = {
        "format": MODEL_FORMAT,
        "model": "cnn",
        "num_classes": 2,
        "in_channels": 1,
        "image_size": 28,
        "normalization": {"name": "mnist-half", "mean": [0.5], "std": [0.5]},
        "labels": "coarse",
        "grouping": {"name": "parity", "groups": [0, 1] * 5},
        "dataset": {"name": "fashion-mnist", "stand_in": None},
        "config": "{}",
        "state_dict": {k: v.clone() for k, v in CNN.state_dict().items()},
    }
    for key, value in changes.items():
        if value is ...:
            del blob[key]
        else:
            blob[key] = value
    return blob


def with_weight(key, value):
    state = {k: v.clone() for k, v in CNN.state_dict().items()}
    if value is ...:
        del state[key]
    else:
        state[key] = value
    return state


ODD = {
    "no normalization": (model_blob(normalization=...), "'normalization'"),
    "normalization a string": (model_blob(normalization="mnist-half"), "'normalization'"),
    "normalization of 3 channels": (
        model_blob(normalization={"name": "x", "mean": [0.5] * 3, "std": [0.5] * 3}),
        "normalization.mean",
    ),
    "std of another length": (
        model_blob(normalization={"name": "x", "mean": [0.5], "std": [0.5, 0.5]}),
        "normalization.std",
    ),
    "std 0": (model_blob(normalization={"name": "x", "mean": [0.5], "std": [0.0]}), "std"),
    "std NaN": (
        model_blob(normalization={"name": "x", "mean": [0.5], "std": [math.nan]}),
        "normalization.std",
    ),
    "mean a string": (
        model_blob(normalization={"name": "x", "mean": ["a"], "std": [0.5]}),
        "normalization.mean",
    ),
    "num_classes two": (model_blob(num_classes="two"), "'num_classes'"),
    "num_classes 10**10": (model_blob(num_classes=10**10), "'num_classes'"),
    "num_classes 0": (model_blob(num_classes=0), "'num_classes'"),
    "num_classes True": (model_blob(num_classes=True), "'num_classes'"),
    "num_classes 2.0": (model_blob(num_classes=2.0), "'num_classes'"),
    "num_classes 3 (weights of 2)": (model_blob(num_classes=3), "net.fc.weight"),
    "image_size 10**6": (model_blob(image_size=10**6), "'image_size'"),
    "image_size missing": (model_blob(image_size=...), "'image_size'"),
    "in_channels 5": (model_blob(in_channels=5), "'in_channels'"),
    "in_channels 3 (weights of 1)": (
        model_blob(in_channels=3, normalization={"name": "x", "mean": [0.5], "std": [0.5]}),
        "net.blocks.0.weight",
    ),
    "unknown model": (model_blob(model="resnet50"), "'model'"),
    "model None": (model_blob(model=None), "'model'"),
    "mlp far too large": (
        model_blob(model="mlp", in_channels=4, image_size=4096),
        "over the limit",
    ),
    "a wrong-shaped tensor": (
        model_blob(state_dict=with_weight("net.fc.weight", torch.zeros(3, 3))),
        "net.fc.weight",
    ),
    "a 0-d fc.weight": (
        model_blob(state_dict=with_weight("net.fc.weight", torch.tensor(1.0))),
        "net.fc.weight",
    ),
    "a missing tensor": (model_blob(state_dict=with_weight("net.fc.bias", ...)), "net.fc.bias"),
    "a tensor too many": (
        model_blob(state_dict=with_weight("extra", torch.zeros(1))),
        "unexpected 'extra'",
    ),
    "a weight that is a list": (
        model_blob(state_dict=with_weight("net.fc.bias", [0.0, 0.0])),
        "net.fc.bias",
    ),
    "an integer weight": (
        model_blob(state_dict=with_weight("net.fc.bias", torch.zeros(2, dtype=torch.long))),
        "net.fc.bias",
    ),
    "a NaN weight": (
        model_blob(state_dict=with_weight("net.fc.bias", torch.tensor([0.0, math.nan]))),
        "not finite",
    ),
    "state_dict a list": (model_blob(state_dict=[1, 2]), "'state_dict'"),
    "state_dict missing": (model_blob(state_dict=...), "'state_dict'"),
    "labels odd": (model_blob(labels="medium"), "'labels'"),
    "grouping ids out of range": (
        model_blob(grouping={"name": "g", "groups": [0, 10**12]}),
        "grouping.groups",
    ),
    "grouping of strings": (model_blob(grouping={"name": "g", "groups": ["a"]}), "grouping"),
    "grouping a list": (model_blob(grouping=[0, 1]), "'grouping'"),
    "dataset without name": (model_blob(dataset={"stand_in": "x"}), "'dataset'"),
    "config a dict": (model_blob(config={"a": 1}), "'config'"),
}


@pytest.mark.parametrize(("blob", "needle"), ODD.values(), ids=ODD.keys())
def test_odd_model_files_are_one_line_naming_file_and_field(tmp_path, blob, needle):
    path = tmp_path / "model.pt"
    torch.save(blob, path)
    with pytest.raises(ConfigError) as err:
        load_trained_model(path)
    text = str(err.value)
    assert "\n" not in text and text.startswith(str(path)) and needle in text, text


def test_a_whole_model_file_loads_to_the_same_function(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(model_blob(), path)
    model, meta = load_trained_model(tmp_path)  # the directory works too
    assert meta["num_classes"] == 2 and "state_dict" not in meta
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), CNN.eval()(x), rtol=0, atol=0)
    # float64 weights are cast, as load_state_dict does: the same function up to rounding
    state = {k: v.double() if v.is_floating_point() else v for k, v in CNN.state_dict().items()}
    doubled = model_blob(state_dict=state)
    torch.save(doubled, path)
    model, _ = load_trained_model(path)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def sealed(blob):
    blob["sha256"] = model_file_digest(blob)
    return blob


def test_the_digest_catches_damage_outside_a_model_directory(tmp_path):
    """A model.pt handed to the probe alone has no manifest: its own digest tells a
    damaged file (once loaded silently with other weights)."""
    path = tmp_path / "model.pt"
    torch.save(sealed(model_blob()), path)
    load_trained_model(path)  # intact
    data = bytearray(path.read_bytes())
    weight = CNN.state_dict()["net.fc.weight"]
    at = bytes(data).find(weight.contiguous().numpy().tobytes())
    data[at + 2] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="'sha256' does not match the contents"):
        load_trained_model(path)
    edited = sealed(model_blob())
    edited["labels"] = "fine"  # an edit without a new digest
    torch.save(edited, path)
    with pytest.raises(ConfigError, match="'sha256'"):
        load_trained_model(path)
    torch.save(model_blob(), path)  # written before the digest existed: loads
    load_trained_model(path)
    # the digest does not depend on how the file was laid out: re-saving keeps it valid
    again = torch.load(path, weights_only=True)
    assert model_file_digest(again) == model_file_digest(model_blob())


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"fc.weight": torch.zeros(7, 3)}, 7),
        ({"net.fc.weight": torch.zeros(2, 3)}, 2),
        ({"conv.weight": torch.zeros(2, 3)}, None),
    ],
)
def test_head_classes_reads_the_rows_of_fc(tmp_path, state, expected):
    assert head_classes(state, tmp_path) == expected


@pytest.mark.parametrize(
    "fc", [torch.tensor(1.0), torch.zeros(5), torch.zeros(0, 3), torch.zeros(100_001, 1), "x"]
)
def test_head_classes_refuses_a_head_that_is_no_matrix(tmp_path, fc):
    with pytest.raises(ConfigError, match=r"fc\.weight must be a 2-D tensor") as err:
        head_classes({"fc.weight": fc}, tmp_path / "w.pt")
    assert "\n" not in str(err.value)


# ---- builtin sizes --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BUILTIN_MODELS))
def test_parameter_counts_known_before_building_match_the_built_models(name):
    entry = BUILTIN_MODELS[name]
    for k, c, s in [(1, 1, 28), (2, 1, 28), (10, 3, 32), (3, 4, 16), (5, 2, 8)]:
        if (entry.in_channels or c) != c or (entry.image_size or s) != s:
            continue
        built = sum(p.numel() for p in entry.build(k, c, s, None).parameters())
        bound = entry.parameters(k, c, s)
        # exact, except the CNN's: an upper bound (its block count depends on the size)
        assert bound == built if name != "cnn" else built <= bound < built + 20_000


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("mlp", 10**10, 1, 28), "num_classes must be an integer in 1..100000"),
        (("cnn", 2, 1, 10**6), "image_size must be an integer in 1..4096"),
        (("cnn", 2, 0, 28), "in_channels must be an integer in 1..4"),
        (("cnn", "2", 1, 28), "num_classes"),
        (("cnn", 2, 1, True), "image_size"),
        (("mlp", 10, 3, 4096), "over the limit"),
        (("resnet18-cifar", 100_000, 3, 4096), None),  # 62 M parameters: allowed
    ],
)
def test_builtin_sizes_are_bounded_before_anything_is_allocated(args, needle):
    name, k, c, s = args
    norm = CIFAR_AUTHORS if c == 3 else MNIST_HALF
    if needle is None:
        assert BUILTIN_MODELS[name].parameters(k, c, s) < MAX_PARAMETERS
        return
    with pytest.raises(ConfigError, match=needle) as err:
        build_model(name, k, c, s, norm)
    assert "\n" not in str(err.value)
