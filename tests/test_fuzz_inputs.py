"""Config fuzzing (issue 13, deliverable 1): malformed and extreme inputs through every entry
point end in a valid config or in exit code 2 with one short line, never a traceback or a hang.

Six hypothesis strategies x EXAMPLES generated inputs each (600 in CI, derandomized, so the
suite is deterministic), over every registered experiment (real-data ones validated only):
``--set`` values, TOML files, YAML files, ``--grid`` lists, whole argument lists, and the
Python API's keyword overrides. Nothing is trained: ``run``, ``sweep`` and ``train`` stop
right after their config is validated (:func:`no_compute`). Hand-picked cases then pin the
rules the fuzzing relies on (config paths that are FIFOs or devices, YAML bombs, duplicate
keys, the ``none`` / ``null`` rule, list fields as strict as their scalar twins).
``scripts/reliability_fuzz.py`` runs the same strategies with thousands of examples.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featavg
from featavg.cli import main
from featavg.config import MAX_MESSAGE, ConfigError, error_line, parse_value
from featavg.experiments.registry import EXPERIMENTS
from time_limits import time_limit

EXAMPLES = 100  # per strategy; 6 strategies
TIMEOUT_S = 20  # per input: far above any case (< 1 s), far below a hang
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------- running one input


class _Validated(Exception):
    """Raised where a command would start computing: its config was accepted."""


@dataclass
class Outcome:
    """What one CLI input did: exit code (0 also for a config validated and stopped before
    computing), stdout, stderr, and the exception that escaped ``main`` (a bug) if any."""

    code: int | None
    out: str
    err: str
    bug: BaseException | None = None


@contextlib.contextmanager
def no_compute() -> Iterator[None]:
    """``run``, ``sweep`` and ``train`` validate everything, then stop before computing."""
    import featavg.sweep as sweep

    real_plan = sweep.plan_sweep

    def plan_then_stop(*args: Any, **kwargs: Any) -> Any:
        real_plan(*args, **kwargs)  # every cell's config validated
        raise _Validated

    def stop(*args: Any, **kwargs: Any) -> Any:
        raise _Validated

    with (
        mock.patch("featavg.experiments.runner.run_experiment", stop),
        mock.patch("featavg.trained_models.train_model", stop),
        mock.patch.object(sweep, "plan_sweep", plan_then_stop),
    ):
        yield


def run_cli(argv: list[str]) -> Outcome:
    """``featavg ARGV`` in this process, output captured, computing stopped, time bounded."""
    import torch

    threads = torch.get_num_threads()  # run/sweep apply --threads to this process
    out, err = io.StringIO(), io.StringIO()
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            no_compute(),
            time_limit(TIMEOUT_S),
        ):
            code: int | None = main(argv)
    except _Validated:
        code = 0
    except SystemExit as exit_:  # --help, --version
        code = exit_.code if isinstance(exit_.code, int) else 0
    except Exception as bug:  # noqa: BLE001 - a bug (or a Hang): the caller reports it
        return Outcome(None, out.getvalue(), err.getvalue(), bug)
    finally:
        torch.set_num_threads(threads)
    return Outcome(code, out.getvalue(), err.getvalue())


def problems(outcome: Outcome) -> list[str]:
    """Everything wrong with an outcome ([] for a valid config or a proper refusal)."""
    if outcome.bug is not None:
        return [f"{type(outcome.bug).__name__}: {error_line(str(outcome.bug), 200)}"]
    found = []
    if outcome.code not in (0, 2):
        found.append(f"exit code {outcome.code}")
    if "Traceback" in outcome.err:
        found.append("traceback on stderr")
    if outcome.code == 2:
        lines = outcome.err.splitlines()
        if len(lines) != 1 or not lines[0].startswith("featavg: error: "):
            found.append(f"not one error line: {outcome.err[:200]!r}")
        elif len(lines[0]) > MAX_MESSAGE or not lines[0].isprintable():
            found.append(f"error line of {len(lines[0])} chars or unprintable")
    return found


def assert_clean(outcome: Outcome) -> None:
    """No bug, no hang, exit 0 or 2; a 0 from show-config prints a finite JSON config."""
    if outcome.bug is not None:
        raise outcome.bug
    assert problems(outcome) == []
    if outcome.code == 0 and outcome.out.startswith("{"):
        json.loads(outcome.out, parse_constant=_no_constant)  # no NaN / Infinity in a config


def _no_constant(name: str) -> Any:
    raise AssertionError(f"a config printed {name}")


# ---------------------------------------------------------------- strategies

NAMES = sorted(EXPERIMENTS)


def _dotted_fields(model: Any, prefix: str = "") -> list[str]:
    """Every section and leaf of a config class as a dotted key."""
    keys = []
    for name, info in model.model_fields.items():
        keys.append(prefix + name)
        sub = info.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            keys += _dotted_fields(sub, f"{prefix}{name}.")
    return keys


FIELDS = {name: _dotted_fields(exp.config_cls) for name, exp in EXPERIMENTS.items()}
WORDS = [
    "none", "null", "None", "NULL", "NaN", "nan", "inf", "-inf", "Infinity", "-Infinity",
    "true", "False", "yes", "~", "", " ", "[]", "{}", "[1,1]", "[NaN]", "[1e400]", "1e400",
    "-0", "0.0", "1e-320", "0x10", "1_000", "sphere", "ball", "uniform", "ladder", "normal",
    "he", "auto", "direct", "gram", "iid", "balanced", "parity", "halves", "0,1,0,1",
    "x" * 5000, "9" * 5000, "[" * 60 + "]" * 60, "a\nb", "\x1b[31mred", "a\x00b", "\udcff",
    "ünïcödé ✓", "/dev/zero", "/tmp", "../../etc/passwd", "{\"a\": {\"b\": [1, {}]}}",
    "x" * 300, "x" * 300 + ".json", "~/nope.toml", "0,1,0,1,0,1,0,1,0,1",
]  # fmt: skip


def _fifos() -> list[str]:
    """FIFOs with the suffixes of files a field may name (grouping .json/.toml, a backbone
    .pt, a config .yaml): opening one for reading blocks until a writer comes."""
    import atexit
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="featavg-fuzz-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    paths = [os.path.join(directory, f"fifo{suffix}") for suffix in (".json", ".toml", ".pt", "")]
    for path in paths:
        os.mkfifo(path)
    return paths


WORDS += _fifos()
INTS = st.one_of(
    st.integers(-3, 20),
    st.sampled_from([2**31, 2**63 - 1, 2**63, -(2**63) - 1, 10**30, 10**400]),
)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-10, 10),
    st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 1e300, 0.5, 1.0]),
)
SCALARS = st.one_of(
    st.booleans(), INTS, FLOATS, st.text(max_size=12), st.sampled_from(WORDS), st.none()
)
HOSTILE = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(string.ascii_lowercase + "._", max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
# values a field may well accept, so that valid configs are exercised too
PLAUSIBLE = st.one_of(
    st.integers(1, 8),
    st.floats(0.001, 2.0),
    st.sampled_from(["none", "null", "sphere", "ball", "ladder", "uniform", "normal", "auto"]),
    st.lists(st.floats(0, 5), min_size=1, max_size=4).map(lambda v: sorted(set(v))),
    st.lists(st.integers(2, 6), min_size=2, max_size=3).map(lambda v: sorted(set(v))),
)
VALUES = st.one_of(PLAUSIBLE, HOSTILE)


def render(value: Any) -> str:
    """A value as ``--set`` text: strings raw, the rest as JSON (NaN / Infinity included)."""
    return value if isinstance(value, str) else json.dumps(value)


def keys_for(name: str) -> st.SearchStrategy[str]:
    junk = ["", ".", "data.", ".d", "data..d", "a" + ".a" * 40, "k" * 3000, "data.d.x", "🙂"]
    fields = st.sampled_from(FIELDS[name])
    return st.one_of(fields, fields, fields, st.sampled_from(junk), st.text(max_size=20))


DEFAULTS = {name: exp.config_cls().model_dump(mode="json") for name, exp in EXPERIMENTS.items()}


def near_default(name: str, key: str) -> st.SearchStrategy[Any]:
    """Values close to the field's default (mostly valid): the default, small changes of
    it, a shortened list, "null" / "none" for a None default."""
    value: Any = DEFAULTS[name]
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return PLAUSIBLE
        value = value[part]
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.sampled_from([value, value + 1, max(value - 1, 1), 2 * value or 1])
    if isinstance(value, float):
        return st.sampled_from([value, value / 2, value * 1.5])
    if isinstance(value, list):
        return st.sampled_from([value, value[:1], value[-1:]])
    if value is None:
        return st.sampled_from(["null", "none", "NULL"])
    return st.just(value)


@st.composite
def set_item(draw: st.DrawFn, name: str, hostile: bool = True) -> str:
    """One ``K=V``: a field and a value near its default; ``hostile``: also junk keys,
    hostile values and malformed items."""
    if not hostile:
        key = draw(st.sampled_from(FIELDS[name]))
        return f"{key}={render(draw(near_default(name, key)))}"
    key = draw(keys_for(name))
    value = draw(st.one_of(near_default(name, key), VALUES))
    return key if draw(st.integers(0, 20)) == 0 else f"{key}={render(value)}"


@st.composite
def set_args(draw: st.DrawFn) -> list[str]:
    """``show-config EXP --set K=V ...``: half of them plausible (valid configs are
    checked too), half hostile."""
    name = draw(st.sampled_from(NAMES))
    argv = ["show-config", name]
    hostile = draw(st.booleans())
    for _ in range(draw(st.integers(1, 3))):
        argv += ["--set", draw(set_item(name, hostile))]
    return argv


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int | str):
        return json.dumps(value) if isinstance(value, str) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    return "''"  # None: TOML has no null; an empty literal string stands in


def _nested(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """Dotted keys to nested dicts, a later key replacing a clashing earlier one. Values
    are copied: a drawn value may be a section of DEFAULTS, which a later dotted key would
    otherwise change in place (then the strategies drawing from DEFAULTS change too)."""
    out: dict[str, Any] = {}
    for key, value in copy.deepcopy(items):
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return out


# nine levels of nine aliases each: 9**7 values once expanded, from a 300-byte file
BILLION_LAUGHS = "a: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdef", "bcdefg", strict=True)
)
YAML_NASTIES = [
    "a: !!python/object/apply:os.system ['echo pwned']\n",
    "!!python/name:os.system\n",
    "seed: !!binary aGVsbG8=\n",
    "seed: 2020-01-01\n",
    "seeds: 1\nseeds: 2\n",
    "data:\n  d: 5\n  d: 6\n",
    "- 1\n- 2\n",
    "just a string\n",
    "false\n",
    "0\n",
    "---\nseeds: 1\n---\nseeds: 2\n",
    "? [a, b]\n: 1\n",
    "data: &a {d: 5}\ntrain: *a\n",
    "a: &x [*x]\n",
    "&a [*a]\n",
    BILLION_LAUGHS,
    "a: " + "[" * 3000 + "]" * 3000 + "\n",
    "seed: " + "9" * 5000 + "\n",
    "data:\n\td: 5\n",
    "\ufeffseeds: 2\n",
    "seeds: .nan\n",
    "train: {lr: .inf}\n",
    "1: 2\n",
    "null: 1\n",
    "data: {d: !!float 1e999}\n",
    "seeds: 0o17\n",
    "'': 1\n",
    "x: !custom 1\n",
]
TOML_NASTIES = [
    "seeds = 1\nseeds = 2\n",
    "[data]\nd = 5\n[data]\nk = 2\n",
    "seed = " + "9" * 5000 + "\n",
    "a = " + "[" * 3000 + "]" * 3000 + "\n",
    "train.lr = nan\n",
    "train.lr = inf\n",
    "data = 5\n[data]\nd = 3\n",
    "seed = 1979-05-27T07:32:00Z\n",
    'seed = "\\ud800"\n',
    "= 1\n",
    "x = 1\x00\n",
    "[[data]]\nd = 1\n",
]


@st.composite
def config_file(draw: st.DrawFn, suffix: str) -> tuple[str, bytes]:
    """(experiment, file content) for a TOML or YAML file: fields with hostile values,
    hand-made nasties, random text, or a mix."""
    import yaml

    name = draw(st.sampled_from(NAMES))
    hostile = draw(st.booleans())  # else plausible: valid files are checked too
    if hostile:
        keys = draw(st.lists(keys_for(name), max_size=4))
        items = [(k, draw(st.one_of(near_default(name, k), VALUES))) for k in keys]
    else:
        keys = draw(st.lists(st.sampled_from(FIELDS[name]), max_size=3))
        items = [(k, draw(near_default(name, k))) for k in keys]
    nasties = YAML_NASTIES if suffix == ".yaml" else TOML_NASTIES
    kind = draw(st.integers(0, 4)) if hostile else 0
    if suffix == ".yaml":
        try:
            text = yaml.safe_dump(_nested(items), allow_unicode=draw(st.booleans()))
        except yaml.YAMLError:
            text = "{}\n"
    else:
        dotted = (".".join(json.dumps(part) for part in k.split(".")) for k, _ in items)
        text = "".join(f"{k} = {_toml_value(v)}\n" for k, (_, v) in zip(dotted, items, strict=True))
    if kind == 1:
        text = draw(st.sampled_from(nasties))
    elif kind == 2:
        text = text + draw(st.sampled_from(nasties))
    elif kind == 3:
        text = draw(st.text(max_size=80))
    raw = text.encode("utf-8", "surrogatepass")
    if kind == 4 and raw:
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.binary(max_size=8)) + raw[cut:]  # bytes flipped in
    return name, raw


@st.composite
def grid_args(draw: st.DrawFn) -> list[str]:
    """``sweep EXP --grid K=V1,V2 ... [--set ...] [--seeds N]``, stopped after planning."""
    name = draw(st.sampled_from(NAMES))
    argv = ["sweep", name]
    hostile = draw(st.booleans())  # else plausible: valid grids are planned too
    for _ in range(draw(st.integers(1, 2))):
        key = draw(keys_for(name) if hostile else st.sampled_from(FIELDS[name]))
        near = near_default(name, key)
        values = draw(
            st.lists(
                st.one_of(near, VALUES) if hostile else near,
                min_size=1,
                max_size=3,
                unique_by=render,
            )
        )
        text = ",".join(render(v) for v in values)
        argv += ["--grid", key if hostile and draw(st.integers(0, 15)) == 0 else f"{key}={text}"]
    if draw(st.booleans()):
        argv += ["--set", draw(set_item(name, hostile))]
    if hostile and draw(st.booleans()):
        argv += [
            "--seeds",
            render(draw(st.one_of(st.integers(1, 3), INTS, st.sampled_from(WORDS)))),
        ]
    return argv


OPTIONS = [
    "--set", "--config", "--seeds", "--preset", "--grid", "--out", "--device", "--executor",
    "--workers", "--metric", "--explain", "--reproduce", "--force", "--quiet",
    "--allow-large", "--epochs", "--model", "--data", "--grouping", "--labels", "--help",
    "--version", "--threads", "-x", "--", "--set=seeds=2",
]  # fmt: skip
COMMANDS = ["show-config", "run", "sweep", "train", "list"]


@st.composite
def argv_lists(draw: st.DrawFn) -> list[str]:
    """Whole argument lists: a command (or junk), an experiment (or junk), then options
    and values in any order (``--threads`` only with harmless values)."""
    argv = [draw(st.sampled_from([*COMMANDS, *COMMANDS, "", "nope", "--version"]))]
    argv.append(draw(st.sampled_from([*NAMES, "", "x" * 3000, "synthetic"])))
    for _ in range(draw(st.integers(0, 6))):
        option = draw(st.sampled_from(OPTIONS))
        argv.append(option)
        if option == "--threads":
            argv.append(draw(st.sampled_from(["1", "0", "-1", "x", "1e9"])))
        elif option in ("--set", "--grid"):
            argv.append(draw(set_item(argv[1] if argv[1] in FIELDS else NAMES[0])))
        elif option == "--out":
            argv.append("/nonexistent/featavg-fuzz")  # never created: nothing computes
        elif option not in ("--explain", "--reproduce", "--force", "--quiet", "--help"):
            argv.append(render(draw(SCALARS)))
    return argv


ODD = st.sampled_from(
    [b"bytes", {1, 2}, object(), 1 + 2j, Path("/tmp"), (1, 2), range(3), Ellipsis, int]
)
API_VALUES = st.one_of(
    VALUES,
    ODD,
    st.lists(st.one_of(SCALARS, ODD), max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), st.one_of(SCALARS, ODD)),
)


@st.composite
def api_calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """(experiment, keyword overrides) for ``featavg.show_config``: half of them fields
    near their defaults, half any Python values under any keys."""
    name = draw(st.sampled_from(NAMES))
    fields = st.sampled_from([k.replace(".", "__") for k in FIELDS[name]])
    if draw(st.booleans()):
        keys = draw(st.lists(fields, max_size=3))
        values = [draw(near_default(name, k.replace("__", "."))) for k in keys]
        nulls = ("null", "NULL")
        return name, {k: None if v in nulls else v for k, v in zip(keys, values, strict=True)}
    keys = st.one_of(fields, st.text(max_size=10))
    return name, draw(st.dictionaries(keys, API_VALUES, max_size=4))


def api_outcome(name: str, kwargs: dict[str, Any]) -> str:
    """'valid', 'refused' or 'bug: ...' for ``featavg.show_config(name, **kwargs)``."""
    reserved = {"experiment", "config_file", "preset"}
    kwargs = {k: v for k, v in kwargs.items() if k not in reserved}
    try:
        with time_limit(TIMEOUT_S):
            cfg = featavg.show_config(name, **kwargs)
        json.dumps(cfg, allow_nan=False)  # what was accepted is finite, plain JSON
    except ConfigError as err:
        text = str(err)
        return "refused" if "\n" not in text else f"bug: multi-line error {text[:100]!r}"
    except Exception as bug:  # noqa: BLE001
        return f"bug: {type(bug).__name__}: {error_line(str(bug), 200)}"
    return "valid"


def file_outcome(directory: Path, suffix: str, case: tuple[str, bytes]) -> Outcome:
    """``show-config EXP --config FILE`` on a file holding ``case``'s bytes."""
    name, raw = case
    path = directory / f"fuzz{suffix}"
    path.write_bytes(raw)
    return run_cli(["show-config", name, "--config", str(path)])


