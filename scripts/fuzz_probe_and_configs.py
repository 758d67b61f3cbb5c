"""Fuzzing what a user types: ``featavg probe`` options and the real-data experiments'
configs. Every case must end in a correct result or a one-line refusal that names what was
wrong, never a traceback, a hang or a half-written directory.

    .venv/bin/python scripts/fuzz_probe_and_configs.py [--cases N] [--seed S] [--list]

Two surfaces, N seeded cases each (default 160, 320 in all), each run in this process
through ``featavg.cli.main`` in a fresh directory of its own (its working directory, holding
one file featavg did not write):

* ``probe-options``: a valid ``featavg probe`` command (an untrained builtin MLP with a plain
  state dict, a featavg ``model.pt``, or a user factory with or without weights, probed on
  subsets of the 5000-digit MNIST subset, so a valid case runs in under a second; one in
  ten with NaN weights) with up to three flags changed, dropped or added: hostile numbers
  (nan, inf, -1, 0, 1e300, integers of 30 and 5000 digits, floats for integers), empty,
  unicode and 5000-character strings, ``--flag=--``, wrong paths (missing, a directory for
  a file, a file for a directory, a FIFO, a file that needs pickle code, names too long),
  unknown layers and data sets, bad radius lists and groupings, seeds out of range and
  malformed ``--model MODULE:FACTORY`` strings. Correct: exit 0 with the run directory the
  last line names whole (every file its manifest lists, with that sha256) and nothing
  written elsewhere; or exit 2 with one line ``featavg: error: NAME: ...`` (exit 3,
  ``featavg: run failed: ...``, for the NaN weights) and nothing written.
* ``real-data-configs``: ``featavg run`` (3 in 4) or ``featavg show-config`` of
  mnist-robustness, mnist-linf, cifar10-robustness or cifar10-features with up to three
  fields set (``--set``, a TOML or YAML ``--config`` file, or the shortcuts ``--data-dir``,
  ``--verify``, ``--seeds``), or a preset, device or ``--out`` changed: hostile values on
  every field of the config (its pydantic fields walked), unknown keys, wrong types, radii
  unsorted, negative or non-finite, huge seeds, data directories missing or not
  directories, train sizes beyond the data set, method and verify names, backbone files.
  ``run`` goes through everything ``featavg run`` checks (config, device, run directory,
  the resource estimate of the run and of each seed's run, a backbone file) and is stopped
  where the first data set would be loaded: nothing is trained. Correct: exit 0 (a valid
  config; nothing written) or exit 2 with one line, which, where a single field was given,
  names it (its dotted key or its last part, the flag, or the unknown part of a key) or is
  the resource guard's refusal.

Counted apart: exit codes; tracebacks (an exception escaping ``main``, a MemoryError
under the ``--memory-gib`` address-space cap included); malformed lines (not exactly one
printable line of the form above, or one whose echoed path filled it before the reason);
unnamed fields; half-written outputs (anything left by a refused or stopped command, or an
incomplete run directory); hangs (past TIMEOUT_S). Exit status 1 when any of these but the
exit codes is nonzero. ``known``: contract breaks in code this script's checks found but
did not change (:data:`KNOWN`), listed with the counts, not failures.
``tests/test_fuzz_probe_configs.py`` runs a small seeded sample.

Measured at the default count, seed 0 (one thread, 2-core machine shared with other work,
load average 2.8):

                        probe-options  real-data-configs              total
    cases                         160                160                320
    exit 0                         36                 57                 93
    exit 2                        118                103                221
    exit 3                          6                  0                  6
    known                           0                  0                  0
    other exit                      0                  0                  0
    traceback                       0                  0                  0
    malformed                       0                  0                  0
    unnamed                         0                  0                  0
    half-written                    0                  0                  0
    hang                            0                  0                  0
    in 17 s wall, 17 s CPU (seed 0; slowest case 0.7 s)

On the code before the fixes these checks led to, seeds 0-3 (1280 cases) gave 16
tracebacks, 8 malformed lines and 4 unnamed fields. ``--seed 1 --cases 1000`` (2000 cases)
after them: 0 of every must-be-0 count, 2 known.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import random
import re
import sys
import tempfile
import time
import typing
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from time_limits import Hang, time_limit  # noqa: E402

TIMEOUT_S = 60  # per case: far above any (a few seconds), far below a hang
SURFACES = ("probe-options", "real-data-configs")
REAL_DATA = ("mnist-robustness", "mnist-linf", "cifar10-robustness", "cifar10-features")
PREFIX, FAULT = "featavg: error: ", "featavg: run failed: "
MAX_LINE = 1000
SENTINEL = "keep.txt"  # a file featavg did not write, in every case's directory
COLUMNS = ("exit 0", "exit 2", "exit 3", "known", "other exit", "traceback", "malformed",
           "unnamed", "half-written", "hang")  # fmt: skip
MUST_BE_ZERO = COLUMNS[4:]
# Contract breaks in code outside cli/, probing/ and config/, listed and counted in their
# own column ("known") until they are fixed there: (surface, changed key, verdict) -> why
KNOWN = {
    ("real-data-configs", "backbone", "unnamed"): "cifar10-features reads its backbone file "
    "only when the run starts and names the file, not the field (experiments/feature_heads.py)",
}


class Validated(Exception):
    """Raised where a real-data run would load its first data set: everything before was
    accepted."""


@contextlib.contextmanager
def no_training() -> Iterator[None]:
    """Stop a real-data run where it would load its first data set (training follows)."""
    from unittest import mock

    def stop(*args: Any, **kwargs: Any) -> Any:
        raise Validated

    with (
        mock.patch("featavg.trained_models.load_job_data", stop),
        mock.patch("featavg.trained_models.cache.load_job_data", stop),
    ):
        yield


# ---------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Fixtures:
    """Files the cases point at (outside every case's directory, never written by a case)."""

    root: Path

    def __getitem__(self, name: str) -> str:
        return str(self.root / name)


NET_SOURCE = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.hidden = nn.Linear(784, 16)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.hidden(x.flatten(1))))


