"""Fuzzing the files and code a user hands to featavg: hostile progress files, model-file
metadata and user models. Every case must end in a one-line refusal or a correct result,
never a traceback or a hang.

    .venv/bin/python scripts/fuzz_model_files.py [--cases N] [--seed S]

Three surfaces, N seeded cases each (default 40, 120 in all):

* ``progress``: the progress file of a killed two-epoch training (two tiny CNNs, onecycle,
  Nesterov, crop-flip) damaged (bits flipped, truncated, bytes spliced in) or forged (a
  value anywhere in the training state replaced, deleted or reshaped, re-written with a
  matching checksum), then resumed. Correct: discarded with a one-line warning and the
  uninterrupted run's weights and records exactly; or resumed without a word to exactly
  those (damage the file format tolerates); or, for a forgery, a whole valid training
  (every epoch recorded, finite weights): a checksum is no signature, and a forged value
  within the range a real run could write cannot be told from one (counted apart).
* ``model-file``: a featavg ``model.pt`` with one field (metadata, normalisation, grouping,
  a weight) replaced, deleted or damaged, loaded by ``load_trained_model``, the probe's
  ``load_model`` and ``load_backbone_file``. Correct: a one-line ConfigError, or a model
  computing what a reference built by hand from the same dict computes.
* ``user-model``: a user module written from random parts (layers, parameter dtypes, what
  forward returns, exceptions and ``sys.exit`` at import or in the factory) through
  ``import_factory`` and ``check_model_fits``. Correct: a one-line ConfigError (a one-line
  NumericalFault for NaN/inf logits), or a model whose output an independent check
  confirms the probe can use.

Prints the table (cases, refused, discarded, accepted correct, accepted forgeries,
tracebacks, wrong results, hangs) and the first failures; exit status 1 on any failure.
``tests/test_fuzz_model_files.py`` runs a small seeded sample.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import random
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from featavg.config import ConfigError  # noqa: E402
from time_limits import Hang, time_limit  # noqa: E402

TIMEOUT_S = 60  # per case: far above any (about a second), far below a hang
SURFACES = ("progress", "model-file", "user-model")


@dataclass
class Case:
    """One input: its surface, a label and what runs it (returns the verdict, or raises)."""

    surface: str
    label: str
    run: Callable[[], str]


# verdicts a case's run returns; anything it raises is a traceback
OK_VERDICTS = ("refused", "discarded", "correct", "forgery accepted")


class Wrong(Exception):
    """A result that is not correct (a bug, like a traceback)."""


def one_line(err: BaseException) -> str:
    text = str(err)
    if not text or "\n" in text or len(text) > 1000:
        raise Wrong(f"not one line: {text[:200]!r}")
    return "refused"


# ---------------------------------------------------------------- progress files


@dataclass
class ProgressWorld:
    """The killed run's progress file and the uninterrupted run's result."""

    saved: bytes
    weights: list[dict[str, torch.Tensor]]
    records: list[list[dict[str, Any]]]
    workdir: Path


def progress_world(workdir: Path) -> ProgressWorld:
    from featavg.training.image_sgd import ImageSGD
    from image_trainer_child import CONFIG, tiny_cnn, toy_data, without_timing

    cfg = CONFIG.model_copy(update={"epochs": 2})
    x, targets = toy_data(128)
    full = [tiny_cnn(2, seed=1), tiny_cnn(3, seed=2)]
    records = ImageSGD(cfg).fit(full, x, targets, seed=4)

    def stop(epoch: int, model: nn.Module) -> dict[str, Any]:
        if epoch == 2:
            raise KeyboardInterrupt
        return {}

    ckpt = workdir / "progress-source.ckpt"
    with contextlib.suppress(KeyboardInterrupt):
        ImageSGD(cfg, checkpoint=ckpt).fit(
            [tiny_cnn(2, seed=1), tiny_cnn(3, seed=2)], x, targets, seed=4, on_record=[stop, None]
        )
    return ProgressWorld(
        ckpt.read_bytes(), [m.state_dict() for m in full], without_timing(records), workdir
    )


def hostile_values(rng: random.Random, like: Any) -> Any:
    """A value of the wrong kind, range or shape for something like ``like``."""
    pool: list[Any] = [
        None, -1, 0, 1, 99, -3, 10**30, 2**63, 1e300, -1e300, math.nan, math.inf, True, "x",
        "", [], {}, [1, 2, 3], {"a": 1}, b"bytes", 0.5, torch.zeros(()), torch.zeros(7),
        torch.zeros(3, dtype=torch.uint8), torch.full((2,), math.nan),
    ]  # fmt: skip
    if torch.is_tensor(like):
        pool += [
            like.flatten()[:-1] if like.numel() > 1 else torch.zeros(2),
            like.double(),
            like.long(),
            torch.full_like(like, math.nan) if like.is_floating_point() else like.float(),
            like * 1e30 if like.is_floating_point() else like + 10**6,
            like.unsqueeze(0),
        ]
    return rng.choice(pool)


def leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists (containers included)."""
    if path:
        yield path
    if isinstance(obj, dict):
        for key in list(obj):
            yield from leaves(obj[key], (*path, key))
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from leaves(item, (*path, i))


