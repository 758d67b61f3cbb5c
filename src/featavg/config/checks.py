"""What every config must be before and after pydantic validates it (see :mod:`featavg.config`).

A config is JSON-shaped data: tables with string keys, lists, strings, numbers, booleans and
null. :func:`check_input` enforces that on the raw merged input (defaults <- file <- overrides)
and bounds it, so that no input can make validation slow or deep: at most :data:`MAX_NODES`
values (a YAML alias bomb expands past it and is refused before anything walks it in full),
:data:`MAX_DEPTH` levels, :data:`MAX_STRING` characters per string. It also refuses what
pydantic's lax mode would quietly convert: ``true`` for ``d`` (an int) would become 1.

:func:`check_validated` then refuses non-finite floats and integers beyond 64 bits anywhere in
a validated config (inputs like the string "inf" only become floats inside pydantic), and
:func:`none_means_null` applies the ``none`` rule of ``--set`` (see :mod:`featavg.config`).
"""

from __future__ import annotations

import math
import numbers
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from featavg.config.text import MAX_DEPTH, ConfigError, clip, shown

MAX_NODES = 10_000  # a config has tens of values; a long radius grid a few hundred
MAX_STRING = 4096  # PATH_MAX: the longest string any field (a path) can sensibly hold

_SEQUENCES = (tuple, list, set, frozenset)


def _strip(tp: Any) -> Any:
    """``Annotated[X, ...]`` -> ``X``."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _options(tp: Any) -> list[Any]:
    """The members of a union (each stripped), or ``[tp]``."""
    tp = _strip(tp)
    if get_origin(tp) in (Union, types.UnionType):
        return [o for a in get_args(tp) for o in _options(a)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _admits_bool(tp: Any) -> bool:
    """Whether a field of type ``tp`` may hold a boolean."""
    for option in _options(tp):
        if option in (bool, Any, object):
            return True
        if get_origin(option) is Literal and any(isinstance(a, bool) for a in get_args(option)):
            return True
    return False


def _expected(tp: Any) -> str:
    """'int', 'float or None', "one of 'a', 'b'": what a field of type ``tp`` takes."""
    names = []
    for option in _options(tp):
        if option is type(None):
            names.append("null")
        elif get_origin(option) is Literal:
            names.append("one of " + ", ".join(repr(a) for a in get_args(option)))
        elif _is_model(option):
            names.append("a table")
        elif get_origin(option) in _SEQUENCES or option in _SEQUENCES:
            names.append("a list")
        else:
            names.append(getattr(option, "__name__", str(option)))
    return " or ".join(names)


def _fields(tp: Any) -> dict[str, Any] | None:
    """{name: annotation} of the model among ``tp``'s options (None when there is none)."""
    for option in _options(tp):
        if _is_model(option):
            return {name: f.annotation for name, f in option.model_fields.items()}
    return None


def _item_type(tp: Any, index: int) -> Any:
    """The type of item ``index`` of a list held by a field of type ``tp`` (None: unknown)."""
    found = [o for o in _options(tp) if get_origin(o) in _SEQUENCES]
    if len(found) != 1:
        return None
    args = get_args(found[0])
    if get_origin(found[0]) is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return args[index] if index < len(args) else None
    return args[0] if args else None


def _join(where: str, key: str) -> str:
    return f"{where}.{clip(key, 40)}" if where else clip(key, 40)


def check_input(cls: type[BaseModel] | None, data: Any, where: str = "") -> None:
    """Refuse raw config ``data`` (for model ``cls``; None: shape only) that is not plain,
    bounded JSON-shaped data, or that holds a boolean where the field takes none. Raises
    :class:`ConfigError` naming the field (``where`` prefixes it)."""
    budget = [MAX_NODES]
    _walk(data, cls, where, 0, budget)


