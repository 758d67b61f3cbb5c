"""Benchmark: the thread policy (featavg.threads) alone and beside a competing process.

Times whole commands (process start to exit, as a user sees them) under three settings:
  torch:  torch's defaults (one OpenMP thread per core; libgomp's threads spin a while
          before they sleep): the command with featavg.threads.configure and passive_wait
          replaced by no-ops, i.e. the code before the policy
  policy: the plain command (featavg.threads.configure(None): the policy's default)
  one:    the command with --threads 1
in three scenarios:
  alone:  nothing else running (the "bg" column says how far that held)
  loop:   beside a pure-Python busy loop (one core)
  torch:  beside another torch program (small matmuls in a loop with torch's defaults), as
          when a second featavg command or a test suite runs
The competitor starts 0.5 s before the command and is killed after it. Children run
without OMP_NUM_THREADS / MKL_NUM_THREADS / OMP_WAIT_POLICY, so each setting starts from
the defaults. Settings and scenarios are interleaved within each repeat; each run prints a
line; the table shows medians over --repeats, the threads each command ended with ("p":
OMP_WAIT_POLICY=PASSIVE set before torch loaded, so in effect) and time ratios.

Workloads (--workload):
  robustness: featavg run synthetic-robustness --seeds 10 --force --quiet
  scaling:    featavg run synthetic-scaling --seeds 2 --force --quiet (closer to reproduce:
              many settings of different sizes, each trained and attacked)

Run: .venv/bin/python benchmarks/bench_threads.py [--repeats 1] [--workload robustness]
(about 3 minutes per repeat on 2 cores)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOADS = {
    "robustness": ["run", "synthetic-robustness", "--seeds", "10", "--force", "--quiet"],
    "scaling": ["run", "synthetic-scaling", "--seeds", "2", "--force", "--quiet"],
}
SETTINGS = {"torch": [], "policy": [], "one": ["--threads", "1"]}
COMPETITORS = {
    "alone": None,
    "loop": "while True: pass",
    "torch": "import torch\na = torch.randn(256, 256)\nwhile True: a @ a",
}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")

# Runs the featavg CLI in a fresh interpreter; setting "torch" turns the policy into no-ops
# before the CLI is imported. At exit it writes "THREADS PASSIVE" to REPORT: the torch
# thread count in force and whether the passive wait policy was set before torch loaded.
RUNNER = """
import atexit, sys
setting, report, *argv = sys.argv[1:]
import featavg.threads as policy
passive = []
if setting == "torch":
    def leave_torch_defaults(threads=None):
        import torch
        return torch.get_num_threads()
    policy.configure = leave_torch_defaults
    policy.passive_wait = lambda: False
else:
    real_passive_wait = policy.passive_wait
    def spy():
        passive.append(real_passive_wait())
        return passive[-1]
    policy.passive_wait = spy
def record():
    import torch
    with open(report, "w") as f:
        f.write(f"{torch.get_num_threads()} {int(any(passive))}")
atexit.register(record)
from featavg.cli import entry
sys.argv = ["featavg", *argv]
entry()
"""


def cpu_ticks(cpus: list[int]) -> int | None:
    """Busy clock ticks so far on ``cpus`` (/proc/stat; every column but idle and iowait)."""
    try:
        with open("/proc/stat") as f:
            lines = [line.split() for line in f if line.startswith("cpu")]
    except OSError:
        return None
    wanted = {f"cpu{i}" for i in cpus}
    return sum(
        sum(int(c) for c in cols[1:9]) - int(cols[4]) - int(cols[5])
        for cols in lines
        if cols[0] in wanted
    )


class Background:
    """CPU that processes other than ours used while one measurement ran, in cores: busy
    ticks of the usable CPUs less our children's CPU time (nan without /proc/stat)."""

    def __init__(self) -> None:
        self.cpus = sorted(os.sched_getaffinity(0))
        self.ticks = cpu_ticks(self.cpus)
        self.children = self._children()
        self.start = time.perf_counter()

    @staticmethod
    def _children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def cores(self) -> float:
        after = cpu_ticks(self.cpus)
        if self.ticks is None or after is None:
            return float("nan")
        busy_s = (after - self.ticks) / os.sysconf("SC_CLK_TCK")
        ours = self._children() - self.children
        return max(0.0, busy_s - ours) / (time.perf_counter() - self.start)


def timed(setting: str, argv: list[str], scenario: str, tmp: Path) -> tuple[float, str, float]:
    """Seconds the command took, its threads (with "p" when waiting passively) and the
    background cores during the measurement."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    report = tmp / "threads.txt"
    cmd = [sys.executable, "-c", RUNNER, setting, str(report), *argv, *SETTINGS[setting]]
    background = Background()
    code = COMPETITORS[scenario]
    busy = subprocess.Popen([sys.executable, "-c", code], env=env) if code else None
    if busy:
        time.sleep(0.5)
    start = time.perf_counter()
    status = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode
    elapsed = time.perf_counter() - start
    if busy:
        busy.kill()
        busy.wait()
    if status != 0:
        raise SystemExit(f"{setting}: {' '.join(argv)} exited with {status}")
    threads, passive = report.read_text().split()
    return elapsed, threads + ("p" if passive == "1" else ""), background.cores()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell (median shown)")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="robustness")
    args = parser.parse_args()
    print(
        f"== {' '.join(['featavg', *WORKLOADS[args.workload]])}: "
        f"{len(os.sched_getaffinity(0))} cores; median of {args.repeats} =="
    )
    runs: dict[tuple[str, str], list[tuple[float, str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        argv = [*WORKLOADS[args.workload], "--out", str(Path(tmp) / "run")]
        for _ in range(max(1, args.repeats)):
            for scenario in COMPETITORS:
                for setting in SETTINGS:
                    t, thr, bg = timed(setting, argv, scenario, Path(tmp))
                    runs.setdefault((setting, scenario), []).append((t, thr, bg))
                    print(f"  {setting:6s} {scenario:5s} {t:6.1f} s  threads {thr}  bg {bg:.2f}")
    med = {key: statistics.median(r[0] for r in v) for key, v in runs.items()}
    print(
        f"{'setting':<8}"
        + "".join(f"{s + ' s (thr)':>16}" for s in COMPETITORS)
        + "".join(f"{s + '/alone':>12}" for s in list(COMPETITORS)[1:])
        + "".join(f"{'vs torch ' + s:>16}" for s in COMPETITORS)
    )
    for setting in SETTINGS:
        line = f"{setting:<8}"
        for s in COMPETITORS:
            thr = "/".join(sorted({r[1] for r in runs[setting, s]}))
            line += f"{f'{med[setting, s]:.1f} ({thr})':>16}"
        line += "".join(
            f"{med[setting, s] / med[setting, 'alone']:>11.2f}x" for s in list(COMPETITORS)[1:]
        )
        line += "".join(f"{med[setting, s] / med['torch', s]:>16.2f}" for s in COMPETITORS)
        print(line)
    worst = max(r[2] for (_, s), v in runs.items() if s == "alone" for r in v)
    print(
        "thr: torch threads the command ran with, p: idle threads sleep (passive wait in "
        "effect); vs torch: time / the torch setting's time in the same scenario; other "
        f"processes kept at most {worst:.2f} cores busy during an 'alone' run"
    )


if __name__ == "__main__":
    main()