def make():
    return Net()
"""


def make_fixtures(root: Path) -> Fixtures:
    """Models, weights, groupings and odd files for the cases."""
    import torch

    from featavg.models.builtin import build_model
    from featavg.models.image_classifier import MNIST_HALF
    from featavg.models.model_file import MODEL_FORMAT, model_file_digest

    root.mkdir(parents=True, exist_ok=True)
    mlp = build_model("mlp", 2, 1, 28, MNIST_HALF, seed=0)
    torch.save(mlp.state_dict(), root / "plain.pt")
    torch.save(build_model("cnn", 2, 1, 28, MNIST_HALF, seed=0).state_dict(), root / "cnn.pt")
    broken = mlp.state_dict()
    broken["net.fc.weight"] = torch.full_like(broken["net.fc.weight"], math.nan)
    torch.save(broken, root / "nan.pt")  # NaN logits: a numerical fault (exit 3)
    blob: dict[str, Any] = {
        "format": MODEL_FORMAT, "model": "mlp", "num_classes": 2, "in_channels": 1,
        "image_size": 28, "normalization": {"name": "mnist-half", "mean": [0.5], "std": [0.5]},
        "labels": "coarse", "grouping": {"name": "parity", "groups": [0, 1] * 5},
        "dataset": {"name": "mnist-5k", "stand_in": None}, "config": "{}",
        "state_dict": mlp.state_dict(),
    }  # fmt: skip
    blob["sha256"] = model_file_digest(blob)
    (root / "model-dir").mkdir(exist_ok=True)
    torch.save(blob, root / "model.pt")
    torch.save(blob, root / "model-dir" / "model.pt")
    (root / "fuzz_probe_net.py").write_text(NET_SOURCE)
    (root / "fuzz_probe_broken.py").write_text("def make(:\n")
    namespace: dict[str, Any] = {}
    exec(compile(NET_SOURCE, "net", "exec"), namespace)
    torch.save(namespace["make"]().state_dict(), root / "net-state.pt")
    torch.save(argparse.Namespace(a=1), root / "pickle.pt")  # needs pickle code to load
    (root / "text.txt").write_text("not a model\n")
    (root / "empty.pt").write_bytes(b"")
    (root / "emptydir").mkdir(exist_ok=True)
    (root / "good.json").write_text(json.dumps({"groups": [0, 1] * 5}))
    (root / "bad.json").write_text("{")
    (root / "three.toml").write_text("groups = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]\n")
    fifo = root / "fifo.pt"
    if not fifo.exists():
        os.mkfifo(fifo)
    return Fixtures(root)


def fixture_digest(fx: Fixtures) -> dict[str, str]:
    """sha256 of every regular fixture file: no case may change one."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(fx.root.rglob("*"))
        if p.is_file() and not p.is_fifo()
    }


