"""Numerical faults (issue 13, deliverable 3): divergence, NaN/inf, underflow, vanished
gradients and degenerate data end in one clear line (RunFailed, CLI exit 3) and nothing is
written; a non-finite headline number is refused unless legitimately undefined; in a sweep
a failing cell is recorded as failed while the others complete."""

import json
import math
import re

import pytest
import torch

from featavg import runs
from featavg.api import run_sweep
from featavg.cli import main
from featavg.config import deep_merge
from featavg.data.synthetic import SyntheticConfig, check_dataset, sample_synthetic
from featavg.experiments import runner, synthetic_common
from featavg.experiments.costs import negligible
from featavg.experiments.output import ExperimentOutput
from featavg.experiments.registry import register, unregister
from featavg.experiments.runner import non_finite_results, run_experiment
from featavg.experiments.spec import Claim, Experiment
from featavg.experiments.synthetic_common import SyntheticRunConfig
from featavg.faults import RUN_FAILED_EXIT, NumericalFault, RunFailed, is_failure
from featavg.models.two_layer import NetConfig, binary_ensemble, multiclass_ensemble
from featavg.runs.context import open_context
from featavg.sweep.executors import FAILED, store_files
from featavg.training import TrainConfig, TrainingDiverged, train
from featavg.training.two_layer_checks import DIVERGENCE_FACTOR, check_step

EXP = "synthetic-alignment"
# tiny runs (~0.3 s): d = 60, 4 clusters, 80 training points, 20 GD steps
SMALL = {"data": {"d": 60, "k": 4, "n_train": 80, "n_test": 40}, "train": {"steps": 20}}


def _run(tmp_path, **sections):
    """run_experiment of EXP on SMALL with ``sections`` merged in, into tmp_path/run."""
    cfg = deep_merge(SMALL, sections)
    return run_experiment(EXP, overrides=cfg, out=tmp_path / "run", ctx=open_context("cpu"))


def _assert_one_line_and_nothing_written(err: BaseException, tmp_path) -> None:
    text = str(err)
    assert "\n" not in text and len(text) < 500
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("lr", [1e2, 1e3, 1e30])
def test_a_diverging_learning_rate_fails_clearly_and_writes_nothing(tmp_path, lr):
    with pytest.raises(TrainingDiverged, match=r"training diverged at step \d+.*train\.lr") as e:
        _run(tmp_path, train={"lr": lr})
    _assert_one_line_and_nothing_written(e.value, tmp_path)
    assert isinstance(e.value, RunFailed)


