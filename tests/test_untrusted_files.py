"""Untrusted files and paths: corrupt, truncated, tampered or wrongly typed run files are
detected (manifest hashes) and recomputed, never a crash of a rerun, ``load`` or the
report; output paths no run can take are refused before any compute with one line; nothing
is written through a symbolic link or onto a device; a sweep record cannot lead a reader
outside its sweep, and a sweep directory is not taken over by another sweep."""

import dataclasses
import errno
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch

import featavg
from featavg import runs
from featavg.api import run_sweep
from featavg.cli import main
from featavg.config import ConfigError, build_config
from featavg.experiments.registry import EXPERIMENTS, get_experiment
from featavg.experiments.runner import run_experiment
from featavg.report import write_report
from featavg.runs import paths as out_paths
from featavg.runs.context import open_context
from featavg.runs.state import inspect_run
from featavg.sweep.record import cell_dirs, read_record

EXP = "synthetic-robustness"
TINY = dict(EXPERIMENTS[EXP].tiny)
TINY_ARGS = [
    "--set=data.d=60",
    "--set=data.k=4",
    "--set=data.n_train=80",
    "--set=data.n_test=40",
    "--set=train.steps=20",
    "--set=seeds=2",
    "--set=attack.radii=[0,2,4,8]",
]
SWEEP_EXP = "synthetic-alignment"
SMALL = {"data": {"d": 40, "k": 3, "n_train": 60, "n_test": 30}, "train": {"steps": 10}}