# ---------------------------------------------------------------- cases


@dataclass
class Case:
    """One command: its surface, argv, the files to write first (relative to the case's
    directory), and what a refusal must name when a single flag or field was changed."""

    surface: str
    argv: list[str]
    files: dict[str, str] = field(default_factory=dict)
    names: tuple[str, ...] = ()  # empty: no single changed flag or field to name
    changed: str = ""  # what was changed from a valid command
    keys: frozenset[str] = frozenset()  # the flags and dotted keys changed

    @property
    def label(self) -> str:
        shown = " ".join(a if len(a) < 60 else a[:40] + f"...({len(a)} chars)" for a in self.argv)
        text = f"[{self.changed}] {shown}" if self.changed else shown
        return text.encode("unicode_escape").decode("ascii")


NUM_JUNK = [
    "nan", "inf", "-inf", "-1", "0", "1e300", "1.5", "", " ", str(2**63), str(2**64),
    "9" * 30, "9" * 5000, "ünïcödé", "x" * 5000, "0x10", "\x1b[31m", "a\nb",
]  # fmt: skip
TEXT_JUNK = ["", " ", "ünïcödé ✓", "x" * 5000, "a\nb", "\x1b[31mred", "-", "--"]


def probe_values(fx: Fixtures) -> dict[str, list[str]]:
    """Values per ``featavg probe`` flag: valid ones first, then hostile ones."""
    return {
        "--layer": ["net.fc", "net.body.0", "net.body", "net", "nope", "net.fc.weight",
                    "net..fc", ".", "normalize", "fc", "hidden", *TEXT_JUNK],
        "--data": ["mnist-5k", "mnist", "fashion-mnist", "cifar10", "cifar10-synthetic",
                   "MNIST", "nope", "../mnist-5k", "mnist-5k ", *TEXT_JUNK],
        "--data-dir": ["/usr/share/datasets/fashion-mnist", "missing", fx["text.txt"],
                       fx["emptydir"], "/dev/null", SENTINEL, *TEXT_JUNK],
        "--grouping": ["parity", "halves", "0,1,0,1,0,1,0,1,0,1", "0,0,0,0,0,0,0,0,0,0",
                       "0,1,2,3,4,5,6,7,8,9", "0,1", "0,1,0,1,0,1,0,1,0,-1",
                       "0,1,0,1,0,1,0,1,0," + "9" * 30, fx["good.json"], fx["bad.json"],
                       fx["three.toml"], "missing.json", fx["emptydir"], *TEXT_JUNK],
        "--train-size": ["200", "10", "9", "4000", str(10**30), *NUM_JUNK],
        "--test-size": ["100", "10", "9", "1000", str(10**30), *NUM_JUNK],
        "--num-classes": ["2", "10", "1", "100000", "100001", *NUM_JUNK],
        "--normalization": ["mnist-half", "none", "cifar-authors", "cifar-pretrained", "auto",
                            "nope", *TEXT_JUNK],
        "--probe-points": ["100", "10", "9", "10000000", "10000001", *NUM_JUNK],
        "--grad-points": ["50", "1", "10000000", "10000001", *NUM_JUNK],
        "--robust-eps": ["0,0.5", "0", "0.5,0", "0,0", "1e-320", "0,1e30", ",", "nan", "0,inf",
                         "-1", "1e308", "1e31", "0,,1", "x", "0," * 1001, *TEXT_JUNK],
        "--robust-points": ["20", "1", "-5", "10000000", "10000001", *NUM_JUNK],
        "--batch-size": ["256", "1", "10000000", *NUM_JUNK],
        "--seed": ["0", "1", str(2**63 - 1), str(2**63), "-1", str(2**64), *NUM_JUNK],
        "--out": ["out", "a/b/c", SENTINEL, f"{SENTINEL}/sub", ".", "ünïcödé-out", "x" * 300,
                  ""],
        "--root": ["runs", "a/b", SENTINEL, f"{SENTINEL}/sub", ".", "x" * 300, ""],
        "--device": ["cpu", "auto", "cuda", "cuda:99", "cuda:-1", "mps", "gpu", "CPU", "",
                     "cuda:x"],
        "--threads": ["1", "0", "-1", "1000000000", "x", "1.5", ""],
        "--checkpoint": [fx["plain.pt"], fx["model.pt"], fx["model-dir"], fx["net-state.pt"],
                         fx["nan.pt"], fx["nan.pt"],
                         "missing.pt", fx["emptydir"], fx["text.txt"], fx["empty.pt"],
                         "/dev/null", fx["fifo.pt"], fx["pickle.pt"], fx["cnn.pt"], "",
                         "x" * 5000],
        "--model": [f"{fx['fuzz_probe_net.py']}:make", "", ":", "a:", ":b", "a:b:c",
                    "no_such_module_xyz:make", f"{fx['fuzz_probe_net.py']}:missing",
                    f"{fx['fuzz_probe_net.py']}:Net", "missing.py:make",
                    f"{fx['text.txt']}:make", f"{fx['fuzz_probe_broken.py']}:make",
                    fx["fuzz_probe_net.py"], "os:getcwd", "math:pi", "builtins:dict",
                    "json:loads", "torch.nn:Identity", "torch.nn:Linear", "x" * 5000 + ":make",
                    "ünï:make", "..:make", "/:make"],
        "--builtin": ["mlp", "cnn", "resnet18-mnist", "nope", "MLP", *TEXT_JUNK],
    }  # fmt: skip


