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
* ``alien``: a finished directory of another kind (a trained model where a run or a probe
  should go, a probe where a model should go: :func:`family`): never replaced, ``force``
  or not (``force`` means "recompute", never "replace something else");
* ``foreign``: anything the runner did not write (a sub-directory, a file that is not a
  result, a symbolic link, a FIFO or device among the files): never replaced, ``force`` or
  not, so a mistyped ``--out`` cannot delete a user's files. Hidden files (temporary files
  of an interrupted write) are ignored.
* ``unusable``: no run may be written there (a symbolic link, a file or device, a bad name,
  a read-only or full filesystem: :mod:`featavg.runs.paths`): refused before any compute,
  ``force`` or not.

Nothing here follows a symbolic link or reads a FIFO or device: a tampered directory is
classified, never trusted, and cannot hang or crash the check.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from featavg._version import __version__
from featavg.config import ConfigError
from featavg.runs import identity
from featavg.runs import paths as out_paths
from featavg.runs.files import is_plain_name, read_json_object, sha256_file
from featavg.runs.staging import MANIFEST

# suffixes of the files a run writes (besides those its manifest lists)
RESULT_SUFFIXES = frozenset({".json", ".csv", ".png", ".pdf", ".svg"})

Kind = Literal[
    "absent", "hit", "damaged", "other", "stale", "unfinished", "alien", "foreign", "unusable"
]

# what kind of directory a summary's "experiment" names (anything else: an experiment run)
FAMILIES = {"train": "trained model", "probe": "probe"}


def family(kind: object) -> str:
    """The family of a directory made by ``kind`` (its summary's ``experiment``): a
    "trained model" (``train``), a "probe", or an experiment "run" (any other name)."""
    return FAMILIES.get(kind, "run") if isinstance(kind, str) else "run"


@dataclass(frozen=True)
class RunState:
    """kind (see the module docstring), detail: what the directory holds, in words (for
    messages), summary: its summary.json when readable; foreign: the entries featavg did
    not write (a hit may have some: it is read, never replaced)."""

    kind: Kind
    detail: str
    summary: dict[str, Any] | None = None
    foreign: tuple[str, ...] = ()


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


def listed_files(manifest: dict[str, Any] | None) -> dict[str, str] | None:
    """{file name: sha256} of a manifest, or None unless it is exactly that: plain file
    names (a tampered manifest must not point outside the directory) and hex digests."""
    files = manifest.get("files") if manifest else None
    if not isinstance(files, dict):
        return None
    for name, digest in files.items():
        if not is_plain_name(name) or not isinstance(digest, str) or len(digest) != 64:
            return None
    return files


def manifest_problems(directory: Path, files: list[str], listed: dict[str, str]) -> list[str]:
    """What differs between the regular ``files`` of ``directory`` and its manifest
    ``listed``: missing, changed and stray files, an unlisted summary."""
    problems = [f"{f} missing" for f in listed if f not in files]
    problems += [
        f"{f} changed" for f in listed if f in files and sha256_file(directory / f) != listed[f]
    ]
    problems += [f"stray {f}" for f in files if f not in listed and f != MANIFEST]
    if "summary.json" not in listed:
        problems.append("summary.json unlisted")
    return [out_paths.shown(p) for p in problems]


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
        if listed is not None and read_json_object(directory / "config.json") == config:
            # the manifest and config of this very run: finished once, since damaged
            return RunState("damaged", f"this run with {what} (its manifest lists the files)")
        return RunState("unfinished", f"an unfinished run ({what})")
    name = summary.get("experiment")
    if name != experiment and family(name) != family(experiment):
        return RunState("alien", f"a featavg {family(name)} directory", summary)
    if name != experiment:
        return RunState("other", f"a run of {out_paths.shown(str(name))}", summary)
    if summary.get("config") != config:
        changed = diff_keys(config, summary.get("config"))
        return RunState("other", f"a {name} run with another config ({_names(changed)})", summary)
    prov = summary.get("provenance")
    prov = prov if isinstance(prov, dict) else {}
    made_by = (prov.get("featavg_version"), prov.get("source_fingerprint"))
    if made_by != (__version__, identity.source_fingerprint()):
        version, source = made_by
        return RunState(
            "stale",
            f"a {name} run made by other code (featavg {version}, source {source or 'unrecorded'};"
            f" this is {__version__}, source {identity.source_fingerprint()})",
            summary,
        )
    if listed is None:
        return RunState("damaged", f"a {name} run without a readable {MANIFEST}", summary)
    problems = manifest_problems(directory, files, listed)
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
    problem = out_paths.name_problem(directory) or out_paths.existing_problem(directory)
    if problem:
        return RunState("unusable", problem)
    state = _inspect(directory, experiment, config)
    if state.kind != "hit":  # a new run would be written: can it be, here?
        problem = out_paths.writable_problem(directory)
        if problem:
            return RunState("unusable", problem, state.summary, state.foreign)
    return state