def config_json():
    return build_config(get_experiment(EXP).config_cls, TINY).model_dump(mode="json")


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "run"
    run_experiment(EXP, overrides=TINY, out=out, ctx=open_context("cpu"))
    return out


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if an experiment starts computing."""

    def refuse(*args, **kwargs):
        raise AssertionError("an experiment started computing")

    for name, exp in list(EXPERIMENTS.items()):
        monkeypatch.setitem(EXPERIMENTS, name, dataclasses.replace(exp, run=refuse))


# ---------------------------------------------------------------- tampered run files


def _nested(depth):
    return "[" * depth + "]" * depth


TAMPERS = {
    "summary truncated": lambda d: _truncate(d / "summary.json"),
    "summary not JSON": lambda d: (d / "summary.json").write_bytes(b"\xff\xfe{garbage"),
    "summary a list": lambda d: (d / "summary.json").write_text("[1, 2, 3]"),
    "summary nested 100000 deep": lambda d: (d / "summary.json").write_text(_nested(100_000)),
    "summary with a huge integer": lambda d: (d / "summary.json").write_text("9" * 100_000),
    "experiment wrongly typed": lambda d: _edit_summary(d, experiment=["x"] * 3),
    "config wrongly typed": lambda d: _edit_summary(d, config="not a config"),
    "a number changed": lambda d: _edit_summary(d, radius50_binary=123.0),
    "csv truncated": lambda d: _truncate(d / "robustness.csv"),
    "csv binary garbage": lambda d: (d / "robustness.csv").write_bytes(os.urandom(300)),
    "config.json of another run": lambda d: (d / "config.json").write_text('{"seed": 9}'),
    "manifest missing": lambda d: (d / "manifest.json").unlink(),
    "manifest wrongly typed": lambda d: (d / "manifest.json").write_text('{"files": [1]}'),
    "manifest points outside": lambda d: _point_outside(d),
    "a figure replaced": lambda d: (d / "robustness.png").write_bytes(b"\x89PNG not really"),
    "a table of another run added": lambda d: (d / "metrics.csv").write_text("a,b\n1,2\n"),
}


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_summary(directory, **changes):
    summary = json.loads((directory / "summary.json").read_text())
    summary.update(changes)
    (directory / "summary.json").write_text(json.dumps(summary))


def _point_outside(directory):
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"]["../../../etc/passwd"] = "0" * 64
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_a_tampered_run_is_never_a_hit_or_loaded(base_run, tmp_path, tamper):
    run = shutil.copytree(base_run, tmp_path / "run")
    TAMPERS[tamper](run)
    state = inspect_run(run, EXP, config_json())
    assert state.kind != "hit", state.detail
    assert len(state.detail) < 300 and "\n" not in state.detail
    with pytest.raises(ConfigError) as err:  # never read back as a result
        featavg.load(run)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


@pytest.mark.slow
def test_tampered_runs_are_recomputed_and_the_report_survives(base_run, tmp_path, capsys):
    before = json.loads((base_run / "summary.json").read_text())
    for i, tamper in enumerate(["summary nested 100000 deep", "csv truncated", "manifest missing"]):
        run = shutil.copytree(base_run, tmp_path / f"run{i}")
        TAMPERS[tamper](run)
        assert main(["run", EXP, *TINY_ARGS, "--out", str(run), "--quiet", "--device=cpu"]) == 0
        assert "done" in capsys.readouterr().out  # recomputed, not served
        loaded = featavg.load(run)
        assert {k: v for k, v in loaded.summary.items() if k != "provenance"} == {
            k: v for k, v in before.items() if k != "provenance"
        }
    # the report over a store holding a tampered run: one line at worst, never a traceback
    bad = shutil.copytree(base_run, tmp_path / "run-bad")
    TAMPERS["summary not JSON"](bad)
    code = main(["report", str(tmp_path / "run0"), "--out", str(tmp_path / "r.html")])
    assert code == 0 and (tmp_path / "r.html").stat().st_size > 1000
    assert main(["report", "--root", str(tmp_path), "--out", str(tmp_path / "r2.html")]) in (0, 2)
    assert len(capsys.readouterr().err.strip().splitlines()) <= 1


def test_a_fifo_or_link_in_a_run_is_never_read(base_run, tmp_path):
    run = shutil.copytree(base_run, tmp_path / "run")
    outside = tmp_path / "outside.json"
    outside.write_bytes((run / "summary.json").read_bytes())
    (run / "summary.json").unlink()
    (run / "summary.json").symlink_to(outside)  # same bytes, but a link: not ours
    state = inspect_run(run, EXP, config_json())
    assert state.kind == "foreign" and "symbolic link" in state.detail
    with pytest.raises(ConfigError, match="symbolic link"):
        featavg.load(run)
    (run / "summary.json").unlink()
    os.mkfifo(run / "summary.json")  # reading it would block forever
    assert inspect_run(run, EXP, config_json()).kind == "foreign"
    with pytest.raises(ConfigError, match="FIFO"):
        featavg.load(run)


# ---------------------------------------------------------------- output paths


def _out_cases(tmp_path):
    """(name, --out value, what must stay as it was)."""
    (tmp_path / "file").write_text("a user's file")
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "dirlink").symlink_to(target)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return [
        ("existing file", str(tmp_path / "file"), tmp_path / "file"),
        ("device", "/dev/null", None),
        ("link to a directory", str(tmp_path / "dirlink"), target),
        ("dangling link", str(tmp_path / "dangling"), None),
        ("FIFO", str(tmp_path / "fifo"), None),
        ("empty string", "", None),
        ("current directory", ".", None),
        ("parent directory", "..", None),
        ("name too long", str(tmp_path / ("x" * 300)), None),
        ("path too long", str(tmp_path / "/".join(["y" * 200] * 25)), None),
        ("inside a file", str(tmp_path / "file" / "run"), tmp_path / "file"),
        ("read-only directory", str(ro / "run"), ro),
    ]


def test_unusable_output_paths_are_refused_before_any_compute(tmp_path, capsys, no_compute):
    cases = _out_cases(tmp_path)
    before = {
        name: sorted(os.listdir(keep)) if keep and keep.is_dir() else None
        for name, _, keep in cases
    }
    try:
        for name, out, keep in cases:
            code = main(["run", EXP, *TINY_ARGS, "--out", out, "--quiet", "--device=cpu"])
            err = capsys.readouterr().err.strip()
            assert code == 2, name
            assert len(err.splitlines()) == 1 and len(err) < 400, (name, err)
            if keep is not None and keep.is_dir():
                assert sorted(os.listdir(keep)) == before[name], name  # nothing written there
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
        assert (tmp_path / "file").read_text() == "a user's file"
        assert not (tmp_path / "nowhere").exists()
    finally:
        (tmp_path / "ro").chmod(0o755)


def _full_disk(monkeypatch, under, after=0):
    """``os.write`` to files under ``under`` raises ENOSPC (after ``after`` good writes)."""
    real = os.write
    count = [0]

    def write(fd, data):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if path.startswith(str(under)):
            count[0] += 1
            if count[0] > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


def test_a_full_disk_is_refused_before_compute(tmp_path, monkeypatch, capsys, no_compute):
    _full_disk(monkeypatch, tmp_path)
    assert main(["run", EXP, *TINY_ARGS, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "no space left" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and os.listdir(tmp_path) == []


def test_a_disk_filling_up_mid_write_keeps_the_old_run(base_run, tmp_path, monkeypatch, capsys):
    run = shutil.copytree(base_run, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    other = [a for a in TINY_ARGS if "seeds" not in a] + ["--set=seeds=1"]
    monkeypatch.setattr(out_paths, "probe_write", lambda directory: None)  # passes the check
    _full_disk(monkeypatch, tmp_path, after=2)
    code = main(["run", EXP, *other, "--out", str(run), "--force", "--quiet", "--device=cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no space left" in err and len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # the old run, whole
    assert not (tmp_path / runs.STAGING).exists()


def test_nothing_is_written_through_a_link_or_onto_a_device(tmp_path):
    target = tmp_path / "target.html"
    target.write_text("mine")
    (tmp_path / "link.html").symlink_to(target)
    for path in (tmp_path / "link.html", Path("/dev/null"), tmp_path):
        with pytest.raises(ConfigError, match="refusing to replace"):
            runs.write_bytes(path, b"report")
    assert target.read_text() == "mine" and (tmp_path / "link.html").is_symlink()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    # a planted staging folder that is a link: refused, nothing staged through it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / runs.STAGING).symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="never writes through"):
        runs.write_run_files(tmp_path / "run", {"summary.json": b"{}"})
    assert os.listdir(elsewhere) == []
    with pytest.raises(ValueError, match="plain file names"):
        runs.write_run_files(tmp_path / "run2", {"../escape.json": b"{}"})
    assert not (tmp_path / "escape.json").exists()


# ---------------------------------------------------------------- sweeps


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweeps") / "sweep"
    return run_sweep(SWEEP_EXP, {"net.m": [2, 3]}, overrides=SMALL, out=out, progress=False)


def test_a_sweep_record_never_leads_outside_the_sweep(sweep, tmp_path):
    copy = shutil.copytree(sweep.directory, tmp_path / "sweep")
    outside = shutil.copytree(sweep.cells[0].directory, tmp_path / "outside-run")
    (copy / "cells" / "linked").symlink_to(outside)
    record = read_record(copy)
    assert record is not None
    listed = [c["directory"] for c in record["cells"]]
    record["cells"] = [
        {"directory": d}
        for d in [
            *listed,
            "../outside-run",
            str(outside),
            "cells/../../outside-run",
            "cells/linked",
            "cells/x/y",
            "cells/.hidden",
            5,
        ]
    ]
    (copy / "sweep.json").write_text(json.dumps(record))
    found = cell_dirs(copy, read_record(copy))
    assert found == [copy / d for d in listed]  # exactly the real cells, in order
    assert all(p.resolve().is_relative_to(copy.resolve()) for p in found)
    # a record listing nothing usable: no fallback to reading whatever is around
    record["cells"] = [{"directory": "../outside-run"}]
    (copy / "sweep.json").write_text(json.dumps(record))
    assert cell_dirs(copy, read_record(copy)) == []
    # the report of the sweep follows the record the same way
    (outside / "summary.json").write_text(
        (outside / "summary.json").read_text().replace(SWEEP_EXP, "OUTSIDE-MARKER")
    )
    record["cells"] = [{"directory": d} for d in [*listed, "../outside-run", "cells/linked"]]
    (copy / "sweep.json").write_text(json.dumps(record))
    html = write_report([copy], tmp_path / "report.html").read_text()
    assert "OUTSIDE-MARKER" not in html


def test_a_sweep_directory_is_not_taken_by_another_sweep(sweep, tmp_path, capsys):
    copy = shutil.copytree(sweep.directory, tmp_path / "sweep")
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    args = ["sweep", SWEEP_EXP, "--grid", "net.m=4", "--out", str(copy), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "another sweep" in err and "--force" in err
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    # a run directory, a link or a file as a sweep's --out: refused, nothing written
    run = tmp_path / "a-run"
    shutil.copytree(sweep.cells[0].directory, run)
    (tmp_path / "link").symlink_to(copy)
    for out in (run, tmp_path / "link", run / "summary.json"):
        assert main(["sweep", SWEEP_EXP, "--grid", "net.m=2,3", "--out", str(out)]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    # the same sweep again: welcome (all cached)
    again = run_sweep(SWEEP_EXP, {"net.m": [2, 3]}, overrides=SMALL, out=copy, progress=False)
    assert all(c.cached for c in again.cells)


# ---------------------------------------------------------------- the trained-model cache

# a model that trains in about a second on the 5000-digit MNIST subset (no MNIST files here)
MODEL = {"dataset": "mnist", "model": "mlp", "train_size": 200, "test_size": 50}


def _truncate_model(d):
    data = (d / "model.pt").read_bytes()
    (d / "model.pt").write_bytes(data[: len(data) // 2])


def _flip_a_weight_byte(d):
    data = bytearray((d / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # still a loadable zip, maybe: the manifest tells
    (d / "model.pt").write_bytes(bytes(data))


def _truncate_manifest(d):
    (d / "manifest.json").write_text('{"files": {')


MODEL_TAMPERS = {
    "model.pt truncated": _truncate_model,
    "model.pt byte flipped": _flip_a_weight_byte,
    "model.pt emptied": lambda d: (d / "model.pt").write_bytes(b""),
    "manifest truncated": _truncate_manifest,
    "summary truncated": lambda d: (d / "summary.json").write_text('{"experiment": "tr'),
}


@pytest.fixture
def data_once(monkeypatch):
    """Load the dataset once per test (2-3 s each time otherwise), as every call would."""
    from featavg.trained_models import cache

    loaded = {}
    real = cache.load_job_data

    def load(cfg):
        key = cfg.model_dump_json()
        if key not in loaded:
            loaded[key] = real(cfg)
        return loaded[key]

    monkeypatch.setattr(cache, "load_job_data", load)


@pytest.mark.slow  # trains the MLP on the 5000-digit subset six times (under a second each)
def test_a_tampered_cached_model_is_detected_and_retrained(tmp_path, data_once):
    from featavg.trained_models import job_config, load_trained_model, train_model

    cfg = job_config(None, {**MODEL, "sgd": {"epochs": 1}})
    first = train_model(cfg, open_context("cpu", tmp_path))
    weights = {k: v.clone() for k, v in first.model.state_dict().items()}
    for name, tamper in MODEL_TAMPERS.items():
        tamper(first.directory)
        assert inspect_run(first.directory, "train", first.summary["config"]).kind != "hit"
        again = train_model(cfg, open_context("cpu", tmp_path))  # never a crash, never a hit
        assert not again.cached and again.directory == first.directory, name
        # retrained bit-identically (same seed), and whole again: a hit
        for key, value in again.model.state_dict().items():
            assert torch.equal(value, weights[key]), (name, key)
        assert inspect_run(first.directory, "train", first.summary["config"]).kind == "hit"
    model, _ = load_trained_model(first.directory)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    # a FIFO planted as model.pt is never opened: refused in one line, left in place
    fifo = first.directory / "model.pt"
    fifo.unlink()
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"model\.pt \(a FIFO\)") as err:
        train_model(cfg, open_context("cpu", tmp_path))
    assert "\n" not in str(err.value) and stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.slow
def test_an_unreadable_progress_checkpoint_is_discarded_not_fatal(tmp_path, data_once):
    from featavg.trained_models import PROGRESS, job_config, train_model

    cfg = job_config(None, {**MODEL, "sgd": {"epochs": 1}})
    reference = train_model(cfg, open_context("cpu", tmp_path))
    progress = reference.directory.parent / PROGRESS / f"{reference.directory.name}.pt"
    for junk in (b"", b"PK\x03\x04 not a zip", torch_bytes({"format": "other"})):
        progress.parent.mkdir(exist_ok=True)
        progress.write_bytes(junk)
        with pytest.warns(UserWarning, match="discarded, training starts over"):
            trained = train_model(cfg, open_context("cpu", tmp_path), force=True)
        assert not progress.exists()
        for key, value in trained.model.state_dict().items():
            assert torch.equal(value, reference.model.state_dict()[key]), key


def torch_bytes(obj):
    """``obj`` as torch.save writes it."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# ---- a killed training's progress file, damaged or forged ---------------------------------