FAST = {"--train-size": "200", "--test-size": "100", "--probe-points": "100",
        "--grad-points": "50", "--root": "runs"}  # fmt: skip
FLAGS = ("--centre", "--force", "--quiet")  # store_true


def probe_base(fx: Fixtures, rng: random.Random) -> dict[str, str | None]:
    """A valid probe command as {flag: value}: one of the four ways to give a model (one
    in ten: weights with NaN, which the probe must report as a numerical fault)."""
    net = fx["fuzz_probe_net.py"]
    bases: list[dict[str, str | None]] = [
        {"--builtin": "mlp", "--checkpoint": fx["plain.pt"], "--data": "mnist-5k",
         "--layer": "net.fc"},
        {"--checkpoint": fx["model.pt"], "--layer": "net.fc"},
        {"--model": f"{net}:make", "--data": "mnist-5k", "--layer": "fc"},
        {"--model": f"{net}:make", "--checkpoint": fx["net-state.pt"], "--data": "mnist-5k",
         "--layer": "hidden"},
    ]  # fmt: skip
    if rng.random() < 0.1:  # NaN weights: a valid command whose run is a numerical fault
        return {**bases[0], "--checkpoint": fx["nan.pt"], **FAST, "--quiet": None}
    return {**rng.choice(bases), **FAST, "--quiet": None}


def probe_case(fx: Fixtures, rng: random.Random) -> Case:
    """A valid probe command with up to three flags changed, dropped or added."""
    values = probe_values(fx)
    flags = probe_base(fx, rng)
    changed: list[str] = []
    what: list[str] = []
    extra: list[str] = []
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
        move = rng.random()
        if move < 0.75:
            flag = rng.choice(sorted(values))
            flags[flag] = rng.choice(values[flag])
            what.append(f"{flag}={flags[flag]}")
        elif move < 0.85 and flags:
            flag = rng.choice(sorted(flags))
            del flags[flag]
            what.append(f"no {flag}")
        elif move < 0.93:
            flag = rng.choice(FLAGS)
            flags[flag] = None if rng.random() < 0.7 else rng.choice(["yes", "", "1"])
            what.append(f"{flag}={flags[flag]}")
        else:
            flag = rng.choice(["--nope", "--layers", "--centre-features", "extra"])
            extra.append(flag)
            what.append(f"added {flag}")
        changed.append(flag)
    argv = ["probe"]
    for flag, value in flags.items():
        if value is None:
            argv.append(flag)
        elif value.startswith("-") or rng.random() < 0.3:
            argv.append(f"{flag}={value}")
        else:
            argv += [flag, value]
    argv += extra
    # a single flag set: the refusal names it, or the value given (a path, a stray word);
    # a dropped flag: the refusal may name the one to give instead
    single = changed[0] if len(changed) == 1 and not what[0].startswith("no ") else None
    names: tuple[str, ...] = ()
    if single is not None:
        names = (single, single.removeprefix("--").replace("-", "_"))
        value = flags.get(single)
        names += (value,) if value and value.strip() and len(value) <= 200 else ()
    what_text = "; ".join(w[:80] for w in what)
    return Case("probe-options", argv, names=names, changed=what_text, keys=frozenset(changed))


# real-data configs


