"""Run directories: a cache that knows the code and every file, no silent overwrite, whole
directories even under SIGKILL, file modes as the umask says, and separate report pages."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import featavg
from featavg import runs
from featavg.cli import main
from featavg.config import ConfigError, build_config
from featavg.experiments.registry import EXPERIMENTS, get_experiment
from featavg.experiments.runner import run_experiment
from featavg.reproduction import reproduce
from featavg.runs import files, identity, staging
from featavg.runs.context import open_context
from featavg.runs.state import diff_keys, inspect_run
from kill_points import wait_for

EXP = "synthetic-robustness"  # its tiny config runs in about 2 s
TINY = dict(EXPERIMENTS[EXP].tiny)
OTHER = {**TINY, "seed": 7}  # another config of the same experiment


def config_of(overrides, name=EXP):
    return build_config(get_experiment(name).config_cls, overrides).model_dump(mode="json")


def contents(directory):
    """{name: bytes} of every entry (hidden ones included): the whole directory."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def config_file(tmp_path, overrides):
    """A YAML (here: JSON, a subset) config file for ``featavg run --config``."""
    path = tmp_path / f"cfg-{len(list(tmp_path.glob('cfg-*')))}.yaml"
    path.write_text(json.dumps(overrides))
    return str(path)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A finished tiny run; tests copy it rather than run it again."""
    out = tmp_path_factory.mktemp("base") / "run"
    result = run_experiment(EXP, overrides=TINY, out=out, ctx=open_context("cpu"))
    assert not result.cached
    return out


def copy_of(base_run, tmp_path, name="run"):
    return shutil.copytree(base_run, tmp_path / name)


# ---------------------------------------------------------------- the code's fingerprint


def test_fingerprint_follows_sources_and_templates_not_bytecode(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "report" / "templates").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "report" / "templates" / "page.html").write_text("<p>{{ x }}</p>")
    first = runs.fingerprint_tree(pkg)
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0" * 10)
    (pkg / ".a.py.swp").write_text("editor")
    assert runs.fingerprint_tree(pkg) == first
    (pkg / "a.py").write_text("x = 2\n")
    second = runs.fingerprint_tree(pkg)
    assert second != first
    (pkg / "report" / "templates" / "page.html").write_text("<p>{{ y }}</p>")
    assert runs.fingerprint_tree(pkg) not in (first, second)
    (pkg / "report" / "templates" / "page.html").rename(pkg / "report" / "templates" / "b.html")
    assert runs.fingerprint_tree(pkg) not in (first, second)  # the name counts too


def test_fingerprint_is_of_the_installed_package_and_computed_once(monkeypatch):
    package = Path(featavg.__file__).resolve().parent
    first = runs.source_fingerprint()
    assert first == runs.fingerprint_tree(package)
    # every run asks for it: the package is read once per process, then remembered
    walks = []
    monkeypatch.setattr(identity, "fingerprint_tree", lambda root: walks.append(root) or "other")
    assert [runs.source_fingerprint() for _ in range(3)] == [first] * 3 and walks == []


def test_run_directory_hash_and_provenance_carry_the_fingerprint(base_run, monkeypatch):
    cfg = config_of(TINY)
    before = runs.run_dir(EXP, cfg)
    summary = json.loads((base_run / "summary.json").read_text())
    assert summary["provenance"]["source_fingerprint"] == runs.source_fingerprint()
    assert "git_commit" in summary["provenance"]
    monkeypatch.setattr(identity, "source_fingerprint", lambda: "0" * 16)
    assert runs.run_dir(EXP, cfg) != before


# ---------------------------------------------------------------- what a cache hit needs


def test_stale_code_run_is_not_a_cache_hit(base_run, tmp_path, monkeypatch):
    run = copy_of(base_run, tmp_path)
    cfg = config_of(TINY)
    assert runs.cached_summary(run, EXP, cfg) is not None
    assert run_experiment(EXP, overrides=TINY, out=run).cached
    original = contents(run)
    monkeypatch.setattr(identity, "source_fingerprint", lambda: "f" * 16)
    assert runs.cached_summary(run, EXP, cfg) is None
    # an explicit --out made by other code: refused without --force, left as it was
    with pytest.raises(ConfigError, match="made by other code") as err:
        run_experiment(EXP, overrides=TINY, out=run, ctx=open_context("cpu"))
    assert str(run) in str(err.value) and "\n" not in str(err.value)
    assert contents(run) == original
    redone = run_experiment(EXP, overrides=TINY, out=run, force=True, ctx=open_context("cpu"))
    assert not redone.cached
    assert redone.summary["provenance"]["source_fingerprint"] == "f" * 16
    assert runs.cached_summary(run, EXP, cfg) is not None
    # default directories: other code, another directory, recomputed there
    fresh = run_experiment(EXP, overrides=TINY, ctx=open_context("cpu", tmp_path / "runs"))
    assert not fresh.cached and fresh.directory == runs.run_dir(EXP, cfg, tmp_path / "runs")


@pytest.mark.parametrize(
    "tamper",
    ["csv", "figure", "config", "stray csv", "stray png", "missing", "manifest", "summary"],
)
def test_a_changed_or_extra_file_is_a_miss(base_run, tmp_path, tamper):
    run = copy_of(base_run, tmp_path)
    cfg = config_of(TINY)
    if tamper == "csv":
        (run / "robustness.csv").write_text((run / "robustness.csv").read_text() + "1,2\n")
    elif tamper == "figure":
        (run / "robustness.png").write_bytes((run / "robustness.png").read_bytes()[:-1] + b"\1")
    elif tamper == "config":  # config.json of another run, summary untouched
        (run / "config.json").write_text(json.dumps(config_of(OTHER), indent=2) + "\n")
    elif tamper == "stray csv":
        (run / "left_over.csv").write_text("a\n1\n")
    elif tamper == "stray png":
        shutil.copy(run / "robustness.png", run / "old_figure.png")
    elif tamper == "missing":
        (run / "robustness.png").unlink()
    elif tamper == "manifest":
        (run / "manifest.json").unlink()
    else:  # the summary's numbers changed after the manifest was written
        summary = json.loads((run / "summary.json").read_text())
        summary["provenance"]["wall_time_s"] += 1
        (run / "summary.json").write_text(json.dumps(summary))
    assert inspect_run(run, EXP, cfg).kind == "damaged"
    assert runs.cached_summary(run, EXP, cfg) is None


def test_a_damaged_run_is_recomputed_in_place(base_run, tmp_path):
    run = copy_of(base_run, tmp_path)
    (run / "left_over.csv").write_text("a\n1\n")
    (run / "robustness.csv").write_text("garbage\n")
    result = run_experiment(EXP, overrides=TINY, out=run, ctx=open_context("cpu"))
    assert not result.cached
    assert not (run / "left_over.csv").exists()
    assert (run / "robustness.csv").read_bytes() == (base_run / "robustness.csv").read_bytes()
    assert run_experiment(EXP, overrides=TINY, out=run).cached


def test_a_hit_ignores_hidden_leftovers(base_run, tmp_path):
    run = copy_of(base_run, tmp_path)
    (run / ".robustness.csv.1a2b3c4d.tmp").write_text("half a file")
    assert runs.cached_summary(run, EXP, config_of(TINY)) is not None


# ---------------------------------------------------------------- no silent overwrite


def test_different_config_out_is_refused_cli_and_api(base_run, tmp_path, capsys):
    run = copy_of(base_run, tmp_path)
    original = (run / "summary.json").read_bytes()
    everything = contents(run)
    code = main(["run", EXP, "--config", config_file(tmp_path, OTHER), "--out", str(run)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert str(run) in err[0] and "another config (seed)" in err[0] and "--force" in err[0]
    with pytest.raises(ConfigError, match=r"another config \(seed\)"):
        featavg.run(EXP, out=run, seed=7, **TINY)
    with pytest.raises(ConfigError, match="holds a run of synthetic-robustness"):
        featavg.run("synthetic-alignment", out=run, **EXPERIMENTS["synthetic-alignment"].tiny)
    assert (run / "summary.json").read_bytes() == original
    assert contents(run) == everything


def test_force_replaces_the_whole_run(base_run, tmp_path, capsys):
    run = copy_of(base_run, tmp_path)
    old = set(contents(run))
    other = "synthetic-alignment"  # another experiment: other file names
    overrides = dict(EXPERIMENTS[other].tiny)
    argv = ["run", other, "--config", config_file(tmp_path, overrides), "--out", str(run)]
    assert main([*argv, "--quiet", "--force", "--device", "cpu"]) == 0
    manifest = json.loads((run / "manifest.json").read_text())["files"]
    assert set(contents(run)) == set(manifest) | {"manifest.json"}
    assert old - set(manifest) - {"manifest.json"} == {"robustness.csv", "robustness.png"}
    assert json.loads((run / "summary.json").read_text())["experiment"] == other
    assert runs.cached_summary(run, other, config_of(overrides, other)) is not None
    assert not (tmp_path / runs.STAGING).exists()  # nothing left beside it


def test_files_featavg_did_not_write_are_never_replaced(base_run, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    for force in (False, True):
        with pytest.raises(ConfigError, match=r"did not write \(notes.txt\)"):
            run_experiment(EXP, overrides=TINY, out=mine, force=force)
    assert contents(mine) == {"notes.txt": b"precious"}
    # a finished run with a user's file beside it is still a hit, but --force refuses
    run = copy_of(base_run, tmp_path)
    (run / "sub").mkdir()
    assert run_experiment(EXP, overrides=TINY, out=run).cached
    with pytest.raises(ConfigError, match=r"did not write \(sub/\)"):
        run_experiment(EXP, overrides=TINY, out=run, force=True)
    assert (run / "sub").is_dir()


def test_an_unfinished_run_needs_force(tmp_path):
    run = tmp_path / "half"
    run.mkdir()
    (run / "robustness.csv").write_text("garbage\n")
    with pytest.raises(ConfigError, match=r"unfinished run \(no summary.json\)"):
        run_experiment(EXP, overrides=TINY, out=run)
    assert run_experiment(EXP, overrides=TINY, out=run, force=True, ctx=open_context("cpu")).summary


def test_diff_keys_names_dotted_fields():
    a = {"seed": 0, "train": {"lr": 0.1, "steps": 5}, "x": [1]}
    b = {"seed": 0, "train": {"lr": 0.2, "steps": 5}, "x": [2], "y": 1}
    assert diff_keys(a, b) == ["train.lr", "x", "y"]


# ---------------------------------------------------------------- whole directories


def test_write_run_files_replaces_a_directory_whole(tmp_path):
    cell = tmp_path / "cells" / "c"
    runs.write_run_files(cell, {"a.csv": b"1", "summary.json": b"{}"})
    runs.write_run_files(cell, {"b.csv": b"2", "summary.json": b"[]"})
    assert contents(cell) == {"b.csv": b"2", "summary.json": b"[]"}
    assert not (cell.parent / runs.STAGING).exists()


def test_detached_cell_files_replace_the_cell_whole(base_run, tmp_path):
    """The Dask path: a worker's files (manifest included) land through the same swap and
    make a cache hit; the cell's previous run leaves nothing behind."""
    from featavg.sweep.executors import run_cells_detached, store_files

    cell = copy_of(base_run, tmp_path, "cell")
    (cell / "old_table.csv").write_text("a\n1\n")
    cfg = config_of(OTHER)
    (files,) = run_cells_detached(EXP, [cfg], "cpu")
    summary = store_files(cell, files)
    assert summary["config"] == cfg and contents(cell) == files
    assert runs.cached_summary(cell, EXP, cfg) is not None