def test_a_diverging_learning_rate_exits_3_with_one_line(tmp_path, capsys):
    args = [f"--set=data.{k}={v}" for k, v in SMALL["data"].items()]
    out = tmp_path / "run"
    code = main(
        [
            "run",
            EXP,
            *args,
            "--set=train.steps=20",
            "--set=train.lr=1000",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == RUN_FAILED_EXIT == 3 and len(err) == 1
    assert err[0].startswith("featavg: run failed: training diverged")
    assert "Traceback" not in err[0] and not out.exists()


@pytest.mark.parametrize(
    ("std", "match"),
    [
        (1e-46, r"stalled at step 0: .* gradient is exactly 0 .* raise net\.init_std"),
        (1e6, r"no progress: .* bitwise unchanged after 20 steps .* lower net\.init_std"),
        (1e37, r"diverged at step 0: .* non-finite"),
    ],
)
def test_an_init_that_underflows_or_overflows_fails_clearly(tmp_path, std, match):
    # 1e-46 rounds to 0 in float32: every preactivation is 0, ReLU' = 0, GD cannot move;
    # 1e6: GD's steps fall below the float32 resolution of the weights; 1e37: overflow
    with pytest.raises(TrainingDiverged, match=match) as e:
        _run(tmp_path, net={"init_std": std})
    _assert_one_line_and_nothing_written(e.value, tmp_path)


def test_zero_norm_centers_are_degenerate_data(tmp_path):
    # norm_range * sqrt(d) = 7.7e-60 rounds to 0 in float32: every center has norm 0
    with pytest.raises(NumericalFault, match=r"data: 4 cluster center\(s\) of norm 0.*norm_range"):
        _run(tmp_path, data={"norm_range": [1e-60, 1e-60]})
    data = sample_synthetic(SyntheticConfig(d=20, k=3, n_train=6, n_test=3), 0)
    data.centers[1] = 0.0  # one degenerate center among good ones
    with pytest.raises(NumericalFault, match=r"data: 1 cluster center\(s\) of norm 0"):
        check_dataset(data)


@pytest.mark.parametrize("split", ["x_train", "x_test"])
def test_nan_injected_into_the_data_is_reported_as_such(tmp_path, monkeypatch, split):
    draw = synthetic_common.sample_synthetic_stacked

    def poisoned(*args, **kwargs):
        data = draw(*args, **kwargs)
        getattr(data, split)[0, 3, 5] = math.nan  # one value of one replicate
        return data

    monkeypatch.setattr(synthetic_common, "sample_synthetic_stacked", poisoned)
    with pytest.raises(NumericalFault, match=rf"data: {split} holds 1 NaN/inf value") as e:
        _run(tmp_path)
    _assert_one_line_and_nothing_written(e.value, tmp_path)


def test_train_checks_its_inputs_and_each_step():
    data = sample_synthetic(SyntheticConfig(d=20, k=3, n_train=12, n_test=3), 0)
    x = data.x_train.clone()
    x[2, 7] = math.inf
    with pytest.raises(NumericalFault, match=r"data: the training x hold 1 NaN/inf value"):
        train(binary_ensemble([0], 20), x, data.y_train, TrainConfig(steps=2))
    # a healthy run passes every check, full-batch and mini-batch alike
    for batch in (None, 5):
        net = multiclass_ensemble([0, 1], 20, 3, NetConfig(init_std=1e-3))
        recs = train(
            net, data.x_train, data.c_train, TrainConfig(steps=5, lr=0.01, batch_size=batch)
        )
        assert all(torch.isfinite(r["loss"]).all() for r in recs)


def re_escape(text: str) -> str:
    """``text`` as a literal regular expression."""
    return re.escape(text)


def test_check_step_flags_each_fault_of_each_member():
    loss0 = torch.tensor([0.69, 0.69, 0.69, 0.69])
    rates = torch.full((4,), 0.1)
    ok = torch.tensor([0.5, 0.6, 0.69, 0.1])
    check_step(3, "binary", ok, loss0, torch.ones(4, 2, 5), rates)  # nothing to flag
    cases = [
        (torch.tensor([0.5, math.nan, 0.6, 0.6]), "non-finite for member(s) [1]"),
        (torch.tensor([0.5, 0.6, DIVERGENCE_FACTOR * 0.7, 0.6]), "rose from 0.69 to 2.8"),
        (torch.tensor([0.5, 0.6, 0.6, 0.0]), "underflowed to exactly 0 for member(s) [3]"),
    ]
    for loss, match in cases:
        with pytest.raises(TrainingDiverged, match=re_escape(match)):
            check_step(3, "binary", loss, loss0, None, rates)
    dead = torch.ones(4, 2, 5)
    dead[2] = 0.0
    with pytest.raises(
        TrainingDiverged, match=re_escape("gradient is exactly 0 for member(s) [2]")
    ):
        check_step(0, "multiclass", ok, loss0, dead, rates)


# ---------------------------------------------------------------- non-finite results


def _fake_experiment(numbers):
    def run(cfg, ctx):
        return ExperimentOutput(numbers=dict(numbers))

    return Experiment(
        name="fault-fake",
        description="returns fixed numbers",
        config_cls=SyntheticRunConfig,
        run=run,
        cost=negligible,
        claim=Claim("fake", "fake"),
        figures={},
    )


@pytest.fixture
def fake():
    made = []

    def make(numbers):
        exp = register(_fake_experiment(numbers))
        made.append(exp.name)
        return exp

    yield make
    for name in made:
        unregister(name)


def test_a_non_finite_headline_number_is_refused_and_nothing_written(tmp_path, fake):
    fake({"bias_mean_binary": 0.5, "per_seed": {"bias_mean_binary": [0.5, math.nan]}})
    with pytest.raises(NumericalFault, match=r"non-finite result per_seed\.bias_mean_binary\[1\]"):
        run_experiment("fault-fake", out=tmp_path / "run", ctx=open_context("cpu"))
    assert not (tmp_path / "run").exists()


def test_a_legitimately_undefined_number_is_saved_as_null(tmp_path, fake):
    # a radius never crossed on the grid (inf) and its interval, a clean accuracy of a grid
    # without radius 0 (NaN): undefined by design, stored as JSON null
    fake(
        {
            "radius50_binary": math.inf,
            "radius50_binary_ci95": [math.nan, math.nan],
            "clean_acc_binary": math.nan,
            "test_acc": 0.9,
        }
    )
    result = run_experiment("fault-fake", out=tmp_path / "run", ctx=open_context("cpu"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["radius50_binary"] is None and summary["clean_acc_binary"] is None
    assert summary["test_acc"] == 0.9 and result.summary == summary


def test_non_finite_results_names_paths_outside_the_allowed_keys():
    numbers = {
        "cos_mean": math.nan,
        "settings": {"lr 1": {"cos_same_class_mean_binary": math.inf, "radius_x": math.inf}},
        "curves": {"pgd": {"binary": [1.0, math.nan]}},
        "slope_k_binary": math.nan,
        "theory_radius": 3.0,
    }
    assert non_finite_results(numbers) == [
        "cos_mean",
        "settings.lr 1.cos_same_class_mean_binary",
        "curves.pgd.binary[1]",
    ]
    assert runner.UNDEFINED_OK  # documented table, not empty


# ---------------------------------------------------------------- sweeps


@pytest.fixture
def fast_figures(monkeypatch):
    """Figures are not the subject here: skip matplotlib's rendering (~1 s per figure)."""
    monkeypatch.setattr(runs, "write_figure", lambda path, fig: path.write_bytes(b"png"))


def test_a_sweep_records_the_diverging_cell_as_failed_and_finishes_the_rest(
    tmp_path, capsys, fast_figures
):
    out = tmp_path / "sweep"
    grid = {"train.lr": [0.001, 1000.0, 0.01]}
    result = run_sweep(EXP, grid, overrides=SMALL, out=out, progress=False)
    table = result.to_frame()
    assert list(table["status"]) == ["ok", "failed", "ok"]
    reason = table["reason"][1]
    assert reason.startswith("training diverged at step") and "train.lr" in reason
    assert table["reason"][0] == "" and table["reason"][2] == ""
    assert math.isnan(table["cos_same_class_mean_binary"][1])
    assert table["cos_same_class_mean_binary"][[0, 2]].notna().all()
    failed, ok = result.cells[1], [result.cells[0], result.cells[2]]
    assert is_failure(failed.summary) and not failed.directory.exists()
    # the good cells equal their standalone runs (the ensemble was rerun cell by cell)
    for cell in ok:
        cfg = deep_merge(SMALL, cell.overrides)
        alone = run_experiment(
            EXP, overrides=cfg, out=tmp_path / cell.name, ctx=open_context("cpu")
        )
        strip = ("provenance",)
        assert {k: v for k, v in cell.summary.items() if k not in strip} == {
            k: v for k, v in alone.summary.items() if k not in strip
        }
    # the CLI says so and exits 3; the good cells are cached, the failed one retried
    args = [f"--set=data.{k}={v}" for k, v in SMALL["data"].items()]
    code = main(
        [
            "sweep",
            EXP,
            *args,
            "--set=train.steps=20",
            "--grid",
            "train.lr=0.001,1000.0,0.01",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 3 and "3 cells (2 cached, 1 failed" in line


def test_a_detached_failed_cell_writes_nothing(tmp_path):
    summary = {"experiment": EXP, "status": "failed", "reason": "training diverged", "config": {}}
    got = store_files(tmp_path / "cell", {FAILED: json.dumps(summary).encode()})
    assert got == summary and not (tmp_path / "cell").exists()


# ---------------------------------------------------------------- the image trainer


def _tiny_images(n=64):
    """n random 3x8x8 uint8 images and their labels (two classes)."""
    from featavg.seeding import generator

    g = generator(0, "tests/faults/images")
    x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 2, (n,), generator=g)
    return x, y


def _tiny_model():
    """A conv-ReLU-linear net on 3x8x8 images, two classes, the same weights every call."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 2),
    )


@pytest.mark.slow  # the first torch.optim.SGD of a process imports torch._dynamo (5-15 s)
def test_a_diverging_image_model_fails_naming_epoch_and_model_and_saves_nothing(tmp_path):
    from featavg.training.image_sgd import ImageSGD, SGDConfig

    x, y = _tiny_images()
    ckpt = tmp_path / "run.ckpt"
    good, bad = _tiny_model(), _tiny_model()
    cfg = SGDConfig(epochs=3, batch_size=16, lr=1e12, momentum=0.9)
    with pytest.raises(NumericalFault) as e:
        ImageSGD(cfg, checkpoint=ckpt).fit([bad], x, [y])
    text = str(e.value)
    assert re.search(r"epoch 1, model 0 \(Sequential\): .*loss.*sgd\.lr", text), text
    assert "\n" not in text and isinstance(e.value, RunFailed)
    assert not ckpt.exists()  # the diverged epoch was never checkpointed
    # a finite loss far above chance's is divergence too
    with pytest.raises(NumericalFault, match=r"epoch 1, model 0 .*mean training loss"):
        ImageSGD(cfg.model_copy(update={"lr": 100.0})).fit([_tiny_model()], x, [y])
    # a sane learning rate trains the same model without complaint
    (records,) = ImageSGD(SGDConfig(epochs=1, batch_size=16, lr=0.01)).fit([good], x, [y])
    assert math.isfinite(float(records[0]["loss"][0]))
    # a NaN weight makes the loss NaN: named as such (model 1 of two trained together)
    broken = _tiny_model()
    with torch.no_grad():
        next(broken.parameters()).view(-1)[0] = math.nan
    with pytest.raises(NumericalFault, match=r"epoch 1, model 1 .*loss became non-finite"):
        ImageSGD(SGDConfig(epochs=1, batch_size=16, lr=0.01)).fit(
            [_tiny_model(), broken], x, [y, y]
        )


@pytest.mark.slow  # torch.optim, as above
def test_a_weight_broken_after_a_finite_loss_is_caught_too(monkeypatch):
    """The last step of an epoch may break a weight after its loss was still finite."""
    from featavg.training import image_sgd

    x, y = _tiny_images()
    model = _tiny_model()
    real_step = torch.optim.SGD.step

    def step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        first = self.param_groups[0]["params"][0]
        if first is next(model.parameters()):  # only model 1's optimiser breaks its weights
            with torch.no_grad():
                first.fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    cfg = image_sgd.SGDConfig(epochs=1, batch_size=64, lr=0.01)  # one batch: its loss is finite
    with pytest.raises(NumericalFault, match=r"epoch 1, model 1 \(Sequential\): a weight"):
        image_sgd.ImageSGD(cfg).fit([_tiny_model(), model], x, [y, y])


@pytest.mark.slow  # loads the Fashion-MNIST stand-in (2-3 s) and imports torch._dynamo
def test_featavg_train_with_a_diverging_lr_exits_3_and_caches_nothing(tmp_path, capsys):
    args = ["train", "--data", "mnist", "--model", "mlp", "--epochs", "2", "--quiet"]
    args += ["--set", "train_size=200", "--set", "test_size=50", "--set", "sgd.lr=1e6"]
    assert main([*args, "--root", str(tmp_path)]) == RUN_FAILED_EXIT
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(r"training diverged: epoch 1, model 0", err), err
    models = tmp_path / "models"  # nothing cached: no model folder, not even an empty one
    assert not models.exists() or not [p for p in models.iterdir() if not p.name.startswith(".")]
    assert not list(models.glob(".featavg-progress/*.pt"))  # no checkpoint of the NaN epoch
