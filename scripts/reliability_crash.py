"""Issue 13, deliverables 4-8 at full count: crash safety, concurrency, failing Dask workers,
untrusted files and paths, determinism.

    .venv/bin/python scripts/reliability_crash.py [--kills 20] [--repeats 10] [--quick]

* crash: every executor (local, process, dask on a LocalCluster) and the single ``run``
  are SIGKILLed at ``--kills`` random moments (uniform over an uninterrupted run's
  duration), restarted each time until they finish; after every kill no process of the
  killed run may survive and every cell directory must be a whole run or none; the final
  results must equal the uninterrupted reference bit for bit (summaries without provenance,
  every other file byte for byte);
* every moment of a directory write: a kill before each filesystem call of replacing a run;
* Dask: a worker killed with a task in hand, ``--kills`` times: no cell lost or reported
  twice;
* concurrency: four processes ask for one run, and two for one sweep, at once: each cell
  computed once (one manifest per cell across all of them);
* untrusted files and paths: tampered run files (each must be refused by ``load`` and not
  be a cache hit), unusable ``--out`` paths (each refused with exit code 2, one line);
* determinism: ``synthetic-robustness --seeds 6`` repeated ``--repeats`` times with one
  and two threads, in fresh processes, and every synthetic experiment's tiny config three
  times.

Prints the counts of the issue's closing table; exits 1 if a must-be-0 count is not 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

SWEEP_EXP = "synthetic-alignment"
SMALL = {"data": {"d": 40, "n_train": 60, "n_test": 30}, "train": {"steps": 10}}
GRID = {"train.lr": [0.001, 0.01], "data.k": [3, 4]}  # 4 cells, 2 groups (lr is batched)
RUN_EXP = "synthetic-robustness"
ISSUE = {  # the issue's report: synthetic-robustness --seeds 6 (data shrunk to run quickly)
    "data": {"d": 256, "k": 10, "n_train": 300, "n_test": 100},
    "train": {"steps": 30},
    "seeds": 6,
    "attack": {"radii": [0.0, 4.0, 8.0, 16.0]},
}
COUNTS: Counter[str] = Counter()


def results(directory: Path) -> dict[str, Any]:
    """The results of a run directory: summary without provenance, other files' bytes."""
    out: dict[str, Any] = {}
    for path in sorted(directory.iterdir()):
        if path.name == "summary.json":
            summary = json.loads(path.read_text())
            out[path.name] = {k: v for k, v in summary.items() if k != "provenance"}
        elif path.is_file() and path.name != "manifest.json":
            out[path.name] = path.read_bytes()
    return out


def check_cells(out: Path) -> None:
    """Count cell directories that are neither a whole run (cache hit) nor absent."""
    from featavg.runs import read_json_object
    from featavg.runs.state import inspect_run

    for cell in (out / "cells").glob("*") if (out / "cells").is_dir() else []:
        if cell.name.startswith("."):
            continue
        config = read_json_object(cell / "config.json")
        state = inspect_run(cell, SWEEP_EXP, config or {})
        if state.kind not in ("hit", "absent"):
            COUNTS["corrupt or mixed directories"] += 1
            print(f"  MIXED {cell}: {state.detail}")


def launch_and_kill(ctx: Any, target: Any, kwargs: dict[str, Any], delay: float) -> bool:
    """Run ``target(**kwargs)`` in a child, SIGKILL it after ``delay`` s; whether it was
    still running (a kill that landed). Counts processes that outlive it."""
    child = ctx.Process(target=target, kwargs=kwargs)
    child.start()
    end = time.monotonic() + delay
    workers: list[psutil.Process] = []
    while child.is_alive() and time.monotonic() < end:
        with contextlib.suppress(psutil.NoSuchProcess):
            workers = psutil.Process(child.pid).children(recursive=True)
        time.sleep(0.02)
    landed = child.is_alive()
    with contextlib.suppress(psutil.NoSuchProcess):
        workers = psutil.Process(child.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGKILL)
    child.join(60)
    if child.exitcode not in (0, -signal.SIGKILL):
        COUNTS["tracebacks"] += 1
        print(f"  the run failed: exit code {child.exitcode}")
    _, alive = psutil.wait_procs(workers, timeout=30)
    COUNTS["workers outliving a killed parent"] += len(alive)
    return landed


def sweep_child(out: str, options: dict[str, Any]) -> None:
    from featavg.sweep import run_sweep

    run_sweep(SWEEP_EXP, GRID, overrides=SMALL, out=out, progress=False, **options)


