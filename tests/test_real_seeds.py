"""Seeds as the unit of evidence on real data: a run of S seeds pools S single-seed runs
(each cached on its own, attacked on the same points), the pooled verdict is the plain
computation on their per-point results, and a process pool computing the seeds as cells
gives the same numbers as one process."""

import json
import pathlib

import numpy as np
import pytest

import featavg
from featavg.api import run_sweep
from featavg.experiments.registry import EXPERIMENTS
from featavg.metrics.pooled import pooled_gap

EXP = "mnist-robustness"
# the tiny config on the real 5000-digit subset
TINY = {**EXPERIMENTS[EXP].tiny, "train": {**EXPERIMENTS[EXP].tiny["train"], "dataset": "mnist-5k"}}


def correct(summary, readout):
    """(R, B) bool from a single-seed run's per-point record."""
    return np.array([[c == "1" for c in row] for row in summary["point_correct"][readout]])


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    return root, featavg.run(EXP, root=root, device="cpu", **{**TINY, "seeds": 2})


@pytest.mark.slow
def test_a_two_seed_run_pools_its_single_seed_runs(two_seeds):
    root, pooled = two_seeds
    s = pooled.summary
    assert s["seeds_pooled"] == [0, 1] and not s["verdict_ignores_training_randomness"]
    seed_runs = [json.loads((featavg.load(d).directory / "summary.json").read_text())
                 for d in s["seed_runs"]]  # fmt: skip
    assert [r["config"]["seed"] for r in seed_runs] == [0, 1]
    assert all(r["config"]["seeds"] == 1 and r["verdict_ignores_training_randomness"]
               for r in seed_runs)  # fmt: skip
    # the pooled comparison, computed plainly from the seed runs' per-point results
    binary = np.stack([correct(r, "binary") for r in seed_runs])
    tenclass = np.stack([correct(r, "group_argmax") for r in seed_runs])
    assert binary.shape[2] == s["points_attacked"] == 100  # the same points for both seeds
    reference = pooled_gap(binary, tenclass)
    rows = s["more_robust"]
    np.testing.assert_allclose([r["difference"] for r in rows], reference.mean)
    np.testing.assert_allclose([r["lo"] for r in rows], reference.lo)
    np.testing.assert_allclose([r["per_seed"] for r in rows], reference.per_seed.T)
    assert [r["verdict"] for r in rows] == reference.verdict
    # each seed's own gap is the seed run's one-seed comparison
    for i, run in enumerate(seed_runs):
        np.testing.assert_allclose(
            [r["difference"] for r in run["more_robust"]], [r["per_seed"][i] for r in rows]
        )
    # the scalars are means over the seeds, each seed's value kept
    acc = [r["clean_acc_binary"] for r in seed_runs]
    assert s["clean_acc_binary"] == pytest.approx(np.mean(acc))
    assert s["per_seed"]["clean_acc_binary"] == pytest.approx(acc)
    assert {"robustness", "gap", "alignment"} <= set(pooled.figures)
    assert "Pooled over 2 seed(s)" in s["more_robust_statement"]


@pytest.mark.slow
def test_adding_a_seed_reuses_the_finished_seed_runs(two_seeds):
    root, pooled = two_seeds
    before = {d: (featavg.load(d).directory / "manifest.json").read_bytes()
              for d in pooled.summary["seed_runs"]}  # fmt: skip
    three = featavg.run(EXP, root=root, device="cpu", **{**TINY, "seeds": 3})
    assert three.summary["seed_runs"][:2] == pooled.summary["seed_runs"]
    for d, manifest in before.items():  # served, not recomputed
        assert (featavg.load(d).directory / "manifest.json").read_bytes() == manifest
    assert three.summary["seeds_pooled"] == [0, 1, 2]