def leaf_fields(model: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: pydantic FieldInfo} of every leaf of a config class."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            out.update(leaf_fields(sub, f"{prefix}{name}."))
        else:
            out[prefix + name] = info
    return out


GENERIC: list[Any] = [
    None, "none", "null", math.nan, math.inf, -math.inf, -1, 0, 1, 1e300, -1e300, 2**63,
    2**64, 10**30, 0.5, True, False, "", " ", "x" * 5000, "ünïcödé ✓", [], {}, [1, 2],
    {"a": 1}, "[NaN]", "1e400", "a\nb", "\x1b[31mred", "--", "-",
]  # fmt: skip
JUNK_KEYS = ["", ".", "train.", ".seed", "train..lr", "a" + ".a" * 40, "k" * 3000,
             "train.sgd.lr.x", "🙂", "nope", "train.nope", "attack.radii.0", "Seed", "seed ",
             "train", "attack"]  # fmt: skip


def field_values(fx: Fixtures, key: str, info: Any) -> list[Any]:
    """Values for one config field: by its name, its type, and the generic hostile ones."""
    leaf = key.rsplit(".", 1)[-1]
    paths = ["missing", fx["text.txt"], fx["emptydir"], "/dev/null", "", "~", "x" * 300,
             "/usr/share/datasets/fashion-mnist", SENTINEL]  # fmt: skip
    by_name: dict[str, list[Any]] = {
        "radii": [[0, 0.5, 1], [0.0], [1, 0.5, 0], [0, -0.1], [0, math.nan], [0, math.inf],
                  [0, 0], [], [1e300], [0, 1e30], list(range(1001)), [0.0, "a"], [[0]],
                  "0,1", 0.5],
        "data_dir": paths,
        "backbone": [None, fx["plain.pt"], fx["model.pt"], fx["model-dir"], fx["cnn.pt"],
                     *paths, fx["empty.pt"], fx["pickle.pt"], fx["fifo.pt"]],
        "train_size": [10, 9, 200, 4000, 60000, 10**9, 10**30, None, 2**63],
        "test_size": [10, 9, 100, 10000, 10**9, None],
        "seed": [0, 2**63 - 1, 2**63 - 2, 2**63, -1, 2**64],
        "seeds": [1, 2, 100, 101, 0],
        "grouping": ["parity", "halves", "0,1,0,1,0,1,0,1,0,1", "0,0,0,0,0,0,0,0,0,0",
                     "0,1,2,0,1,2,0,1,2,0", fx["good.json"], fx["bad.json"],
                     fx["three.toml"], "missing.json", fx["emptydir"]],
        "model": ["auto", "cnn", "mlp", "resnet18-cifar", "resnet18-mnist",
                  "resnet18-pretrained", "nope", "MLP"],
        "method": ["pgd", "FMN", "fmn+", "fmn+apgd ", "ddn"],
        "points": [10, 9, None, 10**9],
        "epochs": [1, 10**6, 10**12],
        "crop_padding": [0, 64, 65],
        "momentum": [0.0, 0.99, 1.0],
    }  # fmt: skip
    values = list(by_name.get(leaf, []))
    annotation = info.annotation
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is typing.Literal:
            choices = list(typing.get_args(arg))
            values += choices + [str(c).upper() for c in choices[:2]]
    default = info.get_default(call_default_factory=True)
    if isinstance(default, bool):
        values += [True, False, "yes", 2]
    elif isinstance(default, int):
        values += [default, default + 1, max(default - 1, 1), 2 * default or 1, float(default)]
    elif isinstance(default, float):
        values += [default, default / 2, default * 1.5, 1e-12]
    return values or GENERIC


def render(value: Any) -> str:
    """A value as ``--set`` text: strings raw, the rest as JSON (NaN and Infinity too)."""
    return value if isinstance(value, str) else json.dumps(value)


def toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = (f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(inner) + "}"
    return json.dumps("null" if value is None else value, ensure_ascii=False)  # TOML has no null


def config_text(items: list[tuple[str, Any]], suffix: str) -> str:
    """Dotted keys and values as a TOML or YAML file (a key's parts as nested tables)."""
    nested: dict[str, Any] = {}
    for key, value in items:
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    if suffix == ".yaml":
        import yaml

        return yaml.safe_dump(nested, allow_unicode=True)
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in nested.items())