# ---------------------------------------------------------------- the six fuzz tests
# (each 2-6 s: marked slow, so `-m "not slow"` skips them locally; CI runs them)


@pytest.mark.slow
@FUZZ
@given(set_args())
def test_fuzzed_set_values(argv: list[str]) -> None:
    assert_clean(run_cli(argv))


@pytest.mark.slow
@FUZZ
@given(config_file(".toml"))
def test_fuzzed_toml_files(tmp_path_factory: pytest.TempPathFactory, case: Any) -> None:
    assert_clean(file_outcome(tmp_path_factory.getbasetemp(), ".toml", case))


@pytest.mark.slow
@FUZZ
@given(config_file(".yaml"))
def test_fuzzed_yaml_files(tmp_path_factory: pytest.TempPathFactory, case: Any) -> None:
    assert_clean(file_outcome(tmp_path_factory.getbasetemp(), ".yaml", case))


@pytest.mark.slow
@FUZZ
@given(grid_args())
def test_fuzzed_grids(argv: list[str]) -> None:
    assert_clean(run_cli(argv))


@pytest.mark.slow
@FUZZ
@given(argv_lists())
def test_fuzzed_argument_lists(argv: list[str]) -> None:
    assert_clean(run_cli(argv))


@pytest.mark.slow
@FUZZ
@given(api_calls())
def test_fuzzed_api_overrides(call: tuple[str, dict[str, Any]]) -> None:
    assert not api_outcome(*call).startswith("bug")