def test_a_failed_write_leaves_the_old_run(tmp_path):
    cell = tmp_path / "c"
    runs.write_run_files(cell, {"a.csv": b"1"})
    with pytest.raises(RuntimeError), runs.staged_dir(cell) as new:
        (new / "b.csv").write_text("2")
        raise RuntimeError("killed in the middle")
    assert contents(cell) == {"a.csv": b"1"}
    assert not (tmp_path / runs.STAGING).exists()


def test_a_failed_rename_in_puts_the_old_run_back(tmp_path, monkeypatch):
    cell = tmp_path / "c"
    runs.write_run_files(cell, {"a.csv": b"1"})
    rename = os.rename

    def refuse_new(src, dst):  # the old run goes aside, the new one fails to come in
        if ".new-" in str(src):
            raise OSError("disk gone")
        rename(src, dst)

    monkeypatch.setattr(staging.os, "rename", refuse_new)
    with pytest.raises(OSError, match="disk gone"):
        runs.write_run_files(cell, {"b.csv": b"2"})
    assert contents(cell) == {"a.csv": b"1"}
    assert not (tmp_path / runs.STAGING).exists()


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    staging = tmp_path / runs.STAGING
    tag = files.host_tag()
    dead = staging / f"run.new-{tag}-{dead_pid()}-abcd1234"
    live = staging / f"run.old-{tag}-{os.getpid()}-abcd1234"
    other_host = staging / f"run.new-{'0' * 6 if tag != '0' * 6 else '1' * 6}-{dead_pid()}-ab"
    for d in (dead, live, other_host):
        d.mkdir(parents=True)
        (d / "summary.json").write_text("{}")
    assert runs.clean_leftovers(tmp_path) == [dead]
    assert live.is_dir() and other_host.is_dir()