def run_child(out: str) -> None:
    from featavg.experiments.runner import run_experiment
    from featavg.runs import open_context

    run_experiment(RUN_EXP, overrides=ISSUE, out=out, ctx=open_context("cpu"))


def crash_battery(
    ctx: Any,
    name: str,
    target: Any,
    kwargs: dict[str, Any],
    kills: int,
    reference: Path,
    rng: random.Random,
) -> None:
    """Kill the run ``kills`` times at random moments, restarting until it finishes; compare
    each finished round with ``reference``."""
    out = Path(kwargs["out"])
    start = time.monotonic()
    launch_and_kill(ctx, target, kwargs, 1e9)  # uninterrupted, timed
    full = time.monotonic() - start
    compare(name, out, reference)
    landed = rounds = 0
    while landed < kills:
        shutil.rmtree(out)
        rounds += 1
        while True:
            hit = launch_and_kill(ctx, target, kwargs, rng.uniform(0.0, full))
            landed += hit
            COUNTS["runs killed"] += hit
            check_cells(out) if name != "run" else None
            if not hit:
                break
        compare(name, out, reference)
    print(f"  {name}: {landed} kills in {rounds} rounds (uninterrupted {full:.1f} s)")


def compare(name: str, out: Path, reference: Path) -> None:
    """Count results lost or different between a finished run or sweep and the reference."""
    if name == "run":
        pairs = [(out, reference)]
    else:
        cells = sorted(p for p in (reference / "cells").iterdir() if not p.name.startswith("."))
        pairs = [(out / "cells" / ref.name, ref) for ref in cells]
    for mine, ref in pairs:
        if not (mine / "summary.json").is_file():
            COUNTS["results lost"] += 1
        elif results(mine) != results(ref):
            COUNTS["non-deterministic repeats"] += 1
            print(f"  DIFFERS {mine}")
    if name != "run":
        table = out / "sweep.csv"
        if not table.is_file():
            COUNTS["results lost"] += 1
        elif table.read_bytes() != (reference / "sweep.csv").read_bytes():
            COUNTS["non-deterministic repeats"] += 1


def _write_dying(target: Path, files: dict[str, bytes], k: int) -> None:
    """In a forked child: replace ``target`` by ``files``, SIGKILLed before the k-th
    filesystem call; exit 0 if the write ends first."""
    from featavg import runs

    calls = [0]
    for fn in ("write", "replace", "rename", "mkdir", "rmdir", "unlink", "open"):
        real = getattr(os, fn)

        def step(*a: Any, _real: Any = real, **kw: Any) -> Any:
            calls[0] += 1
            if calls[0] == k:
                os.kill(os.getpid(), signal.SIGKILL)
            return _real(*a, **kw)

        setattr(os, fn, step)
    runs.write_run_files(target, files)
    os._exit(0)


def write_moments() -> None:
    """A kill before every filesystem call of replacing a run by another."""
    from featavg import runs
    from featavg.experiments.runner import run_experiment

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tiny = {**ISSUE, "data": {"d": 40, "k": 4, "n_train": 60, "n_test": 30}, "seeds": 2}
        for name, seed in (("old", 0), ("new", 1)):
            run_experiment(RUN_EXP, overrides={**tiny, "seed": seed}, out=root / name)
        old, new = ({p.name: p.read_bytes() for p in (root / n).iterdir()} for n in ("old", "new"))
        k = 0
        while True:
            k += 1
            target = root / "run"
            shutil.rmtree(target, ignore_errors=True)
            runs.write_run_files(target, old)
            pid = os.fork()
            if pid == 0:
                _write_dying(target, new, k)
            _, status = os.waitpid(pid, 0)
            if not os.WIFSIGNALED(status):
                break
            COUNTS["faults injected"] += 1
            COUNTS["runs killed"] += 1
            now = {p.name: p.read_bytes() for p in target.iterdir()} if target.exists() else None
            if now not in (old, new, None):
                COUNTS["corrupt or mixed directories"] += 1
        print(f"  write moments: {k - 1} kills")


def _sweep_into(box: dict[str, Any], tmp: Path, executor: Any) -> None:
    from featavg.sweep import run_sweep

    box["r"] = run_sweep(
        SWEEP_EXP, GRID, overrides=SMALL, out=tmp / "s", executor=executor, progress=False
    )


