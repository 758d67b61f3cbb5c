"""``featavg show-config --explain / --reproduce``: what every config field means, and what
``featavg reproduce`` runs.

Everything here is read off the experiment's pydantic config: each field's description
(``Field(description=...)``), its type, its range (``gt``/``ge``/``lt``/``le`` and length
constraints) and its choices (``Literal``). Cross-field rules (e.g. k <= d) live in the
models' validators and are checked when a config is built. Nothing here imports torch.
"""

from __future__ import annotations

import json
import shlex
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from featavg.experiments.spec import REPRODUCE, Experiment

# annotated_types constraint attribute -> how it reads
_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_LENGTHS = {"min_length": "length >=", "max_length": "length <="}


@dataclass(frozen=True)
class FieldDoc:
    """One config leaf: dotted name, value (JSON text), type, allowed values, description."""

    name: str
    value: str
    type: str
    allowed: str
    description: str


def _type_name(tp: Any) -> str:
    """'int', 'float | None', 'tuple[int, ...]', "'balanced' | 'iid'"."""
    if tp is type(None):
        return "None"
    origin = get_origin(tp)
    if origin is Literal:  # its choices are listed as the allowed values
        return " | ".join(dict.fromkeys(type(a).__name__ for a in get_args(tp)))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is None and isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _choices(tp: Any) -> list[Any]:
    """The Literal values a type admits (inside an optional too); [] if it is not one."""
    if get_origin(tp) is Literal:
        return list(get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return [c for a in get_args(tp) for c in _choices(a)]
    return []


def allowed(info: FieldInfo) -> str:
    """'> 0', '>= 0, < 1', 'one of: balanced, iid' (and 'or None' for an optional field);
    '' when the type is the only constraint."""
    parts = []
    for meta in info.metadata:
        for attr, symbol in {**_BOUNDS, **_LENGTHS}.items():
            bound = getattr(meta, attr, None)
            if bound is not None:
                shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
                parts.append(f"{symbol} {shown}")
    choices = _choices(info.annotation)
    if choices:
        parts.append("one of: " + ", ".join(str(c) for c in choices))
    optional = type(None) in get_args(info.annotation)
    if parts and optional:
        parts.append("or None")
    return ", ".join(parts)


def field_docs(cfg: BaseModel, prefix: str = "") -> Iterator[FieldDoc | tuple[str, str]]:
    """Every leaf of ``cfg`` as a :class:`FieldDoc`, in declaration order; entering a nested
    section yields (dotted section name, first line of its docstring) first."""
    for name, info in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        dotted = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            doc = (type(value).__doc__ or "").strip().splitlines()
            yield dotted, doc[0] if doc else ""
            yield from field_docs(value, f"{dotted}.")
            continue
        yield FieldDoc(
            dotted,
            json.dumps(to_jsonable_python(value)),
            _type_name(info.annotation),
            allowed(info),
            info.description or "(no description)",
        )


def explain_lines(cfg: BaseModel) -> list[str]:
    """``name = value  (type; allowed)`` and the description under it, for every field."""
    lines = []
    for doc in field_docs(cfg):
        if isinstance(doc, tuple):
            section, text = doc
            lines.append(f"{'  ' * section.count('.')}[{section}] {text}".rstrip())
            continue
        indent = "  " * doc.name.count(".")  # a section's fields under its [header]
        kind = f"{doc.type}; {doc.allowed}" if doc.allowed else doc.type
        lines += [f"{indent}{doc.name} = {doc.value}  ({kind})", f"{indent}    {doc.description}"]
    return lines


def flatten(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested overrides to dotted keys: ``{"train": {"lr": 0.01}}`` -> ``{"train.lr": 0.01}``."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _set_value(value: Any) -> str:
    """A value as ``--set`` reads it back (strings bare, the rest as JSON)."""
    return value if isinstance(value, str) else json.dumps(to_jsonable_python(value))


def _set_args(sets: list[str]) -> list[str]:
    return [arg for item in sets for arg in ("--set", item)]


def reproduce_lines(exp: Experiment[Any], cfg: BaseModel | None) -> list[str]:
    """What ``featavg reproduce`` runs for ``exp``: its overrides, the equivalent
    ``featavg run`` command and the replicate seeds of the effective config ``cfg``."""
    if REPRODUCE not in exp.presets or cfg is None:
        return [f"featavg reproduce does not run {exp.name} (no reproduce preset)"]
    sets = [f"{k}={_set_value(v)}" for k, v in flatten(exp.preset(REPRODUCE)).items()]
    lines = [
        f"featavg reproduce runs {exp.name} with: {', '.join(sets) or 'the defaults'}",
        "  the same as: " + shlex.join(["featavg", "run", exp.name, *_set_args(sets)]),
    ]
    seeds, seed = getattr(cfg, "seeds", None), getattr(cfg, "seed", 0)
    if isinstance(seeds, int) and isinstance(seed, int):
        which = f"seeds {seed} .. {seed + seeds - 1}" if seeds > 1 else f"seed {seed}"
        lines.append(f"  seeds: {seeds} ({which})")
    return lines
