"""What fuzzing ``featavg probe`` options and the real-data configs found
(scripts/fuzz_probe_and_configs.py), each pinned as a one-line refusal naming what was wrong."""

from __future__ import annotations

import pytest

from featavg.cli import main


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["probe", "--layer=--", "--grad-points=--"], "--grad-points"),
        (["probe", "--layer", "fc", "--out=--", "--robust-eps=--"], "--robust-eps"),
        (["probe", "--layer", "fc", "--device=--"], "device"),
        (["show-config", "mnist-robustness", "--preset=--"], "--preset"),
        (["run", "mnist-robustness", "--set=--"], "--set"),
        (["run", "mnist-robustness", "--seeds=--"], "--seeds"),
    ],
)
def test_an_option_given_as_dash_dash_is_that_value(argv, flag, tmp_path, monkeypatch, capsys):
    """Once: ``--OPTION=--`` reached the command as an empty list (Python 3.11's argparse
    drops a '--' value): tracebacks (TypeError, AttributeError), or a ``--grouping=--``
    silently ignored. Now '--' is the value, refused by the option's own check."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("featavg: error: "), err
    assert flag in err or flag.removeprefix("--").replace("-", "_") in err, err
    assert "'--'" in err, err
    assert list(tmp_path.iterdir()) == []
