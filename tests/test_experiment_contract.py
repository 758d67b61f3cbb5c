"""Every registered experiment produces what it declares: summary keys of its checks,
tables with their columns, figures; and the report resolves every check (none missing)."""

import csv
import json

import pytest

from featavg.experiments.output import ExperimentOutput
from featavg.experiments.registry import EXPERIMENTS, get_experiment
from featavg.experiments.runner import UndeclaredOutput, missing_outputs, verify_output
from featavg.report.checks import check_counts, check_rows

NAMES = list(EXPERIMENTS)


@pytest.mark.parametrize("name", NAMES)
def test_run_writes_every_declared_key_table_and_figure(tiny_runs, name):
    runs, _ = tiny_runs
    exp, result = get_experiment(name), runs[name]
    summary = json.loads((result.directory / "summary.json").read_text())
    cfg = exp.config_cls.model_validate(summary["config"])
    keys = exp.declared_keys(cfg)
    assert keys, f"{name} declares no summary keys"
    assert [k for k in keys if k not in summary] == []
    for figure in exp.figures:
        assert (result.directory / f"{figure}.png").stat().st_size > 1000
    assert exp.tables, f"{name} declares no table"
    for table, columns in exp.tables.items():
        with (result.directory / f"{table}.csv").open(newline="") as f:
            header = next(csv.reader(f))
        assert set(columns) <= set(header), (table, set(columns) - set(header))
    if summary["stand_in"]:  # real-data experiments here run on labelled stand-ins or subsets
        text = summary["data"].lower()
        assert exp.data != "none (synthetic)" and ("stand-in" in text or "subset" in text)
    else:
        assert summary["stand_in"] is False and summary["data"] == exp.data


@pytest.mark.parametrize("name", NAMES)
def test_every_check_resolves(tiny_runs, name):
    runs, _ = tiny_runs
    summary = json.loads((runs[name].directory / "summary.json").read_text())
    rows = check_rows(summary)
    declared = get_experiment(name).checks(
        get_experiment(name).config_cls.model_validate(summary["config"])
    )
    assert [r.check for r in rows[: len(declared)]] == declared
    assert [r.check.key for r in rows if r.missing] == []
    assert check_counts(summary)[2] == 0


def test_a_renamed_key_is_a_missing_row_not_a_dropped_check(tiny_runs):
    runs, _ = tiny_runs
    summary = json.loads((runs["synthetic-alignment"].directory / "summary.json").read_text())
    summary["cos_diag_mean_renamed"] = summary.pop("cos_diag_mean_multiclass")
    rows = check_rows(summary)
    missing = [r for r in rows if r.missing]
    assert [r.missing for r in missing] == [("cos_diag_mean_multiclass",)]
    assert missing[0].agrees is None and check_counts(summary)[2] == 1


def test_the_runner_refuses_an_output_lacking_a_declared_key():
    exp = get_experiment("synthetic-alignment")
    cfg = exp.config_cls()
    output = ExperimentOutput(numbers={"cos_diag_mean_multiclass": 1.0})
    missing = missing_outputs(exp, cfg, output)
    assert "summary key cos_same_class_mean_binary" in missing
    assert "figure heatmap" in missing and "table metrics" in missing
    with pytest.raises(UndeclaredOutput, match="cos_same_class_mean_binary"):
        verify_output(exp, cfg, output)


def test_checks_follow_the_config():
    """Read-outs beyond the exact solver's reach declare no exact check (nothing is
    expected that the run cannot produce), and the theory follows k."""
    exp = get_experiment("synthetic-robustness")
    small = {c.key for c in exp.checks(exp.config_cls())}
    assert "exact_median_radius_binary" in small and "gain_argmax_over_binary" in small
    wide = exp.config_cls.model_validate({"net": {"m": 10}})  # 20 binary units
    keys = {c.key for c in exp.checks(wide)}
    assert "exact_median_radius_binary" not in keys and "radius50_binary" in keys
    assert "exact_median_radius_multiclass" in keys and "gain_argmax_over_binary" not in keys
    gain = next(c for c in exp.checks(exp.config_cls()) if c.key == "gain_argmax_over_binary")
    assert gain.theory == pytest.approx(5**0.5)