def at(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def forge(rng: random.Random, state: dict[str, Any]) -> str:
    """Replace, delete or tweak one value of ``state`` in place; returns what was done."""
    path = rng.choice(list(leaves(state)))
    parent, key = at(state, path[:-1]), path[-1]
    value = parent[key]
    move = rng.choice(["replace", "replace", "delete", "tweak"])
    if move == "delete":
        del parent[key]
        return f"deleted {path}"
    if move == "tweak" and torch.is_tensor(value) and value.is_floating_point():
        parent[key] = value + 1e-3  # in range: only the checksum could tell (it is forged)
        return f"tweaked {path}"
    parent[key] = hostile_values(rng, value)
    return f"replaced {path} by {type(parent[key]).__name__}"


def damage(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Flipped bits, a truncation or spliced-in bytes."""
    move = rng.choice(["flip", "flip", "truncate", "splice"])
    buf = bytearray(data)
    if move == "flip":
        spots = [rng.randrange(len(buf)) for _ in range(rng.randint(1, 3))]
        for spot in spots:
            buf[spot] ^= 1 << rng.randrange(8)
        return bytes(buf), f"flipped bits at {spots}"
    if move == "truncate":
        cut = rng.randrange(len(buf))
        return bytes(buf[:cut]), f"truncated to {cut}"
    spot = rng.randrange(len(buf))
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return bytes(buf[:spot]) + junk + bytes(buf[spot:]), f"{len(junk)} bytes spliced at {spot}"


def progress_case(world: ProgressWorld, rng: random.Random, index: int) -> Case:
    from featavg.training.checkpoint import read_progress, save_checkpoint, save_progress

    path = world.workdir / f"progress-{index}.ckpt"
    path.write_bytes(world.saved)
    kind = rng.choice(["damage", "forge", "forge", "outer"])
    if kind == "damage":
        data, label = damage(rng, world.saved)
        path.write_bytes(data)
    elif kind == "forge":
        state = read_progress(path)
        label = forge(rng, state)
        save_progress(path, state)
    else:
        outer = torch.load(path, weights_only=True)
        label = "outer " + forge(rng, outer)
        save_checkpoint(path, outer)
    forged = kind != "damage"
    return Case("progress", f"{kind}: {label}", lambda: resume_verdict(world, path, forged))


def resume_verdict(world: ProgressWorld, path: Path, forged: bool) -> str:
    from featavg.training.checkpoint import ProgressDiscarded
    from featavg.training.image_sgd import TIMING_KEYS, ImageSGD
    from image_trainer_child import CONFIG, tiny_cnn, toy_data, without_timing

    cfg = CONFIG.model_copy(update={"epochs": 2})
    x, targets = toy_data(128)
    models = [tiny_cnn(2, seed=1), tiny_cnn(3, seed=2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            records = ImageSGD(cfg, checkpoint=path, resume=True, foreign="discard").fit(
                models, x, targets, seed=4
            )
        except ConfigError as err:
            return one_line(err)
    for rs in records:  # what the summary makes of every record (trained_models)
        for r in rs:
            if not all(type(r[k]) in (float, int) and r[k] >= 0 for k in TIMING_KEYS):
                raise Wrong(f"a record's timings are no numbers: {r}")
    notices = [w for w in caught if issubclass(w.category, ProgressDiscarded)]
    for w in notices:
        one_line(Exception(str(w.message)))
    same = (
        all(
            torch.equal(v, want[k])
            for model, want in zip(models, world.weights, strict=True)
            for k, v in model.state_dict().items()
        )
        and without_timing(records) == world.records
    )
    if same:
        return "discarded" if notices else "correct"
    if notices:
        raise Wrong("discarded, yet the result differs from the uninterrupted run")
    if not forged:
        raise Wrong("damaged file accepted and the result differs")
    whole = all(
        [r["step"] for r in rs] == [1, 2] and all(math.isfinite(float(r["loss"])) for r in rs)
        for rs in records
    ) and all(bool(torch.isfinite(p).all()) for m in models for p in m.parameters())
    if not whole:
        raise Wrong("forged file accepted into a broken training")
    return "forgery accepted"


# ---------------------------------------------------------------- model files


def model_blob() -> dict[str, Any]:
    """A featavg model file's dict as ``featavg train`` writes it (an untrained CNN)."""
    from featavg.models.model_file import model_file_digest

    blob = _unsealed_blob()
    blob["sha256"] = model_file_digest(blob)
    return blob


def _unsealed_blob() -> dict[str, Any]:
    from featavg.models.builtin import build_model
    from featavg.models.image_classifier import MNIST_HALF
    from featavg.models.model_file import MODEL_FORMAT

    return {
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
        "state_dict": build_model("cnn", 2, 1, 28, MNIST_HALF, seed=0).state_dict(),
    }


FIELD_VALUES: dict[str, list[Any]] = {
    "model": ["mlp", "resnet18-cifar", "resnet50", "", None, 3],
    "num_classes": [1, 3, 10, 0, -2, 10**10, "two", 2.0, True, None, 2**70],
    "in_channels": [3, 4, 5, 0, "1", None, 1.5],
    "image_size": [8, 32, 4096, 10**6, 0, None, "28", 28.0],
    "labels": ["fine", "medium", 1, None],
    "config": [{"a": 1}, 5, None, "", '{"seed": 1}'],
    "dataset": [{"name": "mnist", "stand_in": "x"}, {"name": ""}, None, "mnist", {"name": 5}],
}


def mutate_model_blob(rng: random.Random, blob: dict[str, Any]) -> str:
    move = rng.choice(["field", "field", "normalization", "grouping", "weights", "forge", "none"])
    if move == "none":
        return "unchanged"
    if move == "field":
        name = rng.choice(list(FIELD_VALUES))
        blob[name] = rng.choice(FIELD_VALUES[name])
        return f"{name} = {blob[name]!r}"
    if move == "normalization":
        norm = blob["normalization"]
        part = rng.choice(["mean", "std", "name", "whole"])
        values: list[Any] = [[0.5] * 3, [], [0.0], [-1.0], [math.nan], [1e300], ["a"], None, 0.5]
        if part == "whole":
            blob["normalization"] = rng.choice([None, "mnist-half", [0.5], {}])
            return f"normalization = {blob['normalization']!r}"
        norm[part] = rng.choice(values if part != "name" else ["", None, 7, "x" * 500])
        return f"normalization.{part} = {norm[part]!r}"
    if move == "grouping":
        blob["grouping"] = rng.choice(
            [
                None, [0, 1], {"name": "g"}, {"name": "g", "groups": [0, 10**15]},
                {"name": "g", "groups": ["a", "b"]}, {"name": "g", "groups": [0] * 10},
                {"name": "g", "groups": [0, 1, 2]}, {"name": 5, "groups": [0, 1]},
            ]
        )  # fmt: skip
        return f"grouping = {blob['grouping']!r}"
    if move == "weights":
        state = blob["state_dict"]
        key = rng.choice(list(state))
        action = rng.choice(["hostile", "delete", "add", "whole"])
        if action == "delete":
            del state[key]
            return f"deleted weight {key}"
        if action == "add":
            state["extra.weight"] = torch.zeros(2)
            return "added a weight"
        if action == "whole":
            blob["state_dict"] = rng.choice([None, [], {}, {"a": 1}, torch.zeros(3)])
            return f"state_dict = {type(blob['state_dict']).__name__}"
        state[key] = hostile_values(rng, state[key])
        return f"weight {key} = {type(state[key]).__name__}"
    return forge(rng, blob)


def model_file_case(workdir: Path, rng: random.Random, index: int) -> Case:
    path = workdir / f"model-{index}.pt"
    blob = model_blob()
    if rng.random() < 0.15:
        torch.save(blob, path)
        data, label = damage(rng, path.read_bytes())
        path.write_bytes(data)
        return Case("model-file", f"damage: {label}", lambda: model_file_verdict(path, None))
    label = mutate_model_blob(rng, blob)
    seal = rng.choice(["resealed", "resealed", "resealed", "stale digest", "no digest"])
    if seal == "no digest":
        blob.pop("sha256", None)
    elif seal == "resealed":  # edited consistently: only the field checks can tell
        from featavg.models.model_file import model_file_digest

        blob.pop("sha256", None)
        blob["sha256"] = model_file_digest(blob)
    torch.save(blob, path)
    return Case("model-file", f"{label} ({seal})", lambda: model_file_verdict(path, blob))


def model_file_verdict(path: Path, blob: dict[str, Any] | None) -> str:
    """Every loader refuses in one line or loads the model a reference computes."""
    from featavg.models.backbone_file import load_backbone_file
    from featavg.models.model_file import load_trained_model
    from featavg.probing.loading import load_model

    loaders: list[Callable[[], nn.Module]] = [
        lambda: load_trained_model(path)[0],
        lambda: (
            load_model(
                factory=None, builtin=None, checkpoint=str(path), data=None, dataset_name=None
            ).model
        ),
        lambda: load_backbone_file(path)[0],
    ]
    verdicts = set()
    for load in loaders:
        try:
            model = load()
        except ConfigError as err:
            verdicts.add(one_line(err))
            continue
        if blob is None:  # a damaged file that still loads: it must be the original
            blob = model_blob()
        verdicts.add(reference_check(model, blob))
    if len(verdicts) > 1:
        raise Wrong(f"loaders disagree: {sorted(verdicts)}")
    return verdicts.pop()


def reference_check(model: nn.Module, blob: dict[str, Any]) -> str:
    """The loaded model computes what one built by hand from ``blob`` computes."""
    from featavg.models.builtin import BUILTIN_MODELS
    from featavg.models.image_classifier import ImageClassifier, Normalization

    norm = blob["normalization"]
    entry = BUILTIN_MODELS[blob["model"]]
    c, s = blob["in_channels"], blob["image_size"]
    reference = ImageClassifier(
        entry.build(blob["num_classes"], c, s, None),
        Normalization(tuple(norm["mean"]), tuple(norm["std"]), norm["name"]),
    )
    reference.load_state_dict(blob["state_dict"])
    # a model for any image size is compared at a small one: a valid file may claim 4096
    size = s if s <= 64 or entry.image_size is not None or blob["model"] == "mlp" else 32
    x = torch.rand(2, c, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if not torch.equal(model.eval()(x), reference.eval()(x)):
            raise Wrong("the loaded model computes another function than its file says")
    return "correct"


# ---------------------------------------------------------------- user models

LAYERS = [
    "nn.Sequential(nn.Flatten(), nn.Linear(784, {o}))",
    "nn.Sequential(nn.Flatten(), nn.Linear(100, {o}))",
    "nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, {o}))",
    "nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear({o}))",
    "nn.Sequential(nn.Flatten(), nn.Embedding(10, {o}))",
    "nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.BatchNorm1d(8), nn.Linear(8, {o}))",
    "nn.Identity()",
]
DTYPES = ["", ".float()", ".double()", ".half()", ".bfloat16()", ".to(torch.int8)"]
OUTPUTS = [
    "out", "out * 2 + 1", "torch.log_softmax(out, 1)", "(out, out)", "{'logits': out}",
    "[out]", "out.detach()", "out.long()",
    "out * float('nan')", "out * float('inf')", "None", "out.unsqueeze(0)", "out[:1]",
    "out.sum()", "out.reshape(-1)", "out.to(torch.complex64)",
]  # fmt: skip
FACTORIES = [
    "return Net()", "return 5", "return nn.Linear",
    "raise ValueError('bad')", "raise KeyError()", "sys.exit(0)", "sys.exit(3)",
    "sys.exit('why')", "raise RecursionError()", "raise MemoryError()",
    "with torch.device('meta'):\n        return Net()", "return [Net()]",
]  # fmt: skip
MODULE_TOP = [
    "", "1 / 0", "import no_such_module_xyz", "sys.exit(0)", "def broken(:",
    "raise SystemExit(2)", "x = undefined_name",
]  # fmt: skip


def user_model_source(rng: random.Random) -> tuple[str, str]:
    """A user module: a model that fits (the first entry of every list) with up to three of
    its parts drawn at random instead."""
    o = rng.choice([2, 10, 1, 3, 0])
    parts = {"layer": LAYERS[0], "dtype": DTYPES[0], "output": OUTPUTS[0]}
    parts.update(factory=FACTORIES[0], top=MODULE_TOP[0], no_grad="")
    pools = {"layer": LAYERS, "dtype": DTYPES, "output": OUTPUTS, "factory": FACTORIES}
    pools.update(top=MODULE_TOP, no_grad=["", "torch.no_grad()"])
    for name in rng.sample(sorted(pools), rng.randint(0, 3)):
        parts[name] = rng.choice(pools[name])
    layer = parts["layer"].format(o=o)
    body = (
        f"        with {parts['no_grad']}:\n            out = self.net(x)\n"
        if parts["no_grad"]
        else "        out = self.net(x)\n"
    )
    source = (
        "import sys\nimport torch\nfrom torch import nn\n"
        f"{parts['top']}\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        f"        self.net = {layer}{parts['dtype']}\n"
        "    def forward(self, x):\n"
        f"{body}"
        f"        return {parts['output']}\n"
        "def make():\n"
        f"    {parts['factory']}\n"
    )
    label = "; ".join(f"{k} {v!r}" for k, v in parts.items() if v) + f"; outputs {o}"
    return source, label


def user_model_case(workdir: Path, rng: random.Random, index: int) -> Case:
    source, label = user_model_source(rng)
    module = workdir / f"fuzz_user_net_{index}.py"
    module.write_text(source)
    return Case("user-model", label, lambda: user_model_verdict(module))


def user_model_verdict(module: Path) -> str:
    from featavg.faults import NumericalFault
    from featavg.probing.loading import check_model_fits, import_factory

    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    try:
        model = import_factory(f"{module}:make")
        check_model_fits(model, x, 10, 2)
    except (ConfigError, NumericalFault) as err:  # NaN/inf logits: a numerical fault
        return one_line(err)
    # accepted: an independent look at what the probe will get
    xf = (x.float() / 255).requires_grad_(True)
    model.eval()
    out = model(xf)
    fits = (
        isinstance(out, torch.Tensor)
        and out.dim() == 2
        and out.shape[0] == 2
        and out.shape[1] in (1, 2, 10)
        and out.is_floating_point()
        and out.requires_grad
        and bool(torch.isfinite(out).all())
    )
    if not fits:
        raise Wrong("the check accepted a model the probe cannot use")
    return "correct"


# ---------------------------------------------------------------- running


@dataclass
class Tally:
    verdicts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0

    def add(self, case: Case) -> str:
        start = time.perf_counter()
        try:
            with (
                time_limit(TIMEOUT_S),
                contextlib.redirect_stdout(io.StringIO()),
                warnings.catch_warnings(),
            ):
                warnings.simplefilter("ignore", UserWarning)  # torch's, about user layers
                verdict = case.run()
        except Hang:
            verdict = "hang"
        except Wrong as err:
            verdict = "wrong result"
            self.failures.append(f"{case.surface} [{case.label}]: {err}")
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # a traceback: anything else escaping, SystemExit too
            verdict = "traceback"
            last = traceback.format_exception_only(type(err), err)[-1].strip()
            self.failures.append(f"{case.surface} [{case.label}]: {last[:300]}")
        if verdict == "hang":
            self.failures.append(f"{case.surface} [{case.label}]: past {TIMEOUT_S} s")
        self.verdicts[verdict] += 1
        self.slowest = max(self.slowest, time.perf_counter() - start)
        return verdict


def make_cases(count: int, seed: int, workdir: Path) -> list[Case]:
    """``count`` cases per surface, all drawn from ``seed``."""
    rng = random.Random(seed)
    world = progress_world(workdir)
    cases: list[Case] = []
    for i in range(count):
        cases.append(progress_case(world, random.Random(rng.random()), i))
        cases.append(model_file_case(workdir, random.Random(rng.random()), i))
        cases.append(user_model_case(workdir, random.Random(rng.random()), i))
    return cases


def run_cases(cases: list[Case], show: bool = False) -> dict[str, Tally]:
    tallies = {s: Tally() for s in SURFACES}
    for case in cases:
        verdict = tallies[case.surface].add(case)
        if show:
            print(f"{case.surface:10s} {verdict:16s} {case.label[:150]}")
    return tallies


def report(tallies: dict[str, Tally]) -> str:
    columns = ("refused", "discarded", "correct", "forgery accepted", "traceback",
               "wrong result", "hang")  # fmt: skip
    lines = [f"{'surface':11s} {'cases':>6s} " + " ".join(f"{c:>16s}" for c in columns)]
    total: Counter[str] = Counter()
    for surface, tally in tallies.items():
        total.update(tally.verdicts)
        n = sum(tally.verdicts.values())
        lines.append(
            f"{surface:11s} {n:6d} " + " ".join(f"{tally.verdicts[c]:16d}" for c in columns)
        )
    n = sum(total.values())
    lines.append(f"{'total':11s} {n:6d} " + " ".join(f"{total[c]:16d}" for c in columns))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40, help="per surface (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="print every case's verdict")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tallies = run_cases(make_cases(args.cases, args.seed, Path(tmp)), args.list)
    print(report(tallies))
    print(f"in {time.perf_counter() - start:.0f} s (seed {args.seed})")
    failures = [f for t in tallies.values() for f in t.failures]
    for failure in failures[:30]:
        print("FAIL", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