OUTS = ["x" * 300, SENTINEL, f"{SENTINEL}/sub", ".", "", "ünïcödé-run", "--", "a/b/run"]
SHORTCUTS = {"train.data_dir": "--data-dir", "attack.verify": "--verify", "seeds": "--seeds"}


def config_case(fx: Fixtures, rng: random.Random) -> Case:
    """``featavg run`` or ``show-config`` of a real-data experiment with up to three fields
    set through --set, a config file or a shortcut flag (or a preset, device or --out)."""
    from featavg.experiments.registry import EXPERIMENTS

    name = rng.choice(REAL_DATA)
    exp = EXPERIMENTS[name]
    leaves = leaf_fields(exp.config_cls)
    command = "run" if rng.random() < 0.75 else "show-config"
    argv = [command, name]
    if command == "run":
        argv += ["--out", "run", "--quiet"]
        argv += ["--allow-large"] if rng.random() < 0.1 else []
    sets: list[str] = []
    filed: list[tuple[str, Any]] = []
    changed: list[tuple[str, ...]] = []  # per change: the names a refusal may give it
    what: list[str] = []
    for _ in range(rng.choice([0, 1, 1, 1, 1, 2, 3])):
        move = rng.random()
        if move < 0.06:
            argv.append(f"--preset={rng.choice([*exp.presets, 'nope', '', 'PAPER', '--'])}")
            changed.append(("--preset", "preset"))
            what.append(argv[-1])
            continue
        if move < 0.1 and command == "run":
            argv.append(f"--device={rng.choice(['cpu', 'cuda:99', 'gpu', '', 'cpu:0', '--'])}")
            changed.append(("--device", "device"))
            what.append(argv[-1])
            continue
        if move < 0.14 and command == "run":
            argv[3] = rng.choice(OUTS)
            changed.append(("--out", "out"))
            what.append(f"--out {argv[3]}")
            continue
        key = rng.choice(sorted(leaves)) if rng.random() < 0.88 else rng.choice(JUNK_KEYS)
        info = leaves.get(key)
        if info is None:
            value = rng.choice([1, "x", None, [0]])
        else:  # half the time a value the field may well take, else a hostile one
            value = rng.choice(field_values(fx, key, info) if rng.random() < 0.5 else GENERIC)
        flag, via = SHORTCUTS.get(key), rng.random()
        if flag is not None and via < 0.3:
            argv.append(f"{flag}={render(value)}")
        elif via < 0.7:
            sets.append(f"{key}={render(value)}" if rng.random() > 0.03 else key)
            flag = "--set"
        else:
            filed.append((key, value))
            flag = "--config"
        changed.append((key, key.rsplit(".", 1)[-1], flag))
        what.append(f"{flag} {key[:40]}={render(value)[:40]}")
    for item in sets:
        argv += ["--set", item]
    files = {}
    if filed:
        suffix = rng.choice([".toml", ".yaml"])
        try:
            files["config" + suffix] = config_text(filed, suffix)
        except (TypeError, ValueError):  # not expressible in TOML: YAML holds anything
            suffix = ".yaml"
            files["config" + suffix] = config_text(filed, suffix)
        argv += ["--config", "config" + suffix]
    names = changed[0] if len(changed) == 1 else ()
    keys = frozenset(c[0] for c in changed)
    return Case("real-data-configs", argv, files, names, "; ".join(what), keys)


def make_cases(count: int, seed: int, fx: Fixtures) -> list[Case]:
    """``count`` cases per surface, all drawn from ``seed``."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for _ in range(count):
        cases.append(probe_case(fx, random.Random(rng.random())))
        cases.append(config_case(fx, random.Random(rng.random())))
    return cases


# ---------------------------------------------------------------- running and judging


@dataclass
class Outcome:
    """What one command did: exit code (0 also for a real-data run stopped before its
    data), stdout, stderr, the exception that escaped ``main`` (a bug) or a hang."""

    code: int | None
    out: str
    err: str
    bug: BaseException | None = None
    stopped: bool = False


def run_cli(argv: list[str], cwd: Path) -> Outcome:
    """``featavg ARGV`` in this process with ``cwd`` as working directory, output captured,
    training stopped, time bounded; one thread, as before."""
    import torch

    from featavg.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        os.chdir(cwd)
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            no_training(),
            warnings.catch_warnings(),  # each case warns as a fresh process would
            time_limit(TIMEOUT_S),
        ):
            warnings.simplefilter("default")
            code: int | None = main(argv)
    except Validated:
        return Outcome(0, out.getvalue(), err.getvalue(), stopped=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except KeyboardInterrupt:
        raise
    except BaseException as bug:  # a traceback (or a Hang): counted by the caller
        return Outcome(None, out.getvalue(), err.getvalue(), bug)
    finally:
        os.chdir(old)
        torch.set_num_threads(1)
    return Outcome(code, out.getvalue(), err.getvalue())


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of everything under ``directory`` (links not
    followed; directories with size -1)."""
    found = {}
    for top, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = Path(top) / name
            st = path.lstat()
            size = -1 if path.is_dir() and not path.is_symlink() else st.st_size
            found[str(path.relative_to(directory))] = (size, st.st_mtime_ns)
    return found


