"""What a run directory holds, and whether a run may replace it.

:func:`inspect_run` classifies a directory against the run about to be made (experiment
``E``, config ``C``, this code):

* ``absent``: nothing there (or an empty directory): write freely;
* ``hit``: a finished run of ``E`` and ``C`` made by this code (same package version and
  source fingerprint), every file as ``manifest.json`` lists it and no stray result file;
* ``damaged``: such a run whose files do not match its manifest (a changed, missing or
  extra table, figure or config): recomputed in place, it is the same run;
* ``other`` (another experiment or config), ``stale`` (made by other code) and
  ``unfinished`` (result files without a readable summary): replaced only with ``force``;
* ``foreign``: anything the runner did not write (a sub-directory, a file that is not a
  result): never replaced, ``force`` or not, so a mistyped ``--out`` cannot delete a user's
  files. Hidden files (temporary files of an interrupted write) are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from featavg import __version__, store
from featavg.config import ConfigError

# suffixes of the files a run writes (besides those its manifest lists)
RESULT_SUFFIXES = frozenset({".json", ".csv", ".png", ".pdf", ".svg"})

Kind = Literal["absent", "hit", "damaged", "other", "stale", "unfinished", "foreign"]


@dataclass(frozen=True)
class RunState:
    """kind (see the module docstring), detail: what the directory holds, in words (for
    messages), summary: its summary.json when readable; foreign: the entries featavg did
    not write (a hit may have some: it is read, never replaced)."""

    kind: Kind
    detail: str
    summary: dict[str, Any] | None = None
    foreign: tuple[str, ...] = ()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted keys where two nested config dicts differ."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if a == b else [prefix or "(config)"]
    keys: list[str] = []
    for key in [*a, *(k for k in b if k not in a)]:
        keys += diff_keys(
            a.get(key), b.get(key), f"{prefix}{key}" if not prefix else f"{prefix}.{key}"
        )
    return keys


def _names(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _listed(manifest: dict[str, Any] | None) -> dict[str, str] | None:
    files = manifest.get("files") if manifest else None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        return None
    return files


def _classify(
    directory: Path,
    files: list[str],
    summary: dict[str, Any] | None,
    listed: dict[str, str] | None,
    experiment: str,
    config: dict[str, Any],
) -> RunState:
    """The state of a non-empty directory without foreign entries."""
    if summary is None:
        what = "an unreadable summary.json" if "summary.json" in files else "no summary.json"
        return RunState("unfinished", f"an unfinished run ({what})")
    name = summary.get("experiment")
    if name != experiment:
        return RunState("other", f"a run of {name}", summary)
    if summary.get("config") != config:
        changed = diff_keys(config, summary.get("config"))
        return RunState("other", f"a {name} run with another config ({_names(changed)})", summary)
    prov = summary.get("provenance")
    prov = prov if isinstance(prov, dict) else {}
    made_by = (prov.get("featavg_version"), prov.get("source_fingerprint"))
    if made_by != (__version__, store.source_fingerprint()):
        version, source = made_by
        return RunState(
            "stale",
            f"a {name} run made by other code (featavg {version}, source {source or 'unrecorded'};"
            f" this is {__version__}, source {store.source_fingerprint()})",
            summary,
        )
    if listed is None:
        return RunState("damaged", f"a {name} run without a readable {store.MANIFEST}", summary)
    problems = [f"{f} missing" for f in listed if f not in files]
    problems += [
        f"{f} changed"
        for f in listed
        if f in files and store.sha256_file(directory / f) != listed[f]
    ]
    problems += [f"stray {f}" for f in files if f not in listed and f not in (store.MANIFEST,)]
    if "summary.json" not in listed:
        problems.append("summary.json unlisted")
    if problems:
        return RunState(
            "damaged",
            f"a {name} run whose files do not match its manifest ({_names(problems)})",
            summary,
        )
    return RunState("hit", f"this very {name} run", summary)


def inspect_run(directory: Path, experiment: str, config: dict[str, Any]) -> RunState:
    """Classify ``directory`` against a run of ``experiment`` with ``config`` by this code."""
    directory = Path(directory)
    if not directory.exists():
        return RunState("absent", "nothing")
    if not directory.is_dir():
        return RunState("foreign", "a file")
    entries = [p for p in directory.iterdir() if not (p.name.startswith(".") and p.is_file())]
    if not entries:
        return RunState("absent", "an empty directory")
    listed = _listed(_read_json(directory / store.MANIFEST))
    known = set(listed or ()) | {store.MANIFEST}
    foreign = [
        f"{p.name}/" if p.is_dir() else p.name
        for p in entries
        if p.is_dir() or (p.name not in known and p.suffix not in RESULT_SUFFIXES)
    ]
    files = [p.name for p in entries if p.is_file()]
    summary = _read_json(directory / "summary.json")
    state = _classify(directory, files, summary, listed, experiment, config)
    if foreign:
        detail = f"files featavg did not write ({_names(foreign)})"
        kind: Kind = "hit" if state.kind == "hit" else "foreign"
        return RunState(kind, detail, summary, tuple(foreign))
    return state


def check_replaceable(state: RunState, where: str, force: bool) -> None:
    """Raise a one-line :class:`ConfigError` (``where``: e.g. ``--out DIR``) when a run may
    not replace what ``state`` describes: foreign files always, another experiment or
    config, other code or an unfinished run unless ``force``."""
    if state.kind == "foreign" or state.foreign:
        raise ConfigError(
            f"{where}: holds {state.detail}; refusing to replace it, choose another directory"
        )
    if state.kind in ("other", "stale", "unfinished") and not force:
        raise ConfigError(f"{where}: holds {state.detail}; pass --force to replace it")
