"""Determinism on CPU, each promise of the README's "Determinism" section as it is written:

* the same command with the same thread count repeats bit for bit: summaries (provenance
  and measured timings aside), tables and figures, for every experiment;
* for the synthetic experiments another thread count agrees to float rounding
  (tests/float_agreement.py: every number of the summary and tables within 5e-7 relative);
* a sweep cell trained alone agrees to float rounding with the same cell trained in an
  ensemble (what a sweep resumed mid-group relies on);
* every executor runs the same cell function: the Dask worker's path equals the local one
  bit for bit here; the process pool and Dask are compared bit for bit with the local
  executor in tests/test_crash_safety.py (one thread everywhere).

None of this depends on the CPU: an exact promise is checked where it holds on any CPU (one
machine, one thread count), a tolerance where rounding may differ."""

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from featavg.config import build_config
from featavg.experiments.registry import EXPERIMENTS, get_experiment
from featavg.experiments.runner import run_experiment, run_experiment_batch
from featavg.runs.context import open_context
from featavg.sweep.executors import run_cells, run_cells_detached
from float_agreement import REL, disagreements

# large enough that torch and MKL split the work between threads (tensors of ~10^5-10^6
# elements), six replicates, small enough for CI
MEDIUM = {
    "data": {"d": 256, "k": 10, "n_train": 300, "n_test": 100},
    "train": {"steps": 30},
    "seeds": 6,
    "attack": {"radii": [0.0, 4.0, 8.0, 16.0]},
}
# every synthetic experiment at its tiny config, and synthetic-robustness at MEDIUM
RUNS = [
    pytest.param(name, dict(exp.tiny), id=name)
    for name, exp in EXPERIMENTS.items()
    if name.startswith("synthetic-")
] + [pytest.param("synthetic-robustness", MEDIUM, id="synthetic-robustness-medium")]


def without_timings(value):
    """``value`` without the measured timings (keys holding ``wall_s`` or ``images_per_s``)
    at any depth: they measure the machine, not the result."""
    if isinstance(value, dict):
        return {
            k: without_timings(v)
            for k, v in value.items()
            if "wall_s" not in k and "images_per_s" not in k
        }
    return value


def results(directory):
    """Everything a run directory holds that is a result: the summary without its
    provenance (wall time, thread count, ...) and measured timings, and every other file's
    bytes."""
    out = {}
    for path in sorted(Path(directory).iterdir()):
        if path.name == "summary.json":
            summary = json.loads(path.read_text())
            summary.pop("provenance")
            out[path.name] = without_timings(summary)
        elif path.name != "manifest.json":  # it lists the summary's hash
            out[path.name] = path.read_bytes()
    return out


def diff(a, b):
    """The names (and summary keys) where two :func:`results` differ."""
    names = [n for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n)]
    if "summary.json" in names and "summary.json" in a and "summary.json" in b:
        sa, sb = a["summary.json"], b["summary.json"]
        keys = [k for k in sorted(set(sa) | set(sb)) if sa.get(k) != sb.get(k)]
        names = [n for n in names if n != "summary.json"] + [f"summary.{k}" for k in keys]
    return names


@contextlib.contextmanager
def threads(count):
    """torch computes with ``count`` threads in the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "overrides"), RUNS)
def test_repeats_are_bit_identical_and_thread_counts_agree(tmp_path, name, overrides):
    def run(label, count):
        with threads(count):
            run_experiment(name, overrides=overrides, out=tmp_path / label, ctx=open_context("cpu"))
        return tmp_path / label

    two, again, one = run("two", 2), run("again", 2), run("one", 1)
    assert diff(results(two), results(again)) == []  # the same command: bit for bit
    assert disagreements(one, two) == []  # 1 and 2 threads: to float rounding


# the image experiments: a CNN trained (SGD, BatchNorm) and attacked; feature heads on a
# trained backbone
IMAGE = [name for name, exp in EXPERIMENTS.items() if not name.startswith("synthetic-")]


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGE)
def test_image_experiments_repeat_bit_identical(tmp_path, name):
    """The same command again (``--force``, its trained models removed from the cache so
    that they are trained again too) at one thread count: the same bits. Another thread
    count is not promised to agree to rounding here: many SGD steps let it grow."""
    out = tmp_path / "runs" / "run"
    run_experiment(name, overrides=dict(EXPERIMENTS[name].tiny), out=out, ctx=open_context("cpu"))
    first = tmp_path / "first"
    out.rename(first)
    shutil.rmtree(tmp_path / "runs" / "models")  # trained again, into the same places
    run_experiment(name, overrides=dict(EXPERIMENTS[name].tiny), out=out, ctx=open_context("cpu"))
    assert diff(results(first), results(out)) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("field", "values"), [("lr", (1e-3, 1e-2)), ("init_std", (1e-5, 1e-3))], ids=str
)
def test_a_cell_alone_agrees_with_the_same_cell_in_an_ensemble(tmp_path, field, values):
    """What lets a sweep resumed mid-group (a smaller ensemble) agree with an uninterrupted
    one. The ensemble stacks both cells' members: the float32 kernels see other sizes and
    may add in another order, so the promise is float rounding, not bits."""
    exp = get_experiment("synthetic-alignment")
    assert exp.run_batch is not None

    def config(value):
        section = "train" if field == "lr" else "net"
        overrides = {**exp.tiny, "train": {"steps": 20}}
        overrides[section] = {**overrides.get(section, {}), field: value}
        return build_config(exp.config_cls, overrides)

    together = [tmp_path / "together-0", tmp_path / "together-1"]
    run_experiment_batch(exp.name, [config(v) for v in values], together, open_context("cpu"))
    for i, value in enumerate(values):
        alone = tmp_path / f"alone-{i}"
        run_experiment_batch(exp.name, [config(value)], [alone], open_context("cpu"))
        summary = json.loads((together[i] / "summary.json").read_text())
        assert summary["provenance"]["batched_with_cells"] == 2  # an ensemble of both
        assert disagreements(together[i], alone) == [], (field, value, REL)


def test_the_dask_worker_path_equals_the_local_one(tmp_path):
    """A Dask worker runs :func:`run_cells_detached` into scratch directories and sends the
    files back; locally :func:`run_cells` writes them: the same bytes."""
    name = "synthetic-robustness"
    config = build_config(get_experiment(name).config_cls, EXPERIMENTS[name].tiny)
    configs = [config.model_dump(mode="json")]
    run_cells(name, configs, [str(tmp_path / "local")], "cpu")
    (files,) = run_cells_detached(name, configs, "cpu")
    with tempfile.TemporaryDirectory(dir=tmp_path) as scratch:
        for file_name, data in files.items():
            (Path(scratch) / file_name).write_bytes(data)
        assert diff(results(tmp_path / "local"), results(scratch)) == []