def dask_worker_kills(cluster: Any, kills: int, reference: Path, rng: random.Random) -> None:
    """Kill a busy worker mid-sweep ``kills`` times; count lost and duplicated results."""
    import threading

    import distributed

    from featavg.sweep import DaskExecutor

    class Counting:
        def __init__(self) -> None:
            self.inner, self.calls = DaskExecutor(cluster.scheduler_address), Counter[str]()

        def run(self, experiment: str, groups: Any, device: str, done: Any) -> None:
            def counted(cell: Any, summary: Any) -> None:
                self.calls[cell.name] += 1
                done(cell, summary)

            self.inner.run(experiment, groups, device, counted)

    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        for _ in range(kills):
            with tempfile.TemporaryDirectory() as tmp:
                executor, box = Counting(), {}
                thread = threading.Thread(target=_sweep_into, args=(box, Path(tmp), executor))
                thread.start()
                busy: list[str] = []
                while not busy and thread.is_alive():
                    busy = [w for w, keys in client.processing().items() if keys]
                    time.sleep(0.05)
                time.sleep(rng.uniform(0.0, 1.0))
                pids = client.run(os.getpid)
                if busy and busy[0] in pids:
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    COUNTS["Dask workers killed"] += 1
                thread.join()
                COUNTS["results lost"] += sum(
                    1 for c in box["r"].cells if executor.calls[c.name] == 0
                )
                COUNTS["results duplicated"] += sum(n - 1 for n in executor.calls.values() if n > 1)
                compare("sweep", Path(tmp) / "s", reference)
            client.wait_for_workers(2, timeout=120)


def _watch_installs(directories: Any, children: list[Any]) -> Counter[str]:
    """While ``children`` run, how many times each directory of ``directories()`` was
    installed (every install renames a new directory into place: a new inode)."""
    seen: dict[Path, set[int]] = {}
    while any(c.is_alive() for c in children):
        for path in directories():
            with contextlib.suppress(OSError):
                if (path / "manifest.json").is_file():
                    seen.setdefault(path, set()).add(path.stat().st_ino)
        time.sleep(0.02)
    for c in children:
        c.join()
    return Counter({str(p): len(inodes) for p, inodes in seen.items()})


def concurrency(ctx: Any) -> None:
    """Four processes ask for one run at once, two for one sweep: each directory must be
    installed once (a second computation would install it again)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        children = [ctx.Process(target=run_child, args=(str(out),)) for _ in range(4)]
        for c in children:
            c.start()
        installs = _watch_installs(lambda: [out], children)
        sweep = Path(tmp) / "s"
        sweeps = [ctx.Process(target=sweep_child, args=(str(sweep), {})) for _ in range(2)]
        for c in sweeps:
            c.start()
        installs += _watch_installs(lambda: list((sweep / "cells").glob("[!.]*")), sweeps)
        COUNTS["concurrent processes"] += 6
        COUNTS["cells computed twice"] += sum(n - 1 for n in installs.values())
        print(f"  {len(installs)} directories, installed {sum(installs.values())} times")


def _replace(path: Path, make: Any) -> None:
    path.unlink()
    make(path)


def untrusted(reference: Path) -> None:
    """Tampered run files and unusable output paths."""
    import featavg
    from featavg.cli import main
    from featavg.config import ConfigError

    run = next((reference / "cells").iterdir())
    tampers = {
        "truncated summary": lambda d: (d / "summary.json").write_bytes(
            (d / "summary.json").read_bytes()[:50]
        ),
        "deep nesting": lambda d: (d / "summary.json").write_text("[" * 10**5 + "]" * 10**5),
        "wrong type": lambda d: (d / "summary.json").write_text("[1]"),
        "csv garbage": lambda d: (d / "metrics.csv").write_bytes(os.urandom(200)),
        "stray table": lambda d: (d / "other.csv").write_text("a\n1\n"),
        "manifest outside": lambda d: (d / "manifest.json").write_text(
            '{"files": {"../../x": "' + "0" * 64 + '"}}'
        ),
        "link": lambda d: (
            (d / "summary.json").unlink(),
            (d / "summary.json").symlink_to("/etc/hostname"),
        ),
        "fifo": lambda d: _replace(d / "summary.json", os.mkfifo),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, tamper in tampers.items():
            copy = shutil.copytree(run, Path(tmp) / "tampered" / name)
            tamper(copy)
            COUNTS["faults injected"] += 1
            try:
                featavg.load(copy)
                COUNTS["corrupt or mixed directories"] += 1  # read back as a result
            except ConfigError:
                pass
            except Exception as err:  # noqa: BLE001 - counted, that is the point
                COUNTS["tracebacks"] += 1
                print(f"  TRACEBACK {name}: {type(err).__name__}")
        Path(tmp, "file").write_text("x")
        Path(tmp, "link").symlink_to(tmp)
        outs = [
            "",
            ".",
            "/dev/null",
            str(Path(tmp, "file")),
            str(Path(tmp, "link")),
            str(Path(tmp, "x" * 300)),
            str(Path(tmp, "file", "run")),
        ]
        for out in outs:
            COUNTS["inputs tried"] += 1
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    code = main(["run", RUN_EXP, "--set=seeds=1", "--out", out, "--quiet"])
                except Exception:  # noqa: BLE001
                    code = -1
            if code != 2 or len(err.getvalue().strip().splitlines()) != 1:
                COUNTS["tracebacks"] += 1
                print(f"  NOT REFUSED {out!r}: {code}")


def determinism(ctx: Any, repeats: int) -> None:
    """The issue's run repeated in fresh processes with one and two threads; every
    synthetic experiment's tiny config three times."""
    from featavg.experiments.registry import EXPERIMENTS
    from featavg.experiments.runner import run_experiment
    from featavg.runs import open_context

    with tempfile.TemporaryDirectory() as tmp:
        first = None
        for i in range(repeats):
            out = Path(tmp) / f"issue{i}"
            child = ctx.Process(target=threads_child, args=(str(out), 1 + i % 2))
            child.start()
            child.join()
            now = results(out)
            first = first or now
            COUNTS["repeats"] += 1
            if now != first:
                COUNTS["non-deterministic repeats"] += 1
                print(f"  DIFFERS repeat {i}")
        for name, exp in EXPERIMENTS.items():
            if not name.startswith("synthetic-"):
                continue
            outs = [Path(tmp) / f"{name}{i}" for i in range(3)]
            for out in outs:
                run_experiment(name, overrides=dict(exp.tiny), out=out, ctx=open_context("cpu"))
                COUNTS["repeats"] += 1
            COUNTS["non-deterministic repeats"] += sum(results(o) != results(outs[0]) for o in outs)