@pytest.mark.slow
def test_one_seed_says_its_verdict_ignores_training_randomness(two_seeds, capsys):
    from featavg.cli import main

    root, pooled = two_seeds
    first = featavg.load(pooled.summary["seed_runs"][0])
    assert first.summary["verdict_ignores_training_randomness"]
    assert "ignores training randomness" in first.summary["more_robust_statement"]
    args = ["run", EXP, "--seeds", "1", "--out", str(first.directory)]
    args += ["--set=train.dataset=mnist-5k", "--preset", "tiny"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "data: MNIST" in out and "ignores training randomness" in out
    assert "upper bound" in out


@pytest.mark.slow
def test_seeds_as_process_pool_cells_give_the_numbers_of_one_process(two_seeds, tmp_path):
    _, pooled = two_seeds
    overrides = {k: v for k, v in TINY.items() if k != "seeds"}
    sweep = run_sweep(
        EXP,
        {"grouping": ["parity"]},
        seeds=2,
        overrides=overrides,
        root=tmp_path,
        executor="process",
        workers=2,
        progress=False,
        device="cpu",
    )
    (cell,) = sweep.cells
    for key in ("more_robust", "clean_acc_binary", "clean_acc_group_argmax", "curves"):
        assert cell.summary[key] == pooled.summary[key], key


@pytest.mark.slow
def test_seeds_on_a_dask_cluster_are_computed_once_and_pooled_from_the_store(two_seeds, tmp_path):
    """The seeds run as cluster tasks; the cell that pools them once ran on a worker whose
    run store (its scratch directory) held none of them, so it trained and attacked every
    seed again. Now it pools the store's seed runs, here."""
    import distributed  # a declared test dependency: fail, never skip, if it is missing

    _, pooled = two_seeds
    overrides = {k: v for k, v in TINY.items() if k != "seeds"}
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:  # fmt: skip
        sweep = run_sweep(
            EXP, {"grouping": ["parity"]}, seeds=2, overrides=overrides, root=tmp_path,
            executor="dask", scheduler=cluster.scheduler_address, progress=False,
        )  # fmt: skip
    (cell,) = sweep.cells
    store = tmp_path.resolve()
    used = [pathlib.Path(d).resolve() for d in cell.summary["seed_runs"]]
    assert len(used) == 2 and all(d.parent == store for d in used), used
    for key in ("more_robust", "clean_acc_binary", "clean_acc_group_argmax", "curves"):
        assert cell.summary[key] == pooled.summary[key], key


def _mnist_dir(root, label=None):
    """An MNIST directory of 60 random images (torchvision's layout); ``label`` replaces
    the first training label (200: out of range)."""
    from image_file_cases import idx_bytes

    rng = np.random.default_rng(0)
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    for prefix, n in (("train", 60), ("t10k", 20)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        if label is not None and prefix == "train":
            labels[0] = label
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return root


@pytest.mark.slow
def test_a_sweep_cell_with_bad_data_fails_alone_and_the_sweep_completes(tmp_path):
    good, bad = _mnist_dir(tmp_path / "good"), _mnist_dir(tmp_path / "bad", label=200)
    base = {
        "seeds": 1,
        "train": {"model": "mlp", "train_size": None, "test_size": None, "sgd": {"epochs": 1}},
        "attack": {"points": None, "radii": [0.0, 1.0]},
    }
    sweep = run_sweep(
        EXP,
        {"train.data_dir": [str(good), str(bad)]},
        overrides=base,
        root=tmp_path / "runs",
        progress=False,
        device="cpu",
    )
    ok, failed = sweep.cells
    assert ok.summary["points_attacked"] == 20 and "status" not in ok.summary
    assert failed.summary["status"] == "failed" and "label 200" in failed.summary["reason"]
    table = (sweep.directory / "sweep.csv").read_text()
    assert "failed" in table and "label 200" in table
    assert not failed.directory.exists()  # nothing written for the failed cell
    models = tmp_path / "runs" / "models"
    assert not (models / ".featavg-progress").exists()  # no empty progress folder left


@pytest.mark.slow
def test_autoattack_verify_checks_every_seed_and_pools_the_largest_gap(two_seeds):
    """attack.verify=autoattack: each seed's curves are checked at the grid's three largest
    radii; the checks agree with the seed's own per-point record, AutoAttack only removes
    points, and the pooled entry's largest gap is the plain maximum over seeds."""
    pytest.importorskip("pyautoattack", reason="the autoattack extra (make install has it)")
    from featavg.terminal import real_data_lines

    root, _ = two_seeds
    attack = {**TINY["attack"], "verify": "autoattack"}
    pooled = featavg.run(EXP, root=root, device="cpu", **{**TINY, "seeds": 2, "attack": attack})
    entry = pooled.summary["autoattack"]
    gaps = []
    for path in pooled.summary["seed_runs"]:
        summary = featavg.load(path).summary
        checks = summary["autoattack"]["checks"]
        assert set(checks) == {"binary", "group_argmax", "sum", "tenway"}
        radii = summary["curves"]["radii"]
        for readout in summary["point_correct"]:  # the binary and the 10-class model
            record = correct(summary, readout)
            assert [c["eps"] for c in checks[readout]] == radii[-3:]
            for c in checks[readout]:
                row = record[radii.index(c["eps"])]
                n = row.size
                assert c["curve_accuracy"] == pytest.approx(row.mean(), abs=1e-12)
                assert 0 <= c["broken"] <= c["checked"] <= row.sum()
                assert c["verified_accuracy"] == pytest.approx((row.sum() - c["broken"]) / n)
            verified = [c["verified_accuracy"] for c in checks[readout]]
            assert verified == sorted(verified, reverse=True)  # a larger ball breaks more
        gaps += [c["gap"] for cs in checks.values() for c in cs]
    assert entry["max_gap_points"] == pytest.approx(100 * max(gaps))
    assert len(entry["per_seed"]) == 2
    assert any("checked against AutoAttack" in line for line in real_data_lines(pooled.summary))


def test_verify_flag_sets_the_attack_and_is_refused_where_no_curves_are(tmp_path, capsys):
    from featavg.cli import main
    from featavg.cli.commands import _overrides
    from featavg.cli.parser import build_parser

    args = build_parser().parse_args(["run", EXP, "--verify", "autoattack", "--preset", "tiny"])
    overrides = _overrides(args, EXPERIMENTS[EXP])
    assert overrides["attack"] == {**TINY["attack"], "verify": "autoattack"}
    assert main(["show-config", EXP, "--verify", "autoattack"]) == 2  # a flag of run only
    capsys.readouterr()
    synthetic = ["run", "synthetic-alignment", "--verify", "autoattack"]
    assert main([*synthetic, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "featavg: error: --verify: synthetic-alignment has no curves to check (real-data only)"
    )
    assert not (tmp_path / "r").exists()


def test_verify_without_the_extra_is_refused_before_any_training(tmp_path, monkeypatch, capsys):
    """Once found only when the check started, after both models had trained."""
    import sys

    from featavg.cli import main

    monkeypatch.setitem(sys.modules, "pyautoattack", None)  # as if not installed
    monkeypatch.chdir(tmp_path)
    argv = ["run", EXP, "--preset", "tiny", "--verify", "autoattack", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "verify: autoattack needs the optional extra" in err
    assert list(tmp_path.iterdir()) == []  # nothing trained or written
