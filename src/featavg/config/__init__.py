"""Typed experiment configs: overrides from the command line or a file, one-line errors.

Every experiment has one frozen pydantic model; ``--set a.b=value`` and ``--config FILE``
(TOML or YAML, read by :mod:`featavg.config.files`) are merged onto its defaults and
validated. A wrong key, type or range raises :class:`ConfigError` whose message is one short
line naming the field and what is allowed; the CLI turns it into exit code 2. :func:`nest`
turns dotted keys into the nested dicts all of this works on.

Before pydantic sees a config, :mod:`featavg.config.checks` bounds its shape (depth, size,
string length) and refuses what pydantic would silently coerce: a boolean where a number is
expected, a non-finite float, an integer beyond 64 bits, a non-JSON value such as a date.

``--set`` values (:func:`parse_value`) are JSON with a few spellings added: ``true`` /
``false`` in any case, ``nan`` / ``inf`` / ``-inf`` (refused later, by name), and ``null``
for None. ``none`` stays the string "none": it names a choice of several fields (e.g.
``attack.random_start=none``), and an optional field without such a choice reads it as None.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from featavg.config.text import (
    MAX_DEPTH,
    MAX_MESSAGE,
    ConfigError,
    clip,
    did_you_mean,
    error_line,
    shown,
)

M = TypeVar("M", bound=BaseModel)

_NON_FINITE = re.compile(r"[+-]?(nan|inf|infinity)", re.IGNORECASE)
_NON_FINITE_TOKEN = re.compile(r"(?<![\w.])([+-]?)(nan|infinity|inf)(?![\w.])", re.IGNORECASE)


def _json_constant(match: re.Match[str]) -> str:
    """'-inf' -> '-Infinity', 'nan' -> 'NaN': the spellings JSON parsing accepts."""
    sign, word = match.group(1), match.group(2).lower()
    return "NaN" if word == "nan" else f"{'-' if sign == '-' else ''}Infinity"


def parse_value(text: str) -> Any:
    """One ``--set`` / ``--grid`` value: '3' -> 3, '1e-3' -> 0.001, 'TRUE' -> True,
    'null' -> None, 'inf' -> inf, '[0,1]' -> [0, 1], '[0,inf]' -> [0, inf]; anything else
    stays a string, 'none' included (see the module docstring). Raises
    :class:`ConfigError` on a value nested deeper than :data:`MAX_DEPTH` or a number of
    thousands of digits."""
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered == "null":
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    if _NON_FINITE.fullmatch(stripped):
        return float(lowered.replace("infinity", "inf"))
    if '"' not in stripped:  # outside JSON strings, inf and nan read as in a scalar
        stripped = _NON_FINITE_TOKEN.sub(_json_constant, stripped)
    try:
        value = json.loads(stripped)
    except RecursionError:
        raise ConfigError(
            f"value {shown(text, 40)}: nested deeper than {MAX_DEPTH} levels"
        ) from None
    except json.JSONDecodeError:  # not JSON: a string
        return text
    except ValueError:  # an integer of thousands of digits (sys.get_int_max_str_digits)
        raise ConfigError(f"value {shown(text, 40)}: a number far too large") from None
    if _depth(value) > MAX_DEPTH:
        raise ConfigError(f"value {shown(text, 40)}: nested deeper than {MAX_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of lists and dicts in a parsed JSON value (0 for a scalar)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        if isinstance(node, dict):
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, level + 1) for v in node)
    return deepest


def nest(flat: Mapping[str, Any], sep: str = ".") -> dict[str, Any]:
    """Dotted keys to nested dicts: ``{"train.lr": 0.01, "seeds": 2}`` ->
    ``{"train": {"lr": 0.01}, "seeds": 2}`` (``sep="__"`` for keyword arguments).

    The one converter behind ``--set``, the API's keyword overrides and sweep grid cells.
    Dict values merge (``{"train": {"lr": 0.01}, "train.steps": 5}`` sets both); a later
    plain value replaces an earlier one; a key that is both a value and a section, or has
    more than :data:`MAX_DEPTH` parts, raises :class:`ConfigError`."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if not isinstance(key, str):
            raise ConfigError(f"key {shown(key)}: keys must be strings")
        *parents, leaf = key.split(sep)
        if len(parents) >= MAX_DEPTH:
            raise ConfigError(f"{clip(key, 60)}: more than {MAX_DEPTH} nested keys")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(
                    f"{clip(key, 60)}: {clip(part, 40)} is both a value and a section"
                )
        old = node.get(leaf)
        if isinstance(old, dict) and isinstance(value, dict):
            node[leaf] = deep_merge(old, value)
        elif isinstance(old, dict):
            raise ConfigError(f"{clip(key, 60)}: {clip(leaf, 40)} is both a value and a section")
        else:
            node[leaf] = value
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """['train.lr=0.01', 'seeds=4'] -> {'train': {'lr': 0.01}, 'seeds': 4}."""
    flat: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {shown(item)}: expected KEY=VALUE, e.g. train.lr=0.01")
        flat.pop(key.strip(), None)  # a repeated key counts where it was last given
        try:
            flat[key.strip()] = parse_value(value)
        except ConfigError as err:
            raise ConfigError(f"--set {clip(key.strip(), 60)}: {err}") from None
    try:
        return nest(flat)
    except ConfigError as err:
        raise ConfigError(f"--set {err}") from None


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (.toml) or YAML (.yaml/.yml) config file (see
    :func:`featavg.config.files.load_config_file`)."""
    from featavg.config.files import load_config_file as load

    return load(path)


def _location_part(part: str | int) -> str:
    """One part of an error's location: a key as it reads, quoted when it would not show
    (empty) or would read like another (surrounding spaces); an index as a number."""
    if isinstance(part, str) and part and part == part.strip():
        return clip(part, 40)
    return shown(part, 40)


def _describe(err: ErrorDetails) -> str:
    field = ".".join(_location_part(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{field}: unknown key"
    if err["type"] == "value_error":
        # a model validator names its field ("radii: ...") under the section's location; a
        # field validator's location is the field itself
        if re.match(r"[A-Za-z_][\w.\[\]]*: ", msg):
            return f"{field}.{msg}" if field else msg
        return f"{field}: {msg}" if field else msg
    return f"{field}: {msg} (got {shown(err.get('input'))})"


def build_config(
    cls: type[M], overrides: Mapping[str, Any] | None = None, file: str | Path | None = None
) -> M:
    """Defaults of ``cls`` <- file <- overrides, checked (:mod:`featavg.config.checks`) and
    validated; raises :class:`ConfigError` naming the first bad field."""
    from featavg.config.checks import check_input, check_validated, none_means_null

    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(
            f"overrides: expected a mapping of fields, got {type(overrides).__name__}"
        )
    # start from the defaults of the model itself, so that overriding one field of a nested
    # section (train.steps) keeps that section's experiment-specific defaults (record_every)
    data: dict[str, Any] = cls().model_dump(mode="json")
    if file is not None:
        data = deep_merge(data, load_config_file(file))
    if overrides:
        data = deep_merge(data, overrides)
    check_input(cls, data)
    data = none_means_null(cls, data)
    try:
        cfg = cls.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        allowed = _allowed_keys(cls, first["loc"]) if first["type"] == "extra_forbidden" else ""
        raise ConfigError(_describe(first) + allowed) from None
    except RecursionError:  # a validator walking something check_input let through
        raise ConfigError("config: nested too deeply") from None
    check_validated(cfg)
    return cfg


def _allowed_keys(cls: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """'; allowed: a, b, c' for an unknown key at ``loc``."""
    model: Any = cls
    for part in loc[:-1]:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        model = field.annotation if field is not None else None
    if model is None or not hasattr(model, "model_fields"):
        return ""
    hint = did_you_mean(loc[-1], model.model_fields)
    return f"{hint}; allowed: " + ", ".join(model.model_fields)


__all__ = [
    "MAX_DEPTH",
    "MAX_MESSAGE",
    "ConfigError",
    "build_config",
    "clip",
    "deep_merge",
    "did_you_mean",
    "error_line",
    "load_config_file",
    "nest",
    "parse_overrides",
    "parse_value",
    "shown",
]
