"""A seeded sample of the image-file fuzz campaign (all of it: scripts/fuzz_image_files.py):
hostile idx / idx.gz files, CIFAR-10 pickles and MNIST 5k CSVs, each loaded in a forked
child with a time limit and an address-space cap. Each must be refused with one printable
line naming its file, or load exactly the arrays the file holds (see
tests/image_file_cases.py); never a traceback, a hang or a memory runaway."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import image_file_cases as cases

#: cases every run includes: one per kind of bomb or overflow the readers once failed on
ALWAYS = {
    ("idx", "dims overflow int64"),
    ("idx", "sparse 42 GB, consistent labels"),
    ("idx", "gz bomb 7M images, consistent labels"),
    ("cifar", "labels nested bomb depth 60"),
    ("cifar", "tuple key hash bomb"),
    ("cifar", "labels floats 0.5"),
    ("csv", "gz bomb 200 MB zeros"),
}
PER_SURFACE = 5


def _sample() -> list[cases.Case]:
    everything = cases.all_cases(seed=0)
    rng = random.Random(2025)
    picked = [c for c in everything if (c.surface, c.name) in ALWAYS]
    assert len(picked) == len(ALWAYS)
    for surface in ("idx", "cifar", "csv"):
        rest = [c for c in everything if c.surface == surface and c not in picked]
        picked += rng.sample(rest, PER_SURFACE)
    return picked


@pytest.mark.parametrize("case", _sample(), ids=lambda c: f"{c.surface}: {c.name}")
def test_a_hostile_image_file_is_refused_in_one_line_or_loaded_exactly(
    case: cases.Case, tmp_path: Path
) -> None:
    import featavg.data.images  # noqa: F401 - imported before the fork, not in each child

    setup = case.build(tmp_path / "data")
    facts, _, growth = cases.run_case(setup, timeout=120.0)
    verdict, detail = cases.judge(setup, facts, growth)
    assert verdict == "ok", f"{verdict}: {detail}"


def test_the_cli_refuses_a_labels_bomb_with_exit_2_and_one_line(tmp_path: Path) -> None:
    """``featavg train`` on a CIFAR directory whose labels are a 60-deep shared nest:
    exit 2, one line naming the file, nothing written (the bomb once ran until the memory
    was gone)."""
    bomb = next(c for c in cases.cifar_cases() if c.name == "labels nested bomb depth 60")
    setup = bomb.build(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    argv = ["train", "--data", "cifar10", "--data-dir", str(setup.data_dir), "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    code = "import sys; from featavg.cli import entry; sys.argv[0] = 'featavg'; entry()"
    out = subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    lines = out.stderr.splitlines()
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(lines) == 1 and "data_batch_1" in lines[0] and "Traceback" not in out.stderr
    assert list(work.iterdir()) == []
