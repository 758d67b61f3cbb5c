"""The thread policy (featavg.threads): --threads, its default, fresh processes, workers."""

import inspect
import json
import os
import subprocess
import sys

import pytest
import torch

from featavg import threads
from featavg.config import ConfigError
from featavg.sweep.executors import ProcessExecutor
from featavg.sweep.plan import SweepCell


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch):
    """Every test leaves torch and the module as it found them."""
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_in_force", None)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # configure() sets it
    yield
    torch.set_num_threads(before)


def fake_machine(monkeypatch, cores: int, omp: str | None = None) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_configure_sets_the_count(n):
    assert threads.configure(n) == n
    assert torch.get_num_threads() == n
    assert threads.threads_in_force() == n


@pytest.mark.parametrize("cores", [1, 3, 4])
def test_default_is_the_usable_cores(monkeypatch, cores):
    fake_machine(monkeypatch, cores)
    assert threads.configure(None) == cores
    assert torch.get_num_threads() == cores
    assert threads.worker_threads(2) == max(1, cores // 2)


@pytest.mark.parametrize(("omp", "expected"), [("3", 3), ("2,1", 2), (" 1 ", 1)])
def test_default_honours_omp_num_threads(monkeypatch, omp, expected):
    fake_machine(monkeypatch, 8, omp)
    assert threads.configure() == expected


@pytest.mark.parametrize("omp", ["0", "-2", "many", ""])
def test_default_ignores_a_meaningless_omp_num_threads(monkeypatch, omp):
    fake_machine(monkeypatch, 4, omp)
    assert threads.default_threads() == 4


@pytest.mark.parametrize("bad", [0, -1, 2.0, "2", True, 100_000])
def test_bad_values_name_the_option(bad):
    with pytest.raises(ConfigError, match=r"^--threads: need a whole number in 1\.\.\d+ .*, got"):
        threads.configure(bad)


def test_help_states_the_default():
    assert "default" in threads.THREADS_HELP and "OMP_NUM_THREADS" in threads.THREADS_HELP


def test_passive_wait_keeps_a_set_value_and_knows_it_is_too_late(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert threads.passive_wait() is False  # torch is imported in this process
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.passive_wait()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


# ------------------------------------------------------------------ the usable cores


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("200000 100000\n", 2),
        ("150000 100000\n", 2),
        ("50000 100000\n", 1),
        ("max 100000\n", None),
        ("garbage\n", None),
    ],
)
def test_cgroup_quota(tmp_path, text, expected):
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert threads.cgroup_cpu_limit(str(path)) == expected
    assert threads.cgroup_cpu_limit(str(tmp_path / "missing")) is None


def test_usable_cores_is_the_affinity_mask_capped_by_the_quota(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert threads.usable_cores() == 6
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 2)
    assert threads.usable_cores() == 2
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 16)
    assert threads.usable_cores() == 6


# ------------------------------------------------------------------ fresh processes


def test_fresh_process_sets_interop_and_keeps_a_given_wait_policy():
    code = (
        "import json, os, sys; import featavg.threads as t; fresh = 'torch' not in sys.modules; "
        "n = t.configure(3); import torch; print(json.dumps([n, fresh, torch.get_num_threads(), "
        "torch.get_num_interop_threads(), os.environ['OMP_WAIT_POLICY']]))"
    )
    env = {**os.environ, "OMP_WAIT_POLICY": "ACTIVE"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [3, True, 3, 3, "ACTIVE"]


def test_the_cli_sets_passive_waiting_before_torch_loads():
    # a bad --set fails after the thread policy ran: cheap, and enough to see the order
    code = (
        "import featavg.threads as t\nreal = t.passive_wait\nseen = []\n"
        "def spy():\n    seen.append(real())\n    return seen[-1]\n"
        "t.passive_wait = spy\nfrom featavg.cli import main\n"
        "status = main(['run', 'synthetic-alignment', '--set', 'seeds=0', '--threads', '1'])\n"
        "print(seen[:1], status)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["[True]", "2"], out.stderr


def report_worker_threads(
    experiment: str,
    configs: list[dict],
    outs: list[str],
    device: str,
    progress: bool = False,
    seen: list[str | None] | None = None,
    force: bool = False,
) -> list[dict]:
    """Stands in for run_cells inside a pool worker: what the worker was configured with."""
    return [
        {
            "threads": torch.get_num_threads(),
            "interop": torch.get_num_interop_threads(),
            "wait": os.environ.get("OMP_WAIT_POLICY"),
        }
        for _ in configs
    ]


def test_process_pool_workers_get_their_share(monkeypatch, tmp_path):
    import featavg.sweep.executors as executors

    # a stand-in with another signature would fail inside the worker, far from its cause
    params = inspect.signature(executors.run_cells).parameters
    assert list(inspect.signature(report_worker_threads).parameters) == list(params)
    monkeypatch.setattr(executors, "run_cells", report_worker_threads)
    monkeypatch.setattr(threads, "_in_force", 6)  # as if --threads 6: 2 workers get 3 each
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert threads.worker_threads(2) == 3 and threads.worker_threads(4) == 1
    # one group: the pool starts one worker (each start imports torch, seconds)
    groups = [[SweepCell({"i": 0}, {}, tmp_path / "0"), SweepCell({"i": 1}, {}, tmp_path / "1")]]
    seen: list[dict] = []
    ProcessExecutor(workers=2).run("none", groups, "cpu", lambda cell, s: seen.append(s))
    assert seen == [{"threads": 3, "interop": 3, "wait": "PASSIVE"}] * 2
