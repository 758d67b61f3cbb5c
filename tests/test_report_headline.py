"""The last lines of ``featavg reproduce``: how many checks agree, deviate as the paper or
our closed forms predict, deviate unexpectedly or are missing (counted by the report's own
code), which ones, and the commands that open the page and call featavg."""

import json
import re
import shlex
import sys
from pathlib import Path

from featavg.cli import main
from featavg.reproduction import featavg_commands, headline
from test_report_verdicts import expecting, planted  # noqa: F401  (a fixture, a helper)

TINY = {"data": {"d": 60, "k": 4, "n_train": 80, "n_test": 40}, "train": {"steps": 20}}


def test_headline_counts_planted_summaries_by_hand(expecting, tmp_path):  # noqa: F811
    a = planted(tmp_path / "a")  # agree: acc, a; as expected: radius, b; deviate: width
    b = planted(tmp_path / "b", acc=0.9)  # acc deviates too
    forged = planted(tmp_path / "forged")
    (forged / "summary.json").write_text(
        (forged / "summary.json").read_text().replace('"acc": 0.52', '"acc": 0.5')
    )
    lines = headline([a, b, forged], tmp_path / "reproduce.html", 12.34)
    # by hand: agree 2 + 1, as expected 2 + 2, unexpected 1 + 2, missing (depth) 1 + 1
    assert lines[0] == (
        "reproduce: 3 checks agree, 4 deviate as the paper or our closed forms predict, "
        "3 deviate unexpectedly, 2 missing (3 runs, 12.3 s)"
    )
    text = "\n".join(lines)
    assert "  deviate unexpectedly:\n    fake-exp: width; accuracy; width\n" in text
    assert "  missing:\n    fake-exp: depth; depth\n" in text
    assert "refused: changed since they were written" in text
    assert "forged: does not match its manifest.json (summary.json changed)" in text
    assert lines[-2].startswith("  open the page: ") and lines[-2].endswith("reproduce.html")
    assert lines[-1].startswith("  call featavg:  ")


def test_commands_are_this_environments(tmp_path, monkeypatch):
    bindir = Path(sys.executable).parent
    monkeypatch.chdir(tmp_path)  # outside the environment's directory: absolute paths
    call, put = featavg_commands()
    if (bindir / "featavg").is_file():
        assert Path(shlex.split(call)[0]).resolve() == (bindir / "featavg").resolve()
    if (bindir / "activate").is_file():
        assert put == f"source {shlex.quote(str(bindir / 'activate'))}"
        monkeypatch.chdir(bindir.parent.parent)  # the directory holding the environment
        call, put = featavg_commands()
        venv = bindir.parent.name
        assert put == f"source {venv}/bin/activate"  # relative, as one types it there
        assert call == f"{venv}/bin/featavg"


def test_reproduce_ends_with_the_headline_and_no_bar_line(tmp_path, monkeypatch, capsys):
    plan = [("synthetic-alignment", TINY)]
    monkeypatch.setattr("featavg.reproduction.reproduce_plan", lambda real=False: plan)
    assert main(["reproduce", "--out", str(tmp_path / "runs"), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert not re.search(r"reproduce: \d+/\d+ it in", out + err)  # the stray bar line
    lines = out.rstrip("\n").splitlines()
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir() and "alignment" in p.name]
    summary = json.loads((run_dir / "summary.json").read_text())
    # the count, by hand from the summary: each check within its tolerance of its theory
    agree = deviate = 0
    for key, theory in [
        ("cos_same_class_mean_binary", summary["theory_cos_same_class"]),
        ("cos_same_class_mean_pos_binary", summary["theory_cos_same_class_pos"]),
        ("cos_same_class_mean_neg_binary", summary["theory_cos_same_class_neg"]),
        ("cos_other_class_max_binary", 0.0),
        ("cos_diag_mean_multiclass", 1.0),
        ("cos_offdiag_max_multiclass", 0.0),
    ]:
        tol = 0.1 if "max" in key else 0.05
        ok = abs(summary[key] - theory) <= tol
        agree, deviate = agree + ok, deviate + (not ok)
    head = next(i for i, line in enumerate(lines) if line.startswith("reproduce: "))
    assert lines[head] == (
        f"reproduce: {agree} checks agree, 0 deviate as the paper or our closed forms "
        f"predict, {deviate} deviate unexpectedly, 0 missing (1 run, "
        + lines[head].rsplit("(1 run, ", 1)[1]
    )
    assert lines[-2] == f"  open the page: xdg-open {tmp_path / 'runs' / 'reproduce.html'}" or (
        sys.platform in ("darwin", "win32")
    )
    assert lines[-1].startswith("  call featavg:  ") and f"report --root {tmp_path}" in lines[-1]


def test_quiet_prints_only_the_headline(tmp_path, monkeypatch, capsys):
    plan = [("synthetic-alignment", TINY)]
    monkeypatch.setattr("featavg.reproduction.reproduce_plan", lambda real=False: plan)
    assert main(["reproduce", "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("reproduce: ") and "synthetic-alignment " not in out
    assert not re.search(r"\d+/\d+ it in", err)
