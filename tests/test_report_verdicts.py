"""Three verdicts and a summary box: a deviation the paper or our closed forms predict is
"deviates as expected" (declared where the check is declared, with its reason one click
away), distinct from an unexpected one and from a missing number; the top of the page
sums up every run in one line."""

import re
import sys
import types
from dataclasses import replace

import pytest

from featavg.experiments.spec import Check, Expected, GridCheck
from featavg.report import write_report
from featavg.report.checks import (
    AGREES,
    DEVIATES,
    EXPECTED,
    MISSING,
    NO_THEORY,
    NO_VALUE,
    status_of,
    tally,
)
from test_report import FAKE, check_html, fake_run, plain, row_of, sections, summary_box

ABOVE = Expected("PGD overstates the radius.", "above")
BELOW = Expected("A large init fades the pattern.", "below")


@pytest.mark.parametrize(
    ("agrees", "value", "theory", "expected", "missing", "status"),
    [
        (True, 1.0, 1.0, None, False, AGREES),
        (True, 1.0, 1.0, ABOVE, False, AGREES),  # agreeing: the expectation is moot
        (False, 2.0, 1.0, None, False, DEVIATES),
        (False, 2.0, 1.0, ABOVE, False, EXPECTED),
        (False, 0.5, 1.0, ABOVE, False, DEVIATES),  # the other side: not what was predicted
        (False, 0.5, 1.0, BELOW, False, EXPECTED),
        (False, 0.5, 1.0, Expected("either way"), False, EXPECTED),
        (None, None, 1.0, ABOVE, True, MISSING),
        (None, None, 1.0, None, False, NO_VALUE),
        (None, 1.0, None, None, False, NO_THEORY),
    ],
)
def test_status(agrees, value, theory, expected, missing, status):
    assert status_of(agrees, value, theory, expected, missing) == status


# a fake experiment with one check of each verdict and a settings table with an expectation
EXPECTING = replace(
    FAKE,
    checks=lambda cfg: [
        Check("accuracy", "acc", 0.5, "1/2", 0.1),  # 0.52: agrees
        Check("radius", "radius", 1.0, "1", 0.1, expected=ABOVE),  # 3.0: as expected
        Check("width", "width", 1.0, "1", 0.1, expected=BELOW),  # 3.0: the wrong side
        Check("depth", "depth", 1.0, "1", 0.1),  # absent from the summary: missing
        Check("count", "count"),  # no closed form: measured only, not counted
    ],
    grid=GridCheck(
        "settings",
        "cos",
        "theory_cos",
        "theory_cos_default",
        "1/√k",
        0.05,
        expected=lambda cfg: {"b": Expected("Setting b leaves the regime.", "above")},
    ),
)


@pytest.fixture
def expecting(monkeypatch):
    registry = types.ModuleType("featavg.experiments.registry")
    registry.EXPERIMENTS = {"fake-exp": EXPECTING}
    monkeypatch.setitem(sys.modules, "featavg.experiments.registry", registry)


def planted(directory, **changes):
    """A sealed fake run: acc agrees, radius deviates as expected, width deviates, depth
    missing; settings a agrees, b (0.9 vs 0.5) deviates as expected."""
    return fake_run(directory, radius=3.0, width=3.0, count=7, **changes)


def test_tally_counts_each_verdict_by_hand(expecting, tmp_path):
    import json

    summary = json.loads((planted(tmp_path / "run") / "summary.json").read_text())
    t = tally(summary)
    # by hand: checks acc, radius, width, depth; settings a, b (count has no closed form)
    assert [(v.label, v.status) for v in t.verdicts] == [
        ("accuracy", AGREES),
        ("radius", EXPECTED),
        ("width", DEVIATES),
        ("depth", MISSING),
        ("a: cos", AGREES),
        ("b: cos", EXPECTED),
    ]
    assert (t.count(AGREES), t.count(EXPECTED), t.count(DEVIATES), t.count(MISSING)) == (
        2,
        2,
        1,
        1,
    )
    assert t.labels(DEVIATES) == ["width"] and t.labels(MISSING) == ["depth"]


