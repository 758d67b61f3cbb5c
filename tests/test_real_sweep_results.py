"""A real-data sweep's results are results only: timings are provenance, never a column of
``sweep.csv`` or a panel of ``sweep.png``, so the same sweep computed twice gives the same
``sweep.csv`` byte for byte (once ``attack_wall_s_*`` was a summary metric, in both)."""

from __future__ import annotations

import re

import pytest

from featavg.api import run_sweep
from featavg.cli import main
from featavg.config import ConfigError
from featavg.experiments.registry import EXPERIMENTS
from featavg.experiments.summary import metric_keys

EXP = "mnist-robustness"
TINY = {
    **EXPERIMENTS[EXP].tiny,
    "train": {**EXPERIMENTS[EXP].tiny["train"], "dataset": "mnist-5k", "model": "mlp"},
}
GRID = {"grouping": ["parity", "halves"]}
TIMING = re.compile(r"(^|_)attack_s_|attack_wall_s|wall_s($|_)|(^|_)seconds($|_)")


def _sweep(root):
    return run_sweep(EXP, GRID, overrides=TINY, root=root, progress=False, device="cpu")


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """The same two-cell sweep computed twice, in two run stores (nothing shared)."""
    return [_sweep(tmp_path_factory.mktemp(f"store{i}")) for i in range(2)]


@pytest.mark.slow
def test_timings_are_provenance_never_results(sweeps):
    sweep = sweeps[0]
    header = (sweep.directory / "sweep.csv").read_text().splitlines()[0].split(",")
    assert not [c for c in header if TIMING.search(c)], header
    for cell in sweep.cells:
        keys = metric_keys(cell.summary)
        assert keys and not [k for k in keys if TIMING.search(k)], keys
        timings = cell.summary["provenance"]["timings_s"]
        assert timings and all(k.startswith("attack_s_") for k in timings), timings


@pytest.mark.slow
def test_the_same_real_data_sweep_twice_gives_the_same_table(sweeps):
    first, second = ((s.directory / "sweep.csv").read_bytes() for s in sweeps)
    assert first == second


@pytest.mark.slow
def test_a_timing_cannot_be_plotted(sweeps, capsys):
    """``sweep.png`` plots only results: a timing is not one of them."""
    from featavg.sweep.results import sweep_figure

    sweep = sweeps[0]
    (key, *_) = sweep.cells[0].summary["provenance"]["timings_s"]
    with pytest.raises(ConfigError, match=rf"--metric {key}: not a scalar result"):
        sweep_figure(EXP, GRID, sweep.cells, [key])
    argv = ["sweep", EXP, "--grid", "grouping=parity,halves", "--preset", "tiny", "--quiet",
            "--set", "train.dataset=mnist-5k", "--set", "train.model=mlp",
            "--out", str(sweep.directory), "--metric", key]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--metric {key}" in err, err
