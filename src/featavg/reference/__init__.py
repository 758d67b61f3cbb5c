"""The paper's published values, each with its source: ``paper_values.toml``.

One data file holds, per figure of the paper (Fig. 2a/b, Fig. 3 left, the ablations, ...),
the settings the figure was made with, the numbers it publishes and its qualitative claims,
every entry with the source that states it (the paper's text, or a summary of the paper or
of the authors' code that we worked from, named as such). A value the paper gives only as
a plot is not in the file: the entry says so in its ``statement``.

:func:`load_references` reads and validates the file into :class:`PaperFigure` objects
(cached); :func:`paper_figure` returns one by id. Experiments name the figures they
reproduce in ``Experiment.paper_refs``; the report shows them beside the run's numbers
(:mod:`featavg.report.paper`), and a plot can read the same values from here.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from featavg.config import ConfigError

__all__ = [
    "ENTRY_KINDS",
    "SOURCE_KINDS",
    "PaperEntry",
    "PaperFigure",
    "Source",
    "load_references",
    "paper_figure",
]

ENTRY_KINDS = ("setting", "result", "statement")
SOURCE_KINDS = ("paper", "authors' results", "project spec")

_SOURCE_FIELDS = {"text", "kind"}
_FIGURE_FIELDS = {"title", "source", "where", "differences", "entries"}
_ENTRY_FIELDS = {
    "id", "label", "kind", "value", "approx", "statement", "config", "ours", "tol",
    "source", "where", "note",
}  # fmt: skip


@dataclass(frozen=True)
class Source:
    """Where entries come from: ``text`` names it (e.g. 'arXiv 2410.10322 v2, abstract');
    ``kind`` is one of :data:`SOURCE_KINDS`."""

    key: str
    text: str
    kind: str


@dataclass(frozen=True)
class PaperEntry:
    """One published fact of a figure.

    kind "setting": ``value`` is how the figure was made and ``config`` the dotted field of a
    run's config to hold against it. kind "result": ``value`` is a published number (None:
    the paper gives none that we could read; ``statement`` says what it shows instead), ``tol``
    the tolerance of a comparison with the single summary key in ``ours``. kind "statement":
    a qualitative claim. ``ours``: summary keys shown beside it; ``note``: why a run may
    differ, as we understand it.
    """

    id: str
    label: str
    kind: str
    source: Source
    where: str
    value: Any = None
    approx: bool = False
    statement: str = ""
    config: str = ""
    ours: tuple[str, ...] = ()
    tol: float | None = None
    note: str = ""

    @property
    def citation(self) -> str:
        """The source and the place in it, e.g. 'arXiv 2410.10322 v2 ..., sentence 4'."""
        return f"{self.source.text}, {self.where}"


@dataclass(frozen=True)
class PaperFigure:
    """A figure of the paper (or a group of panels): its entries and the known differences
    between it and our runs, with what we think their reasons are."""

    id: str
    title: str
    source: Source
    where: str
    entries: tuple[PaperEntry, ...]
    differences: tuple[str, ...] = ()

    @property
    def citation(self) -> str:
        return f"{self.source.text}, {self.where}"


DATA_FILE = "paper_values.toml"


def _fail(path: str, where: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {message}")


def _text(raw: dict[str, Any], key: str, path: str, where: str, required: bool = True) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise _fail(path, f"{where}.{key}", "a non-empty string is required")
    return value


def _unknown(raw: dict[str, Any], allowed: set[str], path: str, where: str) -> None:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise _fail(path, where, f"unknown field {extra[0]!r} (allowed: {sorted(allowed)})")


def _source(raw: dict[str, Any], sources: dict[str, Source], path: str, where: str) -> Source:
    key = _text(raw, "source", path, where)
    if key not in sources:
        raise _fail(path, f"{where}.source", f"{key!r} is not one of {sorted(sources)}")
    return sources[key]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _entry(raw: Any, sources: dict[str, Source], path: str, where: str) -> PaperEntry:
    if not isinstance(raw, dict):
        raise _fail(path, where, "expected a table")
    _unknown(raw, _ENTRY_FIELDS, path, where)
    kind = _text(raw, "kind", path, where)
    if kind not in ENTRY_KINDS:
        raise _fail(path, f"{where}.kind", f"{kind!r} is not one of {list(ENTRY_KINDS)}")
    value = raw.get("value")
    statement = _text(raw, "statement", path, where, required=False)
    if kind == "setting" and value is None:
        raise _fail(path, f"{where}.value", "a setting needs its value")
    if kind != "setting" and value is None and not statement.strip():
        raise _fail(path, f"{where}.statement", "say what the paper states (or shows)")
    ours = raw.get("ours", [])
    if not isinstance(ours, list) or not all(isinstance(k, str) and k for k in ours):
        raise _fail(path, f"{where}.ours", "a list of summary keys is required")
    tol = raw.get("tol")
    if tol is not None and (not _is_number(tol) or tol < 0 or not _is_number(value)):
        raise _fail(path, f"{where}.tol", "a tolerance >= 0 beside a numeric value")
    if tol is not None and len(ours) != 1:
        raise _fail(path, f"{where}.ours", "a tolerance compares exactly one summary key")
    config = _text(raw, "config", path, where, required=False)
    if config and kind != "setting":
        raise _fail(path, f"{where}.config", "only settings are compared with the config")
    approx = raw.get("approx", False)
    if not isinstance(approx, bool):
        raise _fail(path, f"{where}.approx", "true or false")
    return PaperEntry(
        id=_text(raw, "id", path, where),
        label=_text(raw, "label", path, where),
        kind=kind,
        source=_source(raw, sources, path, where),
        where=_text(raw, "where", path, where),
        value=value,
        approx=approx,
        statement=statement,
        config=config,
        ours=tuple(ours),
        tol=float(tol) if tol is not None else None,
        note=_text(raw, "note", path, where, required=False),
    )


def _figure(fid: str, raw: Any, sources: dict[str, Source], path: str) -> PaperFigure:
    where = f"figures.{fid}"
    if not isinstance(raw, dict):
        raise _fail(path, where, "expected a table")
    _unknown(raw, _FIGURE_FIELDS, path, where)
    differences = raw.get("differences", [])
    if not isinstance(differences, list) or not all(
        isinstance(d, str) and d.strip() for d in differences
    ):
        raise _fail(path, f"{where}.differences", "a list of non-empty strings is required")
    raw_entries = raw.get("entries", [])
    if not isinstance(raw_entries, list) or not raw_entries:
        raise _fail(path, f"{where}.entries", "at least one entry is required")
    entries = tuple(
        _entry(e, sources, path, f"{where}.entries[{i}]") for i, e in enumerate(raw_entries)
    )
    ids = [e.id for e in entries]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate is not None:
        raise _fail(path, f"{where}.entries", f"duplicate id {duplicate!r}")
    return PaperFigure(
        id=fid,
        title=_text(raw, "title", path, where),
        source=_source(raw, sources, path, where),
        where=_text(raw, "where", path, where),
        entries=entries,
        differences=tuple(differences),
    )


def parse_references(data: dict[str, Any], path: str = DATA_FILE) -> dict[str, PaperFigure]:
    """Validate the parsed data file into figures by id; a malformed entry is a one-line
    :class:`~featavg.config.ConfigError` naming the file and the field."""
    _unknown(data, {"sources", "figures"}, path, "top level")
    raw_sources = data.get("sources")
    if not isinstance(raw_sources, dict) or not raw_sources:
        raise _fail(path, "sources", "at least one source is required")
    sources = {}
    for key, raw in raw_sources.items():
        if not isinstance(raw, dict):
            raise _fail(path, f"sources.{key}", "expected a table")
        _unknown(raw, _SOURCE_FIELDS, path, f"sources.{key}")
        kind = _text(raw, "kind", path, f"sources.{key}")
        if kind not in SOURCE_KINDS:
            raise _fail(path, f"sources.{key}.kind", f"{kind!r} is not one of {SOURCE_KINDS}")
        sources[key] = Source(key, _text(raw, "text", path, f"sources.{key}"), kind)
    figures = data.get("figures")
    if not isinstance(figures, dict) or not figures:
        raise _fail(path, "figures", "at least one figure is required")
    return {fid: _figure(fid, raw, sources, path) for fid, raw in figures.items()}


@cache
def _load_packaged() -> dict[str, PaperFigure]:
    text = resources.files(__name__).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return parse_references(tomllib.loads(text))


def load_references(path: Path | None = None) -> dict[str, PaperFigure]:
    """The figures of the data file by id: the packaged ``paper_values.toml`` (cached) or
    the file at ``path``."""
    if path is None:
        return _load_packaged()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: unreadable ({err})") from None
    return parse_references(data, str(path))


def paper_figure(fid: str) -> PaperFigure:
    """One figure of the packaged data file; an unknown id is a ConfigError listing them."""
    figures = load_references()
    if fid not in figures:
        raise ConfigError(f"paper reference {fid!r}: not in {DATA_FILE} ({', '.join(figures)})")
    return figures[fid]
