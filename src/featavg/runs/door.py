"""One door for every cached run: identity, inspect, refuse or replace, claim, compute,
stage, manifest, serve the hit.

Every cached thing featavg computes (an experiment run, a trained model, a probe, a sweep
cell) is a directory whose name carries the hash of its identity (:mod:`.identity`). A
caller describes each directory it wants as a :class:`Slot` and its kind of directory as
a :class:`Door`; :func:`cached_runs` then does the whole protocol for a group of slots:

1. **inspect** each directory (:func:`featavg.runs.state.inspect_run`, or the door's own
   classifier) and **serve** every hit (``door.serve`` turns it into the caller's value;
   None means "unusable after all": computed again);
2. **refuse or replace**: anything else must be replaceable
   (:func:`~featavg.runs.state.check_replaceable`): files featavg did not write, a place no
   run may go, or a directory of another kind are refused before anything computes;
3. **claim** the remaining directories (and the slots' extra lock names) for this process
   (:mod:`.lock`), then inspect them again: what another process finished meanwhile is
   served, not computed twice; a finished copy elsewhere in the store (``slot.elsewhere``)
   is copied in;
4. **compute** the rest in one call (``make``: e.g. one ensemble, or two models in one
   epoch loop), which returns one :class:`Made` (or a :class:`Failed`) per slot;
5. **stage** each made directory beside its place, write ``summary.json`` and then the
   **manifest** last, and rename it into place (:mod:`.staging`): whole or absent.

``force`` recomputes a hit, but only the run that was there when the caller asked: if
another process replaced it while we waited for the claim, that fresh run is served.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from featavg.runs import lock
from featavg.runs.files import read_json_object, read_regular
from featavg.runs.staging import (
    MANIFEST,
    run_token,
    staged_dir,
    write_manifest,
    write_run_files,
)
from featavg.runs.state import RunState, check_replaceable, inspect_run, listed_files

T = TypeVar("T")
SUMMARY = "summary.json"
# a directory a run was served from elsewhere in the store: copied whole, at most this big
MAX_COPY_BYTES = 1 << 34


@dataclass(frozen=True)
class Slot:
    """One cached directory wanted.

    kind: what makes it (an experiment name, ``train``, ``probe``: its summary's
    ``experiment``); identity: the JSON config its summary records (and its directory name
    hashes); directory: where it lives; where: how messages name it (``--out DIR``,
    ``model directory DIR``); claims: further lock names held while it is computed (e.g. a
    sweep cell's content key, so two sweeps sharing a cell compute it once); elsewhere:
    other directories of the store that may hold the same finished run (copied in, not
    computed again); baseline: the run token the caller saw when it decided to recompute
    (with ``force``; None: the token found now); replace: another config's or code's run
    (or an unfinished one) there may be replaced without ``force`` (a sweep owns its cell
    directories); remedy: what a refusal tells the user to do, naming a flag that exists for
    the command (``featavg train`` has ``--root``, not ``--out``)."""

    kind: str
    identity: dict[str, Any]
    directory: Path
    where: str = ""
    claims: tuple[Path, ...] = ()
    elsewhere: tuple[Path, ...] = ()
    baseline: str | None = None
    replace: bool = False
    remedy: str = "choose another directory"

    @property
    def label(self) -> str:
        """``where``, else ``run directory DIR``."""
        return self.where or f"run directory {self.directory}"


@dataclass
class Made(Generic[T]):
    """What ``make`` returns for one slot: ``summary`` (written as summary.json),
    ``write`` (writes every other file into the staged directory) and ``value`` (what the
    caller gets back)."""

    summary: dict[str, Any]
    write: Callable[[Path], None]
    value: T


@dataclass(frozen=True)
class Failed:
    """A slot whose computation failed (e.g. a diverging sweep cell): its one-line
    ``reason`` and failure ``summary``; nothing is written, the next call retries it."""

    reason: str
    summary: dict[str, Any]


@dataclass
class Served(Generic[T]):
    """The outcome for one slot: ``value`` (None when failed), ``summary``, ``directory``,
    ``cached`` (served from a run made earlier, here or elsewhere in the store) and
    ``failed`` (the one-line reason, or None)."""

    value: T | None
    summary: dict[str, Any]
    directory: Path
    cached: bool
    failed: str | None = None


def _summary_only(directory: Path, summary: dict[str, Any]) -> dict[str, Any]:
    return summary


@dataclass(frozen=True)
class Door(Generic[T]):
    """A kind of cached directory. serve(directory, summary): the caller's value of a
    verified hit (None: unusable after all, e.g. a model file that does not load: it is
    computed again); inspect(directory, kind, identity): the directory's
    :class:`~featavg.runs.state.RunState` (default :func:`~featavg.runs.state.inspect_run`)."""

    serve: Callable[[Path, dict[str, Any]], T | None]
    inspect: Callable[[Path, str, dict[str, Any]], RunState] = inspect_run


#: the door of plain runs whose value is their summary
SUMMARIES: Door[dict[str, Any]] = Door(_summary_only)


def serve_hit(door: Door[T], slot: Slot, state: RunState) -> Served[T] | None:
    """``state`` served through ``door`` when it is a hit the door can use, else None."""
    if state.kind != "hit" or state.summary is None:
        return None
    value = door.serve(slot.directory, state.summary)
    if value is None:
        return None
    return Served(value, state.summary, slot.directory, cached=True)


def lookup(door: Door[T], slot: Slot, force: bool) -> tuple[Served[T] | None, str | None]:
    """Step 1-2 for one slot, before any claim: (the served hit or None, the run token
    seen). Not a hit (or ``force``): the directory must be replaceable, else the one-line
    :class:`~featavg.config.ConfigError` of
    :func:`~featavg.runs.state.check_replaceable`."""
    state = door.inspect(slot.directory, slot.kind, slot.identity)
    token = run_token(slot.directory) if state.kind == "hit" else None
    if not force:
        served = serve_hit(door, slot, state)
        if served is not None:
            return served, token
    check_replaceable(state, slot.label, force or slot.replace, slot.remedy)
    return None, token


def lock_names(slots: Sequence[Slot]) -> list[Path]:
    """Every lock a process computing ``slots`` holds: each directory and its claims."""
    return [p for s in slots for p in (s.directory, *s.claims)]


def finished_meanwhile(
    door: Door[T], slot: Slot, force: bool, seen: str | None
) -> Served[T] | None:
    """Step 3, with the claim held: the run another process finished while we waited (for
    ``force``, only one that replaced the run seen, ``slot.baseline`` or ``seen``), else a
    finished copy from ``slot.elsewhere`` (never for ``force``), else None: compute it."""
    state = door.inspect(slot.directory, slot.kind, slot.identity)
    if state.kind == "hit":
        baseline = slot.baseline if slot.baseline is not None else seen
        if not force or run_token(slot.directory) != baseline:
            served = serve_hit(door, slot, state)
            if served is not None:
                return served
    if force or state.kind in ("foreign", "unusable") or state.foreign:
        return None
    for other in slot.elsewhere:
        if other == slot.directory:
            continue
        found = door.inspect(other, slot.kind, slot.identity)
        if found.kind != "hit" or found.foreign:
            continue
        try:
            copy_run(other, slot.directory)
        except (OSError, ValueError):  # changed under us: look further, else compute
            continue
        served = serve_hit(door, slot, door.inspect(slot.directory, slot.kind, slot.identity))
        if served is not None:
            return served
    return None


def copy_run(source: Path, target: Path) -> None:
    """Replace ``target`` whole by the files of the finished run ``source`` that its
    manifest lists (and the manifest), staged beside ``target`` and renamed into place."""
    listed = listed_files(read_json_object(source / MANIFEST)) or {}
    files = {}
    for name in [*listed, MANIFEST]:
        data = read_regular(source / name, limit=MAX_COPY_BYTES)
        if data is None:
            raise FileNotFoundError(f"{source / name}: vanished while copying")
        files[name] = data
    write_run_files(target, files)


def install(slot: Slot, made: Made[T] | Failed) -> Served[T]:
    """Step 5: write ``made`` into ``slot.directory`` whole (staged beside it, summary.json
    then manifest.json last, renamed into place); a :class:`Failed` writes nothing."""
    if isinstance(made, Failed):
        return Served(None, made.summary, slot.directory, cached=False, failed=made.reason)
    from featavg.runs.files import write_json

    with staged_dir(slot.directory) as new:
        made.write(new)
        write_json(new / SUMMARY, made.summary)
        write_manifest(new)
    return Served(made.value, made.summary, slot.directory, cached=False)


def cached_runs(
    door: Door[T],
    slots: Sequence[Slot],
    make: Callable[[list[Slot]], Sequence[Made[T] | Failed]],
    *,
    force: bool = False,
) -> list[Served[T]]:
    """The whole protocol (module docstring) for ``slots``: hits served, the rest claimed
    and computed by ONE call ``make(todo)`` (one :class:`Made` or :class:`Failed` per slot
    of ``todo``, in order), each written whole into its directory. ``force``: recompute
    hits. A directory that may not be replaced raises before anything is claimed or
    computed; an exception in ``make`` leaves every directory as it was."""
    slots = list(slots)
    found = [lookup(door, s, force) for s in slots]
    served: list[Served[T] | None] = [hit for hit, _ in found]
    todo = [i for i, s in enumerate(served) if s is None]
    if not todo:
        return [s for s in served if s is not None]
    with (
        _leave_no_trace([slots[i].directory for i in todo]),
        lock.claim(*lock_names([slots[i] for i in todo])),
    ):
        for i in todo:
            served[i] = finished_meanwhile(door, slots[i], force, found[i][1])
        todo = [i for i in todo if served[i] is None]
        if todo:
            made = list(make([slots[i] for i in todo]))
            if len(made) != len(todo):
                raise RuntimeError(f"cached_runs: make returned {len(made)} for {len(todo)}")
            for i, result in zip(todo, made, strict=True):
                served[i] = install(slots[i], result)
    return [s for s in served if s is not None]


def cached_run(
    door: Door[T],
    slot: Slot,
    make: Callable[[Slot], Made[T] | Failed],
    *,
    force: bool = False,
) -> Served[T]:
    """:func:`cached_runs` for one slot."""
    return cached_runs(door, [slot], lambda todo: [make(todo[0])], force=force)[0]


@contextlib.contextmanager
def _leave_no_trace(directories: list[Path]) -> Iterator[None]:
    """On an exception, remove the (empty) folders that did not exist before: a refused or
    failed run leaves no empty ``runs/`` behind."""
    created: list[Path] = []
    for directory in directories:
        for folder in [directory.parent, *directory.parent.parents]:
            if folder.exists() or folder in created:
                break
            created.append(folder)
    try:
        yield
    except BaseException:
        for folder in sorted(created, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