def _walk(value: Any, tp: Any, where: str, depth: int, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:  # counted per visit, so shared (aliased) values count every time
        raise ConfigError(
            f"config: more than {MAX_NODES} values in all (lists included), the most a config "
            "may hold"
        )
    field = where or "config"
    if isinstance(value, bool):
        if tp is not None and not _admits_bool(tp):
            raise ConfigError(
                f"{field}: expected {_expected(tp)}, not a boolean (got {str(value).lower()})"
            )
    elif isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            raise ConfigError(f"{field}: nested deeper than {MAX_DEPTH} levels")
        fields = _fields(tp) if tp is not None else None
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{field}: key {shown(key)}: keys must be strings")
            _walk(item, fields.get(key) if fields else None, _join(where, key), depth + 1, budget)
    elif isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            raise ConfigError(f"{field}: nested deeper than {MAX_DEPTH} levels")
        for i, item in enumerate(value):
            item_tp = _item_type(tp, i) if tp is not None else None
            _walk(item, item_tp, f"{field}[{i}]", depth + 1, budget)
    else:
        _check_leaf(value, field)


def _check_leaf(value: Any, field: str) -> None:
    """A scalar: a finite float, a 64-bit integer, a string of bounded length, or null."""
    kind = type(value)  # exact types first: the ABC checks below are slow
    if kind is str or isinstance(value, str):
        if len(value) > MAX_STRING:
            raise ConfigError(f"{field}: a string of {len(value)} characters; at most {MAX_STRING}")
    elif kind is int or isinstance(value, numbers.Integral):
        if int(value).bit_length() > 63:
            raise ConfigError(f"{field}: must fit in 64 bits (got {shown(value, 30)})")
    elif kind is float or isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise ConfigError(f"{field}: must be a finite number (got {value})")
    elif value is not None:
        raise ConfigError(
            f"{field}: expected a number, string, list or table, got a {kind.__name__}"
        )


def _is_none_word(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == "none"


def _none_is_a_choice(tp: Any) -> bool:
    return any(
        get_origin(o) is Literal and any(_is_none_word(a) for a in get_args(o))
        for o in _options(tp)
    )


def none_means_null(cls: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` where the string "none" (any case) of an optional field becomes
    None, unless "none" is one of that field's named choices (then it stays that choice)."""
    fields = _fields(cls) or {}
    out = dict(data)
    for key, value in data.items():
        tp = fields.get(key)
        if tp is None:
            continue
        if isinstance(value, dict) and _fields(tp):
            sub = next(o for o in _options(tp) if _is_model(o))
            out[key] = none_means_null(sub, value)
        elif _is_none_word(value) and type(None) in _options(tp) and not _none_is_a_choice(tp):
            out[key] = None
    return out


# every float of a config reaches a float32 tensor somewhere (a learning rate, a step size,
# a radius): one beyond float32's range overflows to inf there, silently (a step of inf
# gave robust accuracy 0 at every radius, clean included). Values that underflow are left
# to the runs, which name what they do (an init that stalls training, degenerate data).
FLOAT32_MAX = 3.4028234663852886e38


def check_validated(cfg: BaseModel) -> None:
    """Refuse a validated config holding a non-finite float, a float beyond float32's range
    (:data:`FLOAT32_MAX`) or an integer beyond 64 bits (e.g. from the string "inf", which
    pydantic converts). Raises :class:`ConfigError` naming the field."""
    _walk_numbers(cfg.model_dump(), "")


def _walk_numbers(value: Any, where: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where or 'config'}: must be a finite number (got {value})")
    if isinstance(value, float) and abs(value) > FLOAT32_MAX:
        raise ConfigError(
            f"{where or 'config'}: must lie within float32's range, |x| <= 3.4e38 (got {value:g})"
        )
    if isinstance(value, int) and value.bit_length() > 63:
        raise ConfigError(f"{where or 'config'}: must fit in 64 bits (got {shown(value, 30)})")
    if isinstance(value, dict):
        for key, item in value.items():
            _walk_numbers(item, _join(where, str(key)))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _walk_numbers(item, f"{where}[{i}]")


def check_list(
    name: str,
    values: Sequence[float] | None,
    *,
    low: float | None = None,
    low_open: bool = False,
    high: float | None = None,
    min_len: int = 0,
    increasing: bool = False,
) -> None:
    """A list field as strict as its scalar twin, for model validators: every value
    >= ``low`` (> when ``low_open``) and < ``high``; at least ``min_len`` of them; strictly
    increasing when asked (a radius grid); always distinct, also as ``f"{v:g}"``, the label
    runs name a value by. Raises ValueError("NAME: ...") (the ConfigError convention of
    model validators)."""
    if values is None:
        return
    if len(values) < min_len:
        raise ValueError(f"{name}: give at least {min_len} value(s), got {len(values)}")
    for v in values:
        if low is not None and (v <= low if low_open else v < low):
            raise ValueError(
                f"{name}: every value must be {'>' if low_open else '>='} {low:g}, got {v:g}"
            )
        if high is not None and v >= high:
            raise ValueError(f"{name}: every value must be < {high:g}, got {v:g}")
    if increasing and any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"{name}: must be strictly increasing, got {shown(list(values))}")
    labels = [f"{v:g}" for v in values]
    if len(set(labels)) != len(labels):
        raise ValueError(
            f"{name}: values must be distinct (at 6 significant digits), got {shown(list(values))}"
        )