# ---------------------------------------------------------------- the rules, case by case


def _config(argv: list[str]) -> dict[str, Any]:
    """The JSON config ``featavg show-config ARGV`` prints (it must exit 0)."""
    outcome = run_cli(["show-config", *argv])
    assert outcome.code == 0, outcome.err
    return json.loads(outcome.out)


def _refusal(argv: list[str]) -> str:
    """The one error line of ``featavg ARGV`` (it must exit 2)."""
    outcome = run_cli(argv)
    assert problems(outcome) == [] and outcome.code == 2, (outcome.code, outcome.err)
    return outcome.err.strip()


@pytest.mark.parametrize(
    "text, value",
    [
        ("3", 3),
        ("1e-3", 0.001),
        ("TRUE", True),
        ("null", None),
        ("NULL", None),
        ("none", "none"),
        ("None", "None"),
        ("inf", math.inf),
        ("-Infinity", -math.inf),
        ("[0, 1]", [0, 1]),
        ("[0, -INF]", [0, -math.inf]),
        ("[info]", "[info]"),
        ('"7"', "7"),
        ("abc", "abc"),
        ("", ""),
    ],
)
def test_parse_value(text: str, value: Any) -> None:
    assert parse_value(text) == value
    assert math.isnan(parse_value("NaN"))