SIX_EPOCHS = [
    "train", "--data", "mnist", "--model", "mlp", "--epochs", "6", "--set", "train_size=200",
    "--set", "test_size=50", "--device", "cpu", "--quiet",
]  # fmt: skip


def _weights(root):
    (directory,) = [p for p in (root / "models").iterdir() if not p.name.startswith(".")]
    return torch.load(directory / "model.pt", weights_only=True)["state_dict"]


@pytest.fixture
def killed_at_epoch_2(tmp_path, data_once, monkeypatch, capsys):
    """`featavg train` of 6 epochs stopped during epoch 3 (after epoch 2's progress file):
    (its root, the progress file's bytes, the uninterrupted run's final weights)."""
    from featavg.training.image_sgd import ImageSGD

    assert main([*SIX_EPOCHS, "--root", str(tmp_path / "straight")]) == 0
    real = ImageSGD._epoch

    def stop(self, epoch, *args, **kwargs):
        if epoch == 3:
            raise KeyboardInterrupt
        return real(self, epoch, *args, **kwargs)

    root = tmp_path / "killed"
    monkeypatch.setattr(ImageSGD, "_epoch", stop)
    assert main([*SIX_EPOCHS, "--root", str(root)]) == 130  # Ctrl-C: one line, exit 130
    monkeypatch.setattr(ImageSGD, "_epoch", real)
    capsys.readouterr()
    (progress,) = (root / "models" / ".featavg-progress").iterdir()
    return root, progress, _weights(tmp_path / "straight")