def line_problem(outcome: Outcome) -> str | None:
    """Why the stderr of a refusal (exit 2) or a numerical fault (exit 3) is malformed."""
    lines = outcome.err.splitlines()
    start = PREFIX if outcome.code == 2 else FAULT
    if len(lines) != 1 or not lines[0].startswith(start):
        return f"not one {start!r} line: {outcome.err[:300]!r}"
    if len(lines[0]) > MAX_LINE or not lines[0].isprintable() or "Traceback" in lines[0]:
        return f"a line of {len(lines[0])} chars, or unprintable: {lines[0][:200]!r}"
    text = lines[0][len(start) :]
    if outcome.code == 2 and not re.match(r"\S.*?: |--\w", text):
        return f"names nothing: {lines[0][:200]!r}"
    if text.endswith("...") and ": " not in text:
        # an echoed value filled the line before it said what is wrong
        return f"the reason is cut off: {lines[0][:100]!r}..."
    return None


def names_it(case: Case, line: str) -> bool:
    """Whether a refusal names the single field (or flag) the case changed: its dotted key
    or last part, or, for an unknown key, the part of it that is unknown; the resource
    guard's refusal names the estimate instead."""
    text = line[len(PREFIX) :]
    if not case.names or text.startswith("resources: "):
        return True
    if any(n.strip() and n.strip() in text for n in case.names):
        return True
    # an unknown key is named from its first unknown part: train.'' for train..lr
    head = re.sub(r"^--config: '.*?': ", "", text).split(": ")[0].removesuffix("...")
    bare = re.sub(r"'([^']*)'", r"\1", head)  # '' is how an empty key is shown
    if not bare:
        return head == "''" and case.names[0].split(".")[0] == ""
    return case.names[0].startswith(bare)


def outputs_problem(case: Case, outcome: Outcome, cwd: Path, before: dict[str, Any]) -> str | None:
    """What is wrong with what the command left in its directory."""
    after = snapshot(cwd)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if outcome.code != 0 or outcome.stopped or case.surface != "probe-options":
        return f"left {changed[:4]}" if changed else None
    last = (outcome.out.strip().splitlines() or [""])[-1]
    match = re.fullmatch(r"probe: (done|cached) -> (.+)/summary\.json", last)
    if match is None:
        return f"exit 0 without the final line: {last[:200]!r}"
    run = (cwd / match[2]).resolve()
    manifest = run / "manifest.json"
    if not manifest.is_file():
        return f"exit 0, no {manifest}"
    listed = json.loads(manifest.read_text())["files"]
    for name, digest in listed.items():
        path = run / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            return f"exit 0, {name} missing or not what the manifest says"
    extra = {p.name for p in run.iterdir()} - set(listed) - {"manifest.json"}
    if "summary.json" not in listed or extra:
        return f"exit 0, summary.json unlisted or files beside the manifest: {sorted(extra)}"
    outside = [k for k in changed if not (cwd / k).resolve().is_relative_to(run)]
    outside = [k for k in outside if not run.is_relative_to((cwd / k).resolve())]  # parents
    return f"exit 0, also wrote {outside[:4]}" if outside else None


@dataclass
class Tally:
    verdicts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    slowest: float = 0.0
    last_err: str = ""

    def add(self, case: Case, workdir: Path) -> str:
        cwd = Path(tempfile.mkdtemp(prefix="case-", dir=workdir))
        (cwd / SENTINEL).write_text("a file featavg did not write\n")
        for name, text in case.files.items():
            (cwd / name).write_text(text)
        before = snapshot(cwd)
        start = time.perf_counter()
        outcome = run_cli(case.argv, cwd)
        self.last_err = outcome.err.strip()[:300].encode("unicode_escape").decode("ascii")
        self.slowest = max(self.slowest, time.perf_counter() - start)
        verdict, why = judge(case, outcome, cwd, before)
        if any((case.surface, key, verdict) in KNOWN for key in case.keys):
            self.known.append(f"{case.surface} {verdict}: {why} <- {case.label[:300]}")
            verdict = "known"
        self.verdicts[verdict] += 1
        if verdict in MUST_BE_ZERO:
            self.failures.append(f"{case.surface} {verdict}: {why} <- {case.label[:300]}")
        return verdict