@pytest.mark.parametrize("text", ["9" * 5000, "[" * 40 + "]" * 40, "[" * 5000])
def test_parse_value_refuses_what_cannot_be_a_value(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_value(text)
    assert len(str(err.value)) < 200


def test_none_is_a_choice_where_a_field_names_it_and_null_is_none() -> None:
    """The leftover of `--set x=none` parsing to null: "none" stays the choice "none" of
    a Literal field, and is None for an optional field without such a choice."""
    robust = _config(["synthetic-robustness", "--set", "attack.random_start=none"])
    assert robust["attack"]["random_start"] == "none"
    adv = _config(["synthetic-adversarial", "--set", "pgd_random_start=none"])
    assert adv["pgd_random_start"] == "none"
    assert "pgd_random_start" in _refusal(
        ["show-config", "synthetic-adversarial", "--set", "pgd_random_start=null"]
    )
    for word in ("none", "None", "null"):
        cfg = _config(
            ["synthetic-robustness", "--set", f"n_attack={word}", "--set", f"data.positive={word}"]
        )
        assert cfg["n_attack"] is None and cfg["data"]["positive"] is None
    assert featavg.show_config("synthetic-robustness", n_attack="none")["n_attack"] is None
    assert (
        featavg.show_config("synthetic-robustness", attack__random_start="none")["attack"][
            "random_start"
        ]
        == "none"
    )


def test_none_rule_in_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("n_attack: none\nattack:\n  random_start: none\n")
    cfg = _config(["synthetic-robustness", "--config", str(path)])
    assert cfg["n_attack"] is None and cfg["attack"]["random_start"] == "none"


@pytest.mark.parametrize(
    "item, field",
    [
        ("data.d=true", "data.d"),
        ("train.lr=false", "train.lr"),
        ("data.positive=[0,true]", "data.positive[1]"),
        ("train.lr=inf", "train.lr"),
        ("train.lr=nan", "train.lr"),
        ("net.init_std=-Infinity", "net.init_std"),
        ("attack.radii=[0,NaN]", "attack.radii[1]"),
        ("attack.radii=[0,1e999]", "attack.radii[1]"),
        ("data.d=100000000000000000000", "data.d"),
        ("attack.radii=[]", "attack.radii"),
        ("attack.radii=[2,1]", "attack.radii"),
        ("attack.radii=[1,1]", "attack.radii"),
        ("attack.radii=[-1,1]", "attack.radii"),
        ("n_attack=2000", "n_attack"),
        ("data.n_test=0", "data.n_test"),
    ],
)
def test_wrong_types_non_finite_and_inconsistent_values_name_their_field(
    item: str, field: str
) -> None:
    line = _refusal(["show-config", "synthetic-robustness", "--set", item])
    assert line.startswith(f"featavg: error: {field}")


@pytest.mark.parametrize(
    "experiment, item, field",
    [
        ("synthetic-ablations", "lrs=[0.01,-1]", "lrs"),
        ("synthetic-ablations", "init_stds=[0]", "init_stds"),
        ("synthetic-ablations", "ns=[0]", "ns"),
        ("synthetic-ablations", "lrs=[0.01,0.010000001]", "lrs"),  # one label "lr 0.01"
        ("synthetic-ablations", "n_lrs=[[10,0.1],[10,0.1]]", "n_lrs"),
        ("synthetic-scaling", "ks=[4]", "ks"),
        ("synthetic-scaling", "ks=[4,2]", "ks"),
        ("synthetic-scaling", "radii_rel=[]", "radii_rel"),
        ("synthetic-adversarial", "eps=[]", "eps"),
        ("synthetic-adversarial", "eps=[0,0]", "eps"),
        ("synthetic-dynamics", "radii=[0,inf]", "radii[1]"),
        ("synthetic-dynamics", "n_attack=5000", "n_attack"),
    ],
)
def test_list_fields_empty_duplicate_or_out_of_range(
    experiment: str, item: str, field: str
) -> None:
    line = _refusal(["show-config", experiment, "--set", item])
    assert line.startswith(f"featavg: error: {field}")


TWINS = [("lrs", "train.lr"), ("init_stds", "net.init_std"), ("ns", "data.n_train")]


@pytest.mark.slow
@settings(FUZZ, max_examples=30)
@given(st.one_of(INTS, FLOATS, st.booleans(), st.sampled_from(["x", "none", "null"])))
def test_list_fields_are_as_strict_as_their_scalar_twins(value: Any) -> None:
    """synthetic-ablations' lists accept a value exactly when the field they vary does."""
    text = render(value)
    for listed, scalar in TWINS:
        as_list = run_cli(["show-config", "synthetic-ablations", "--set", f"{listed}=[{text}]"])
        alone = run_cli(["show-config", "synthetic-ablations", "--set", f"{scalar}={text}"])
        assert problems(as_list) == problems(alone) == []
        assert as_list.code == alone.code, (listed, scalar, text, as_list.err, alone.err)


def test_error_lines_are_short_printable_and_never_echo_a_huge_input() -> None:
    line = error_line("a\nb\x1b[31m" + "x" * 10_000)
    assert len(line) <= MAX_MESSAGE and line.isprintable() and "\n" not in line
    for argv in (
        ["show-config", "synthetic-robustness", "--set", "data.sampling=" + "y" * 100_000],
        ["show-config", "synthetic-robustness", "--set", "k" * 100_000 + "=1"],
        ["show-config", "synthetic-robustness", "--set", "evil\n\x1b[2J=1"],
        ["show-config", "x" * 100_000],
        ["sweep", "synthetic-robustness", "--grid", "train.lr=" + "1," * 20_000 + "z"],
    ):
        line = _refusal(argv)
        assert len(line) <= MAX_MESSAGE and "yyyyyyyyyy" * 20 not in line


@pytest.mark.parametrize(
    "argv",
    [["run"], ["nope"], ["show-config"], ["show-config", "synthetic-robustness", "--seeds", "x"],
     ["sweep", "synthetic-robustness"], ["show-config", "synthetic-robustness", "--bogus"]],
)  # fmt: skip
def test_usage_errors_are_one_line_too(argv: list[str]) -> None:
    assert "--help" in _refusal(argv)


@pytest.fixture
def odd_paths(tmp_path: Path) -> dict[str, str]:
    """Config paths that are not regular UTF-8 files of sane size."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    (tmp_path / "dir.toml").mkdir()
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(1 << 31)  # sparse: never read
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    (tmp_path / "latin1.yaml").write_bytes(b"seed: \xe9\n")
    (tmp_path / "config.json").write_text("{}")
    return {
        "fifo": str(fifo),
        "directory": str(tmp_path / "dir.toml"),
        "2 GiB": str(big),
        "link to /dev/zero": str(tmp_path / "zero.yaml"),
        "latin-1": str(tmp_path / "latin1.yaml"),
        "json": str(tmp_path / "config.json"),
        "/dev/zero": "/dev/zero",
        "/dev/null": "/dev/null",
        "missing": str(tmp_path / "missing.toml"),
        "empty name": "",
        "NUL byte": "a\x00b.toml",
        "name too long": "x" * 300 + ".toml",
    }


def test_config_paths_that_are_fifos_devices_or_worse(odd_paths: dict[str, str]) -> None:
    expected = {
        "fifo": "not a regular file",
        "directory": "not a regular file",
        "2 GiB": "bytes",
        "link to /dev/zero": "not a regular file",
        "latin-1": "not UTF-8",
        "json": ".toml, .yaml or .yml",
        "/dev/zero": "not a regular file",
        "/dev/null": "not a regular file",
        "missing": "not found",
        "empty name": "path",
        "NUL byte": "unreadable",
        "name too long": "unreadable",
    }
    for kind, path in odd_paths.items():
        start = time.perf_counter()
        line = _refusal(["show-config", "synthetic-robustness", "--config", path])
        assert expected[kind] in line, (kind, line)
        assert time.perf_counter() - start < 5, kind


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: !!python/object/apply:os.system ['true']\n", "could not determine a constructor"),
        ("seeds: 1\nseeds: 2\n", "line 2: key 'seeds' given twice"),
        ("data:\n  d: 5\n  d: 6\n", "key 'd' given twice"),
        (BILLION_LAUGHS, "more than 10000 values in all"),
        ("a: &x [*x]\n", "nested deeper"),
        ("a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n", "more than 100 YAML aliases"),
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", "nested deeper"),
        ("- 1\n", "top level must be a table"),
        ("false\n", "top level must be a table"),
        ("seed: 2020-01-01\n", "got a date"),
        ("1: 2\n", "keys must be strings"),
    ],
)
def test_hostile_yaml_documents(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    start = time.perf_counter()
    assert expected in _refusal(["show-config", "synthetic-robustness", "--config", str(path)])
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    "text", ["seeds = 1\nseeds = 2\n", "[data]\nd = 5\n[data]\nk = 2\n", "train.lr = nan\n"]
)
def test_hostile_toml_documents(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    _refusal(["show-config", "synthetic-robustness", "--config", str(path)])


def test_a_yaml_merge_key_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "base: &b {d: 60, k: 4}\n" if False else "data:\n  <<: {d: 60, k: 4}\n  d: 80\n"
    )
    assert _config(["synthetic-robustness", "--config", str(path)])["data"]["d"] == 80


def test_a_grid_of_two_values_giving_one_config_is_refused() -> None:
    from featavg.sweep.plan import plan_sweep

    for grid in ({"train.lr": [1, 1.0]}, {"n_attack": ["none", None]}):
        with pytest.raises(ConfigError, match="the same config"):
            plan_sweep("synthetic-robustness", grid)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"seed": b"x"}, "seed"),
        ({"seed": {1, 2}}, "seed"),
        ({"data": {1: 2}}, "keys must be strings"),
        ({"train": {"lr": 1 + 1j}}, "train.lr"),
    ],
)
def test_api_refuses_values_that_are_not_json(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        featavg.show_config("synthetic-robustness", **overrides)


def test_api_refuses_a_list_that_contains_itself() -> None:
    loop: list[Any] = [1.0]
    loop.append(loop)
    with pytest.raises(ConfigError, match="nested deeper"):
        featavg.show_config("synthetic-robustness", attack={"radii": loop})


@pytest.mark.slow
def test_a_tiny_run_with_the_none_choice_runs(tmp_path: Path) -> None:
    """featavg.run end to end on a tiny synthetic config, with random_start "none" given
    as ``--set`` would give it (the word, not null)."""
    tiny = EXPERIMENTS["synthetic-robustness"].tiny
    out = featavg.run(
        "synthetic-robustness",
        out=tmp_path / "run",
        device="cpu",
        **{**tiny, "attack": {**tiny["attack"], "random_start": "none"}},
    )
    assert out.summary["config"]["attack"]["random_start"] == "none"