def _flip_a_bit(path):
    from featavg.training.checkpoint import read_progress

    weight = next(iter(read_progress(path)["models"][0].values()))
    data = bytearray(path.read_bytes())
    at = bytes(data).find(bytes(weight.untyped_storage()))
    data[at + 3] ^= 0x10
    path.write_bytes(bytes(data))


def _forge(change):
    """Edit the training state and write it back with a matching checksum."""

    def tamper(path):
        from featavg.training.checkpoint import read_progress, save_progress

        state = read_progress(path)
        change(state)
        save_progress(path, state)

    return tamper


def _nan_weight(state):
    next(iter(state["models"][0].values())).reshape(-1)[0] = float("nan")


PROGRESS_TAMPERS = {
    "a flipped bit": _flip_a_bit,
    "epoch 99": _forge(lambda s: s.__setitem__("epoch", 99)),
    "epoch -3": _forge(lambda s: s.__setitem__("epoch", -3)),
    "a NaN weight": _forge(_nan_weight),
    "an RNG state of the wrong size": _forge(
        lambda s: s["rng"].__setitem__("torch", torch.zeros(7, dtype=torch.uint8))
    ),
}


@pytest.mark.slow  # trains the MLP six epochs three times (about a second each)
@pytest.mark.parametrize("tamper", PROGRESS_TAMPERS.values(), ids=PROGRESS_TAMPERS.keys())
def test_a_killed_trainings_bad_progress_file_is_discarded(killed_at_epoch_2, capsys, tamper):
    """Once: a flipped bit cached other weights as valid, epoch 99 cached the 2-epoch model
    as the 6-epoch one, epoch -3 trained epochs -2..6, a NaN weight failed every rerun
    (exit 3) and a wrong-size RNG state gave a traceback. Now: discarded with one line,
    trained from scratch, equal to the uninterrupted run."""
    from featavg.training.checkpoint import ProgressDiscarded

    root, progress, reference = killed_at_epoch_2
    tamper(progress)
    with pytest.warns(ProgressDiscarded) as caught:
        assert main([*SIX_EPOCHS, "--root", str(root)]) == 0
    (warning,) = caught
    assert str(progress) in str(warning.message) and "\n" not in str(warning.message)
    got = _weights(root)
    assert all(torch.equal(got[k], v) for k, v in reference.items())
    assert not progress.exists()  # the finished training removed its progress file