def test_verdict_classes_and_reasons_one_click_away(expecting, tmp_path):
    text = write_report([planted(tmp_path / "run")], out=tmp_path / "r.html").read_text()
    check_html(text)
    (sec,) = sections(text)
    assert '<td class="ok">agrees' in row_of(sec, "acc")
    radius = row_of(sec, "radius")
    assert '<td class="exp"><details class="more"><summary>deviates as expected' in radius
    assert "PGD overstates the radius.</details>" in radius
    width = row_of(sec, "width")  # declared "below", measured above: unexpected
    assert '<td class="dev">deviates' in width and "large init" not in width
    assert '<td class="missing">missing from the summary: depth</td>' in row_of(sec, "depth")
    # the number without a closed form: its own two-column table, never a column of dashes
    measured = sec[sec.index("Measured (no closed form to hold it against)") :]
    assert "<summary>count</summary>" in plain(measured) and "— (no closed form)" not in sec
    # the settings table: b deviates as expected, with its reason
    b_row = re.search(r"<tr><td>b</td>.*?</tr>", sec, flags=re.S).group(0)
    assert 'class="exp"' in b_row and "Setting b leaves the regime." in b_row
    # the contents badges: the same counts
    box = summary_box(text)
    for badge, cls in [
        ("2 agree", "ok"),
        ("2 deviate as expected", "exp"),
        ("1 deviate", "dev"),
        ("1 missing", "missing"),
    ]:
        assert f'<span class="badge {cls}">{badge}</span>' in box


def test_summary_box_one_line_per_run_with_key_number_paper_and_theory(expecting, tmp_path):
    runs = [planted(tmp_path / "a"), planted(tmp_path / "b", acc=0.9)]
    text = write_report(runs, out=tmp_path / "r.html").read_text()
    check_html(text)
    box = summary_box(text)
    assert text.index(box) < text.index('<section id="run-1">')  # at the top
    rows = re.findall(r"<tr><td><a href=\"#(run-\d)\">(.*?)</a>.*?</tr>", box, flags=re.S)
    assert [(anchor, title) for anchor, title in rows] == [
        ("run-1", "Fake claim title"),
        ("run-2", "Fake claim title"),
    ]
    lines = re.findall(r"<tr><td><a href.*?</tr>", box, flags=re.S)
    # the key number: the first check with a closed form, its verdict, the paper's, the theory
    assert "<summary>accuracy</summary><code>acc</code>" in plain(lines[0])
    assert '<td class="num ok">0.52 [0.5, 0.54] <small>agrees</small></td>' in lines[0]
    assert '<td class="num dev">0.9 [0.5, 0.54] <small>deviates</small></td>' in lines[1]
    assert "<td>—</td>" in lines[0]  # FAKE reproduces no figure of the paper
    assert '<td class="num">0.5 = 1/2</td>' in lines[0]
    # the totals over both runs, by hand: agree 2 + 1, as expected 2 + 2, deviate 1 + 2
    totals = box[box.index('<p class="totals">') : box.index("</p>", box.index("totals"))]
    for badge in (
        "3 agree",
        "4 deviate as the paper or our closed forms predict",
        "3 deviate unexpectedly",
        "2 missing",
    ):
        assert f">{badge}</span>" in totals


def test_experiments_declare_the_deviations_the_paper_predicts():
    from featavg.experiments import synthetic_ablations, synthetic_robustness
    from featavg.experiments.registry import EXPERIMENTS

    exp = EXPERIMENTS["synthetic-ablations"]
    cfg = exp.config_cls()
    expected = exp.grid.expected(cfg)
    # the paper's appendix: the pattern fades from init std 1e-3 (He init: std sqrt(2/d)
    # = 0.0255 at d = 3072); a learning rate above the base one; adversarial training
    names = {s.name for s in synthetic_ablations.settings(cfg)}
    assert {"init std 0.001", "init std 0.01", "He init (std 0.0255)", "lr 0.01"} <= names
    assert set(expected) == {
        "init std 0.001",
        "init std 0.01",
        "He init (std 0.0255)",
        "lr 0.01",
        "adversarial training eps 20",
        "adversarial training eps 40",
    }
    assert all(e.side == "below" and e.reason for e in expected.values())
    # synthetic-robustness: every PGD 50% radius may lie above its closed form, and only those
    rob = EXPERIMENTS["synthetic-robustness"]
    checks = rob.checks(rob.config_cls())
    flagged = {c.key for c in checks if c.expected is not None}
    pgd = {c.key for c in checks if c.key.startswith("radius50_") and "exact" not in c.key}
    assert flagged == pgd and len(pgd) == len(synthetic_robustness.READOUTS)
    assert all(c.expected.side == "above" for c in checks if c.expected is not None)


def test_the_page_names_no_reference_an_outside_reader_cannot_follow(tiny_runs):
    from pathlib import Path

    _, report = tiny_runs
    text = Path(report).read_text(encoding="utf-8")
    for needle in ("specification", "SPEC", "§", "issue #", "experiment table, row"):
        assert needle not in text, needle
    assert not re.search(r"\bissue \d", text)