def _entries(directory: Path) -> tuple[list[str], list[str]]:
    """(regular files, everything else as shown among foreign entries) in ``directory``,
    hidden regular files (temporary files) left out; no link is followed."""
    files: list[str] = []
    others: list[str] = []
    with os.scandir(directory) as scan:
        for entry in scan:
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISREG(mode):
                if not entry.name.startswith("."):
                    files.append(entry.name)
            elif stat.S_ISDIR(mode):
                others.append(f"{entry.name}/")
            else:
                others.append(f"{entry.name} ({out_paths.kind_of(mode)})")
    return sorted(files), sorted(others)


def _inspect(directory: Path, experiment: str, config: dict[str, Any]) -> RunState:
    """:func:`inspect_run` of nothing or of a real directory (name and type checked)."""
    if not os.path.lexists(directory):
        return RunState("absent", "nothing")
    files, others = _entries(directory)
    if not files and not others:
        return RunState("absent", "an empty directory")
    listed = listed_files(read_json_object(directory / MANIFEST))
    known = set(listed or ()) | {MANIFEST}
    foreign = others + [
        f for f in files if f not in known and Path(f).suffix not in RESULT_SUFFIXES
    ]
    summary = read_json_object(directory / "summary.json")
    state = _classify(directory, files, summary, listed, experiment, config)
    if foreign:
        shown = [out_paths.shown(f) for f in foreign]
        detail = f"files featavg did not write ({_names(shown)})"
        kind: Kind = "hit" if state.kind == "hit" else "foreign"
        return RunState(kind, detail, summary, tuple(foreign))
    return state


def check_replaceable(
    state: RunState, where: str, force: bool, remedy: str = "choose another directory"
) -> None:
    """Raise a one-line :class:`ConfigError` (``where``: e.g. ``--out DIR``) when a run may
    not replace what ``state`` describes: foreign files and a directory of another kind
    always, another experiment or config, other code or an unfinished run unless
    ``force``; a place no run can go (``unusable``) always. ``remedy``: what the user can
    do instead, naming a flag that exists for the command (e.g. "choose another --root")."""
    if state.kind == "unusable":
        raise ConfigError(f"{where}: {state.detail}; {remedy}")
    if state.kind == "alien":
        raise ConfigError(
            f"{where}: holds {state.detail}; --force recomputes, it never replaces a directory "
            f"of another kind: {remedy}"
        )
    if state.kind == "foreign" or state.foreign:
        raise ConfigError(f"{where}: holds {state.detail}; refusing to replace it, {remedy}")
    if state.kind in ("other", "stale", "unfinished") and not force:
        raise ConfigError(f"{where}: holds {state.detail}; pass --force to replace it")


def cached_summary(
    directory: Path, experiment: str, config: dict[str, Any]
) -> dict[str, Any] | None:
    """The finished run's summary if ``directory`` holds this very experiment and config,
    made by this code, with every file as its manifest lists it; else None."""
    state = inspect_run(Path(directory), experiment, config)
    return state.summary if state.kind == "hit" else None


def _is_regular(path: Path) -> bool:
    """Whether ``path`` is a regular file itself (not a link to one)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def verify_run(run_dir: str | Path) -> dict[str, str]:
    """The files of the run in ``run_dir`` as its ``manifest.json`` lists them ({name:
    sha256}), after checking that every listed file is there, a regular file and unchanged,
    that the summary is listed and that no unlisted result file (``.json``, ``.csv``,
    figures: another run's?) lies beside them; else a one-line :class:`ConfigError` saying
    what differs. Other files (a user's notes) are left alone and never read."""
    directory = Path(run_dir)
    shown = out_paths.shown(directory)
    listed = listed_files(read_json_object(directory / MANIFEST))
    if listed is None:
        raise ConfigError(
            f"run_dir: {shown} has no readable {MANIFEST} (not a whole featavg run); run it again"
        )
    files = [
        p.name
        for p in directory.iterdir()
        if not p.name.startswith(".")
        and _is_regular(p)
        and (p.name in listed or p.suffix in RESULT_SUFFIXES)
    ]
    problems = manifest_problems(directory, files, listed)
    if problems:
        raise ConfigError(
            f"run_dir: {shown} does not match its {MANIFEST} "
            f"({', '.join(problems[:3])}{' ...' if len(problems) > 3 else ''}); run it again"
        )
    return listed
