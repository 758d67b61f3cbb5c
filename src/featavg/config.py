"""Typed experiment configs: overrides from the command line or a file, one-line errors.

Every experiment has one frozen pydantic model; ``--set a.b=value`` and ``--config FILE``
(TOML or YAML, safe loaders) are merged onto its defaults and validated. A wrong key, type or
range raises :class:`ConfigError` whose message is one line naming the field and what is
allowed; the CLI turns it into exit code 2. :func:`nest` turns dotted keys into the nested
dicts all of this works on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A user-facing configuration error (one line, names the field)."""


def parse_value(text: str) -> Any:
    """'3' -> 3, '1e-3' -> 0.001, 'true' -> True, 'none' -> None, '[0,1]' -> [0, 1];
    anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def nest(flat: Mapping[str, Any], sep: str = ".") -> dict[str, Any]:
    """Dotted keys to nested dicts: ``{"train.lr": 0.01, "seeds": 2}`` ->
    ``{"train": {"lr": 0.01}, "seeds": 2}`` (``sep="__"`` for keyword arguments).

    The one converter behind ``--set``, the API's keyword overrides and sweep grid cells.
    Dict values merge (``{"train": {"lr": 0.01}, "train.steps": 5}`` sets both); a later
    plain value replaces an earlier one; a key that is both a value and a section raises
    :class:`ConfigError`."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(sep)
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part} is both a value and a section")
        old = node.get(leaf)
        if isinstance(old, dict) and isinstance(value, dict):
            node[leaf] = deep_merge(old, value)
        elif isinstance(old, dict):
            raise ConfigError(f"{key}: {leaf} is both a value and a section")
        else:
            node[leaf] = value
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """['train.lr=0.01', 'seeds=4'] -> {'train': {'lr': 0.01}, 'seeds': 4}."""
    flat: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=0.01")
        flat.pop(key.strip(), None)  # a repeated key counts where it was last given
        flat[key.strip()] = parse_value(value)
    try:
        return nest(flat)
    except ConfigError as err:
        raise ConfigError(f"--set {err}") from None


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (.toml) or YAML (.yaml/.yml) config file with a safe loader."""
    import tomllib  # lazy: only config files need the parsers

    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config: file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"--config: {path}: unreadable ({type(err).__name__})") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"--config: {path.name}: use a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"--config: {path}: {str(err).splitlines()[0]}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path}: the top level must be a table/mapping")
    return data


def _describe(err: ErrorDetails) -> str:
    field = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{field}: unknown key"
    if err["type"] == "value_error":  # our own validators already name the field(s)
        parent = ".".join(str(p) for p in err["loc"])
        return f"{parent}.{msg}" if parent else msg
    return f"{field}: {msg} (got {err.get('input')!r})"


def build_config(
    cls: type[M], overrides: dict[str, Any] | None = None, file: str | Path | None = None
) -> M:
    """Defaults of ``cls`` <- file <- overrides, validated; raises :class:`ConfigError`."""
    # start from the defaults of the model itself, so that overriding one field of a nested
    # section (train.steps) keeps that section's experiment-specific defaults (record_every)
    data: dict[str, Any] = cls().model_dump(mode="json")
    if file is not None:
        data = deep_merge(data, load_config_file(file))
    if overrides:
        data = deep_merge(data, overrides)
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        allowed = _allowed_keys(cls, first["loc"]) if first["type"] == "extra_forbidden" else ""
        raise ConfigError(_describe(first) + allowed) from None


def _allowed_keys(cls: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """'; allowed: a, b, c' for an unknown key at ``loc``."""
    model: Any = cls
    for part in loc[:-1]:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        model = field.annotation if field is not None else None
    if model is None or not hasattr(model, "model_fields"):
        return ""
    return "; allowed: " + ", ".join(model.model_fields)
