"""Config fuzzing at full count (issue 13, deliverable 1): the strategies of
tests/test_fuzz_inputs.py with many examples each, plus the hand-made hostile config paths.

    .venv/bin/python scripts/reliability_fuzz.py [--examples N]

Prints, per entry point and in total: inputs tried, the exit-code histogram (0: a valid
config, 2: refused with one line), tracebacks (exceptions escaping ``main`` or the API, or a
"Traceback" on stderr), malformed error lines (not exactly one line of at most 300
printable characters), hangs (an input past the per-input time limit) and the slowest
input. Exit status 1 when any traceback, malformed line or hang was seen. Nothing is
trained: commands stop once their config is validated.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, given, settings  # noqa: E402

import test_fuzz_inputs as fz  # noqa: E402
from time_limits import Hang  # noqa: E402


class Tally:
    """Counts of one entry point."""

    def __init__(self) -> None:
        self.codes: Counter[str] = Counter()
        self.bugs: list[str] = []
        self.hangs = 0
        self.slowest = (0.0, "")

    def add(self, label: str, seconds: float, code: str, bug: str | None, hang: bool) -> None:
        self.codes[code] += 1
        if hang:
            self.hangs += 1
        elif bug is not None:
            self.bugs.append(f"{bug} <- {label[:150]!r}")
        if seconds > self.slowest[0]:
            self.slowest = (seconds, label[:80])

    @property
    def tried(self) -> int:
        return sum(self.codes.values())


def record_cli(tally: Tally, argv: list[str]) -> None:
    start = time.perf_counter()
    outcome = fz.run_cli(argv)
    seconds = time.perf_counter() - start
    hang = isinstance(outcome.bug, Hang)
    found = fz.problems(outcome)
    code = "exception" if outcome.bug is not None else str(outcome.code)
    tally.add(repr(argv), seconds, code, "; ".join(found) if found else None, hang)


def fuzz(tallies: dict[str, Tally], examples: int, workdir: Path) -> None:
    """Run every strategy ``examples`` times (derandomized: the same inputs every time)."""
    cfg = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )

    def cli_case(kind: str, strategy: Any) -> None:
        @cfg
        @given(strategy)
        def go(argv: list[str]) -> None:
            record_cli(tallies[kind], argv)

        go()

    def file_case(kind: str, suffix: str) -> None:
        @cfg
        @given(fz.config_file(suffix))
        def go(case: tuple[str, bytes]) -> None:
            path = workdir / f"fuzz{suffix}"
            path.write_bytes(case[1])
            record_cli(tallies[kind], ["show-config", case[0], "--config", str(path)])

        go()

    @cfg
    @given(fz.api_calls())
    def api(call: tuple[str, dict[str, Any]]) -> None:
        start = time.perf_counter()
        verdict = fz.api_outcome(*call)
        bug = verdict if verdict.startswith("bug") else None
        hang = "Hang" in verdict
        code = {"valid": "0", "refused": "2"}.get(verdict, "exception")
        tallies["api"].add(repr(call), time.perf_counter() - start, code, bug, hang)

    cli_case("--set", fz.set_args())
    file_case("toml", ".toml")
    file_case("yaml", ".yaml")
    cli_case("--grid", fz.grid_args())
    cli_case("argv", fz.argv_lists())
    api()


def paths(tally: Tally, workdir: Path) -> None:
    """Config paths that are not regular files, and unreadable or oversized ones."""
    fifo = workdir / "fifo.yaml"
    os.mkfifo(fifo)
    (workdir / "dir.toml").mkdir()
    big = workdir / "big.yaml"
    with big.open("wb") as f:
        f.truncate(2 << 30)  # sparse: 2 GiB of zeros, never read
    (workdir / "zero.yaml").symlink_to("/dev/zero")
    (workdir / "loop.yaml").symlink_to(workdir / "loop.yaml")
    (workdir / "latin1.yaml").write_bytes("seed: \xe9\n".encode("latin-1"))
    (workdir / "config.json").write_text("{}")
    cases = [
        str(fifo), str(workdir / "dir.toml"), str(big), str(workdir / "zero.yaml"),
        str(workdir / "loop.yaml"), str(workdir / "latin1.yaml"), str(workdir / "config.json"),
        "/dev/zero", "/dev/null", "/dev/urandom", "/dev/stdin", "/proc/self/mem", "/", "",
        "missing.toml", "a\x00b.toml", "x" * 300 + ".toml", "/" + "d/" * 3000 + "c.yaml",
    ]  # fmt: skip
    for name in sorted(fz.EXPERIMENTS)[:3]:
        for path in cases:
            record_cli(tally, ["show-config", name, "--config", path])
            record_cli(tally, ["run", name, "--config", path])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="per strategy (default 1000)")
    args = parser.parse_args()
    kinds = ["--set", "toml", "yaml", "--grid", "argv", "api", "paths"]
    tallies = {k: Tally() for k in kinds}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fuzz(tallies, args.examples, Path(tmp))
        paths(tallies["paths"], Path(tmp))
    print(f"{'entry point':12s} {'inputs':>7s} {'exit 0':>7s} {'exit 2':>7s} {'tracebacks':>10s}"
          f" {'hangs':>6s}  slowest")  # fmt: skip
    for kind, t in tallies.items():
        print(
            f"{kind:12s} {t.tried:7d} {t.codes['0']:7d} {t.codes['2']:7d} {len(t.bugs):10d}"
            f" {t.hangs:6d}  {t.slowest[0]:.2f} s"
        )
    total = Tally()
    for t in tallies.values():
        total.codes.update(t.codes)
        total.bugs += t.bugs
        total.hangs += t.hangs
    print(
        f"{'total':12s} {total.tried:7d} {total.codes['0']:7d} {total.codes['2']:7d}"
        f" {len(total.bugs):10d} {total.hangs:6d}  in {time.perf_counter() - start:.0f} s"
    )
    print(f"exit-code histogram: {dict(sorted(total.codes.items()))}")
    for bug in total.bugs[:20]:
        print("BUG", bug)
    return 1 if total.bugs or total.hangs else 0


if __name__ == "__main__":
    sys.exit(main())