# a figure write that never ends: the kill lands while the run is being written
SLOW_FIGURE = """
import pathlib, time
import featavg.runs as runs
_write = runs.write_figure
def slow(path, fig):
    _write(path, fig)
    pathlib.Path({marker!r}).touch()
    time.sleep(600)  # keeps the writer alive, mid-write, until it is killed
runs.write_figure = slow
from featavg.cli import entry
entry()
"""


def kill_mid_write(tmp_path, argv):
    marker = tmp_path / "writing-figure"
    marker.unlink(missing_ok=True)
    code = SLOW_FIGURE.format(marker=str(marker))
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(marker.exists, lambda: proc.poll() is None, "the figure write")
    except AssertionError:
        proc.kill()
        raise AssertionError(proc.communicate(timeout=60)[1].decode()[-2000:]) from None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


@pytest.mark.slow
def test_sigkill_mid_write_leaves_the_old_run_or_none(base_run, tmp_path):
    # replacing a finished run (--force, another config): the old run stays whole
    run = copy_of(base_run, tmp_path)
    before = contents(run)
    other = config_file(tmp_path, OTHER)
    kill_mid_write(tmp_path, ["run", EXP, "--config", other, "--out", str(run), "--force"])
    assert contents(run) == before
    assert runs.cached_summary(run, EXP, config_of(TINY)) is not None
    leftovers = list((tmp_path / runs.STAGING).iterdir())
    assert len(leftovers) == 1 and (leftovers[0] / "config.json").is_file()
    # the next run recomputes cleanly and removes the leftovers
    args = ["run", EXP, "--config", other, "--out", str(run), "--force", "--quiet"]
    assert main([*args, "--device", "cpu"]) == 0
    assert runs.cached_summary(run, EXP, config_of(OTHER)) is not None
    assert not (tmp_path / runs.STAGING).exists()

    # a fresh directory: nothing at all appears, the next run starts from scratch
    fresh = tmp_path / "fresh"
    kill_mid_write(tmp_path, ["run", EXP, "--config", other, "--out", str(fresh)])
    assert not fresh.exists()
    assert not run_experiment(EXP, overrides=OTHER, out=fresh, ctx=open_context("cpu")).cached
    assert set(contents(fresh)) == set(contents(run))


