"""The report never renders a forged number: every directory it shows (runs, sweep cells,
probes, a sweep's own files when it has a manifest) is checked against its manifest.json,
as featavg.load checks it; a changed directory is one error line, never results."""

import json
import re
import shutil

import pytest
import torch
from torch import nn

import featavg
from featavg.config import ConfigError
from featavg.report import run_tallies, write_report
from test_report import TINY, check_html, sections, summary_box

FORGED = 0.123456  # a value no tiny run produces: seen on the page only if it renders forgeries


@pytest.fixture(scope="module")
def alignment(tmp_path_factory):
    from featavg.experiments.runner import run_experiment

    out = tmp_path_factory.mktemp("sealed") / "align"
    return run_experiment("synthetic-alignment", overrides=TINY, out=out).directory


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(120, 10, generator=gen)
    y = torch.arange(4).repeat(30)
    model = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 2))
    out = tmp_path_factory.mktemp("probe") / "probe"
    featavg.probe(model, (x, y), grouping="0,1,0,1", layer="2", out=out)
    return out


def forge_summary(directory, key, value=FORGED):
    path = directory / "summary.json"
    summary = json.loads(path.read_text())
    assert key in summary  # a number the page would show
    summary[key] = value
    path.write_text(json.dumps(summary))


def forge_csv_digit(path):
    """Change one digit of the first number in the file's second line."""
    lines = path.read_text().splitlines(keepends=True)
    match = re.search(r"\d", lines[1])
    assert match
    digit = match.group(0)
    lines[1] = lines[1][: match.start()] + str((int(digit) + 1) % 10) + lines[1][match.end() :]
    path.write_text("".join(lines))


def refused(text, name, what):
    """The page shows the directory as one refused line naming what is wrong."""
    box = summary_box(text)
    row = re.search(rf'<tr class="refused"><td><code>{re.escape(name)}</code></td>.*?</tr>', box)
    assert row, name
    assert "does not match its manifest.json" in row.group(0) and what in row.group(0)
    return row.group(0)


def test_a_forged_summary_number_is_refused_not_rendered(alignment, tmp_path):
    run = shutil.copytree(alignment, tmp_path / "forged")
    good = shutil.copytree(alignment, tmp_path / "good")
    forge_summary(run, "cos_diag_mean_multiclass")
    with pytest.raises(ConfigError, match="does not match its manifest"):
        featavg.load(run)  # the library refuses it: so must the report
    text = write_report([run, good], out=tmp_path / "r.html").read_text()
    check_html(text)
    assert str(FORGED) not in text and "0.1235" not in text
    refused(text, "forged", "summary.json changed")
    assert len(sections(text)) == 1  # only the good run has a section
    assert ">1 refused<" in summary_box(text)


def test_one_digit_of_a_csv_is_refused(alignment, tmp_path):
    run = shutil.copytree(alignment, tmp_path / "digit")
    forge_csv_digit(run / "metrics.csv")
    text = write_report([run], out=tmp_path / "r.html").read_text()
    check_html(text)
    assert not sections(text)  # no section shows the forged table
    refused(text, "digit", "metrics.csv changed")


def test_added_or_removed_files_and_a_missing_manifest_are_refused(alignment, tmp_path):
    extra = shutil.copytree(alignment, tmp_path / "extra")
    (extra / "injected.csv").write_text("radius,acc\n0,0.123456\n")
    gone = shutil.copytree(alignment, tmp_path / "gone")
    next(gone.glob("*.png")).unlink()
    bare = shutil.copytree(alignment, tmp_path / "bare")
    (bare / "manifest.json").unlink()
    text = write_report([extra, gone, bare], out=tmp_path / "r.html").read_text()
    check_html(text)
    assert "0.123456" not in text and not sections(text)
    refused(text, "extra", "stray injected.csv")
    refused(text, "gone", ".png missing")
    assert "bare" in summary_box(text) and "no readable manifest.json" in summary_box(text)


@pytest.mark.parametrize("where", ["averaging_index", "units.csv"])
def test_a_forged_probe_is_refused(probe_dir, tmp_path, where):
    probe = shutil.copytree(probe_dir, tmp_path / "probe")
    summary = json.loads((probe / "summary.json").read_text())
    index = next(k for k in summary if k.startswith("averaging_index"))
    if where == "units.csv":
        forge_csv_digit(probe / "units.csv")
    else:
        forge_summary(probe, index)
    with pytest.raises(ConfigError, match="does not match its manifest"):
        featavg.load(probe)
    text = write_report([probe], out=tmp_path / "r.html").read_text()
    check_html(text)
    assert str(FORGED) not in text and not sections(text)
    refused(text, "probe", "summary.json changed" if where != "units.csv" else "units.csv changed")


def test_an_untouched_probe_renders(probe_dir, tmp_path):
    text = write_report([probe_dir], out=tmp_path / "r.html").read_text()
    (sec,) = sections(text)
    assert 'class="refused"' not in summary_box(text) and "heatmap.png" in sec


def test_a_forged_sweep_cell_is_refused_and_the_others_shown(tmp_path):
    from featavg.api import run_sweep

    sweep = run_sweep(
        "synthetic-alignment",
        {"train.lr": [0.001, 0.01]},
        overrides=TINY,
        out=tmp_path / "sweep",
        progress=False,
    ).directory
    cells = sorted(p for p in (sweep / "cells").iterdir() if p.is_dir())
    forge_summary(cells[0], "cos_same_class_mean_binary")
    text = write_report([sweep], out=tmp_path / "r.html").read_text()
    check_html(text)
    assert str(FORGED) not in text
    (sec,) = sections(text)
    row = re.search(rf"<tr><td><code>{re.escape(cells[0].name)}</code></td>.*?</tr>", sec)
    assert row and "refused: " in row.group(0) and "summary.json changed" in row.group(0)
    other = re.search(rf"<td><code>{re.escape(cells[1].name)}</code>.*?</tr>", sec).group(0)
    assert "refused" not in other and "agree" in other  # the untouched cell, beside the theory
    # a sweep without a manifest of its own says so; its cells are each checked
    assert "sweep.csv and sweep.png carry no manifest" in sec


def test_a_sweep_with_a_manifest_is_checked_too(tmp_path):
    from featavg.api import run_sweep
    from test_report import seal

    sweep = run_sweep(
        "synthetic-alignment", {"train.lr": [0.001]}, overrides=TINY, out=tmp_path / "s",
        progress=False,
    ).directory  # fmt: skip
    seal(sweep)  # a sweep whose own files are vouched for
    text = write_report([sweep], out=tmp_path / "ok.html").read_text()
    assert "carry no manifest" not in text and "Refused" not in text
    forge_csv_digit(sweep / "sweep.csv")
    text = write_report([sweep], out=tmp_path / "r.html").read_text()
    check_html(text)
    (sec,) = sections(text)
    assert "<h3>Results" not in sec  # nothing of the forged table
    assert "Refused: " in sec and "sweep.csv changed" in sec
    assert '<tr class="refused"><td><code>s</code>' in summary_box(text)  # the sweep's line


def test_run_tallies_refuse_what_the_report_refuses(alignment, tmp_path):
    run = shutil.copytree(alignment, tmp_path / "forged")
    forge_summary(run, "cos_diag_mean_multiclass")
    (good,) = run_tallies([alignment])
    (bad,) = run_tallies([run])
    assert good[2] is not None and not good[3]
    assert bad[2] is None and "summary.json changed" in bad[3]