def judge(case: Case, outcome: Outcome, cwd: Path, before: dict[str, Any]) -> tuple[str, str]:
    """(the case's column, why) in the order: hang, traceback, exit code, line, outputs."""
    if isinstance(outcome.bug, Hang):
        return "hang", f"past {TIMEOUT_S} s"
    if outcome.bug is not None:
        text = str(outcome.bug).splitlines()[0][:300] if str(outcome.bug) else ""
        return "traceback", f"{type(outcome.bug).__name__}: {text}"
    if "Traceback" in outcome.err:
        return "traceback", outcome.err[-300:]
    if outcome.code not in (0, 2, 3):
        return "other exit", f"exit {outcome.code}: {outcome.err[:200]!r}"
    if outcome.code in (2, 3):
        problem = line_problem(outcome)
        if problem is not None:
            return "malformed", problem
    line = outcome.err.strip()
    if case.surface == SURFACES[1] and outcome.code == 2 and not names_it(case, line):
        return "unnamed", f"{line[:200]!r} names none of {case.names}"
    if outcome.code == 0 and outcome.out.startswith("{"):
        try:
            json.loads(outcome.out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError as err:
            return "half-written", f"show-config printed no finite JSON config ({err})"
    problem = outputs_problem(case, outcome, cwd, before)
    if problem is not None:
        return "half-written", problem
    return f"exit {outcome.code}", ""


def run_cases(
    cases: list[Case], workdir: Path, show: Callable[[str], None] | None = None
) -> dict[str, Tally]:
    tallies = {s: Tally() for s in SURFACES}
    for case in cases:
        tally = tallies[case.surface]
        verdict = tally.add(case, workdir)
        if show is not None:
            show(f"{case.surface:17s} {verdict:12s} {case.label[:200]}\n    {tally.last_err}")
    return tallies


def report(tallies: dict[str, Tally]) -> str:
    """The counts: one row per outcome, one column per surface and the total (the rows
    from "other exit" on must be 0)."""
    total: Counter[str] = Counter()
    for tally in tallies.values():
        total.update(tally.verdicts)
    columns = [*(t.verdicts for t in tallies.values()), total]
    lines = [f"{'':14s}" + "".join(f"{name:>19s}" for name in [*tallies, "total"])]
    lines.append(f"{'cases':14s}" + "".join(f"{sum(c.values()):19d}" for c in columns))
    for row in COLUMNS:
        lines.append(f"{row:14s}" + "".join(f"{c[row]:19d}" for c in columns))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=160, help="per surface (default 160)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="print every case's verdict")
    parser.add_argument(
        "--memory-gib",
        type=float,
        default=8.0,
        help="address-space limit of this process (default 8): a runaway allocation is a "
        "MemoryError, counted as a traceback, not the machine running out of memory",
    )
    args = parser.parse_args()
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (int(args.memory_gib * 2**30), hard))
    import torch

    torch.set_num_threads(1)
    start, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        fx = make_fixtures(Path(tmp) / "fixtures")
        digest = fixture_digest(fx)
        cases = make_cases(args.cases, args.seed, fx)
        tallies = run_cases(cases, Path(tmp), print if args.list else None)
        if fixture_digest(fx) != digest:
            tallies[SURFACES[0]].failures.append("a case changed a fixture file")
    print(report(tallies))
    slowest = max(t.slowest for t in tallies.values())
    print(
        f"in {time.perf_counter() - start:.0f} s wall, {time.process_time() - cpu:.0f} s CPU "
        f"(seed {args.seed}; slowest case {slowest:.1f} s)"
    )
    for why in KNOWN.values():
        print("known (listed, not counted as failures):", why)
    for known in [k for t in tallies.values() for k in t.known][:10]:
        print("KNOWN", known)
    failures = [f for t in tallies.values() for f in t.failures]
    for failure in failures[:40]:
        print("FAIL", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