def threads_child(out: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    run_child(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per executor")
    parser.add_argument("--repeats", type=int, default=10, help="repeats of the issue's run")
    parser.add_argument("--quick", action="store_true", help="3 kills, 4 repeats")
    args = parser.parse_args()
    kills, repeats = (3, 4) if args.quick else (args.kills, args.repeats)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["featavg.sweep", "featavg.experiments.registry"])
    rng = random.Random(13)
    import distributed

    from featavg.sweep import run_sweep

    started = time.monotonic()
    print("every moment of a directory write:")
    write_moments()  # first: it forks, better before the cluster's threads start
    with (
        tempfile.TemporaryDirectory() as tmp,
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
    ):
        root = Path(tmp)
        reference = run_sweep(SWEEP_EXP, GRID, overrides=SMALL, out=root / "ref", progress=False)
        run_child(str(root / "ref-run"))
        print("crash safety (SIGKILL at random moments, restarted until finished):")
        for name, options in [
            ("local", {}),
            ("process", {"executor": "process", "workers": 2}),
            ("dask", {"executor": "dask", "scheduler": cluster.scheduler_address}),
        ]:
            kwargs = {"out": str(root / name), "options": options}
            crash_battery(ctx, name, sweep_child, kwargs, kills, reference.directory, rng)
        crash_battery(
            ctx, "run", run_child, {"out": str(root / "run")}, kills, root / "ref-run", rng
        )
        print("Dask workers killed mid-sweep:")
        dask_worker_kills(cluster, kills, reference.directory, rng)
        print("concurrency:")
        concurrency(ctx)
        print("untrusted files and paths:")
        untrusted(reference.directory)
        print("determinism:")
        determinism(ctx, repeats)
    print(f"\ndone in {time.monotonic() - started:.0f} s")
    must_be_zero = [
        "results lost",
        "results duplicated",
        "corrupt or mixed directories",
        "tracebacks",
        "non-deterministic repeats",
        "workers outliving a killed parent",
        "cells computed twice",
    ]
    for key in [
        "inputs tried",
        "faults injected",
        "runs killed",
        "Dask workers killed",
        "concurrent processes",
        "repeats",
        *must_be_zero,
    ]:
        print(f"  {key:36s} {COUNTS[key]}")
    return 1 if any(COUNTS[k] for k in must_be_zero) else 0


if __name__ == "__main__":
    sys.exit(main())
