import os

# One thread per test process: on the 2-core CI machine, default BLAS/OpenMP threading
# oversubscribes the cores as soon as anything else runs (the suite went from ~70 s to
# 400-500 s). Set before torch is imported so OpenMP and MKL read it too. A count the caller
# set stays in the environment, so the processes tests start (CLI, sweeps) use it, while this
# process computes with one thread regardless: a test comparing a child's results with this
# process's bit for bit gives the child the same count (README, Determinism: equal bits are
# promised at equal thread counts).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """Every test starts with one thread here, as if under ``--threads 1`` (process-pool
    workers then get one each): a CLI command run in this process applies its thread policy
    (``--threads``, else ``$OMP_NUM_THREADS``) to the process and would leave it to the
    next test, whose results compared bit for bit with a child's would then differ."""
    from featavg import threads

    torch.set_num_threads(1)
    monkeypatch.setattr(threads, "_in_force", 1)


@pytest.fixture(autouse=True)
def _seed_global_rng():
    # tests that draw with the global RNG (torch.randn without a generator) are deterministic
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """Every registered experiment run once on its declared ``tiny`` config (seconds each),
    through ``featavg reproduce``: {name: RunResult}, and the report path. Shared by the
    contract, reproduce and report tests so that no test runs the experiments again."""
    from featavg.experiments.registry import EXPERIMENTS
    from featavg.reproduction import reproduce

    root = tmp_path_factory.mktemp("tiny-runs")
    plan = [(name, dict(exp.tiny)) for name, exp in EXPERIMENTS.items()]
    results, report = reproduce(root, device="cpu", progress=False, experiments=plan)
    return {name: r for (name, _), r in zip(plan, results, strict=True)}, report