def test_killed_between_the_two_renames_next_run_recomputes(base_run, tmp_path):
    """The one moment with no run in place: the old run set aside, the new one staged."""
    tag, pid = files.host_tag(), dead_pid()
    staging = tmp_path / runs.STAGING
    shutil.copytree(base_run, staging / f"run.old-{tag}-{pid}-0a0a0a0a" / "run")
    shutil.copytree(base_run, staging / f"run.new-{tag}-{pid}-0b0b0b0b")
    run = tmp_path / "run"
    result = run_experiment(EXP, overrides=TINY, out=run, ctx=open_context("cpu"))
    assert not result.cached and runs.cached_summary(run, EXP, config_of(TINY)) is not None
    assert not staging.exists()


# ---------------------------------------------------------------- file modes


# one interpreter, two umasks: a run through the runner and a single in-place file each
MODES = """
import json, os, pathlib, sys
from featavg import runs
from featavg.experiments.runner import run_experiment
root, tiny = pathlib.Path(sys.argv[1]), json.loads(sys.argv[2])
ctx = runs.open_context("cpu")
for umask in (0o022, 0o077):
    os.umask(umask)
    run_experiment("synthetic-robustness", overrides=tiny, out=root / f"{umask:o}" / "run", ctx=ctx)
    runs.write_bytes(root / f"page-{umask:o}.html", b"x")
"""


@pytest.mark.slow
def test_modes_follow_the_umask(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", MODES, str(tmp_path), json.dumps(TINY)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    for umask, file_mode, dir_mode in [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]:
        run = tmp_path / f"{umask:o}" / "run"
        modes = {p.name: p.stat().st_mode & 0o777 for p in run.iterdir()}
        assert len(modes) == 5 and set(modes.values()) == {file_mode}, modes
        assert run.stat().st_mode & 0o777 == dir_mode
        assert run.parent.stat().st_mode & 0o777 == dir_mode
        assert (tmp_path / f"page-{umask:o}.html").stat().st_mode & 0o777 == file_mode


# ---------------------------------------------------------------- pages


def test_report_and_reproduce_keep_their_own_pages(tmp_path):
    root = tmp_path / "runs"
    plan = [(EXP, TINY)]
    _, page = reproduce(root, device="cpu", progress=False, experiments=plan)
    assert page == root / "reproduce.html"
    reproduced = page.read_bytes()
    assert main(["report", "--root", str(root)]) == 0
    report = root / "report.html"
    assert report.is_file() and page.read_bytes() == reproduced
    reported = report.read_bytes()
    again, page_again = reproduce(root, device="cpu", progress=False, experiments=plan)
    assert all(r.cached for r in again) and page_again == page
    assert report.read_bytes() == reported