@pytest.mark.slow
def test_an_intact_progress_file_of_a_killed_training_resumes(killed_at_epoch_2, recwarn):
    root, progress, reference = killed_at_epoch_2
    assert main([*SIX_EPOCHS, "--root", str(root)]) == 0
    assert not recwarn.list
    got = _weights(root)
    assert all(torch.equal(got[k], v) for k, v in reference.items())


@pytest.mark.slow
def test_a_directory_at_the_progress_path_is_one_line_before_training(killed_at_epoch_2, capsys):
    root, progress, _ = killed_at_epoch_2
    progress.unlink()
    progress.mkdir()
    assert main([*SIX_EPOCHS, "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(progress) in err and "a directory" in err
    assert progress.is_dir()  # not removed: it is not ours to delete


@pytest.mark.slow
def test_the_discard_notice_is_one_line_on_stderr(tmp_path):
    """The real command in a child process: exit 0, and stderr holds exactly the notice."""
    import subprocess
    import sys

    from featavg.training.checkpoint import save_progress

    root = tmp_path / "runs"
    progress = root / "models" / ".featavg-progress" / "x.pt"  # not the run's: untouched
    progress.parent.mkdir(parents=True)
    save_progress(progress, {"format": "other"})
    argv = ["1" if a == "6" else a for a in SIX_EPOCHS]  # one epoch
    code = "import sys; from featavg.cli import main; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.run(
        [sys.executable, "-c", code, *argv, "--root", str(root)], env=env, capture_output=True
    )
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    (model_dir,) = [p for p in (root / "models").iterdir() if not p.name.startswith(".")]
    ours = progress.with_name(f"{model_dir.name}.pt")
    progress.rename(ours)
    shutil.rmtree(model_dir)
    again = subprocess.run(
        [sys.executable, "-c", code, *argv, "--root", str(root)], env=env, capture_output=True
    )
    assert again.returncode == 0
    lines = again.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert str(ours) in lines[0] and lines[0].endswith("discarded, training starts over")
