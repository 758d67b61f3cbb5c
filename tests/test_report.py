"""The HTML report: one self-contained page, a section per run, theory beside each number."""

import argparse
import hashlib
import json
import re
import shutil
import sys
import types
from dataclasses import replace
from html.parser import HTMLParser

import pytest
from pydantic import BaseModel, ConfigDict

from featavg.config import ConfigError
from featavg.experiments.costs import negligible
from featavg.experiments.spec import Check, Claim, Experiment, GridCheck
from featavg.report import add_report_parser, discover, report_command, write_report
from featavg.report.view import fmt

TINY = {
    "data": {"d": 60, "k": 4, "n_train": 80, "n_test": 40},
    "train": {"steps": 20},
}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class TagChecker(HTMLParser):
    """Records unbalanced tags and every src / href value."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.urls = [], [], []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src", "href") and v is not None]

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def check_html(text: str) -> TagChecker:
    checker = TagChecker()
    checker.feed(text)
    checker.close()
    assert not checker.errors, checker.errors[:5]
    assert not checker.stack, f"unclosed: {checker.stack}"
    return checker


def sections(text: str) -> list[str]:
    return re.findall(r'<section id="[^"]+">.*?</section>', text, flags=re.S)


def plain(text: str) -> str:
    """The page without the <wbr> break hints inside identifiers."""
    return text.replace("<wbr>", "")


def row_of(text: str, key: str) -> str:
    """The table row whose quantity is the summary key ``key`` (its label, with the key one
    click away)."""
    pattern = rf'<tr><td><details class="more"><summary>[^<]*</summary><code>{key}</code>.*?</tr>'
    match = re.search(pattern, plain(text), flags=re.S)
    assert match, key
    return match.group(0)


def summary_box(text: str) -> str:
    """The summary box at the top of the page."""
    start = text.index('<section class="summary"')
    return text[start : text.index("</section>", start)]


def seal(directory):
    """Write the run's manifest.json (sha256 of every other file) as featavg does, computed
    here independently: a hand-made or edited directory is then a whole run again."""
    files = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name != "manifest.json"
    }
    (directory / "manifest.json").write_text(json.dumps({"files": files}))
    return directory


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny finished runs: alignment (2 figures) and robustness (3 seeds, exact radii)."""
    from featavg.experiments.runner import run_experiment

    base = tmp_path_factory.mktemp("runs")
    align = run_experiment("synthetic-alignment", overrides=TINY, out=base / "align")
    robust = run_experiment(
        "synthetic-robustness",
        overrides={**TINY, "seeds": 3, "attack": {"radii": [0, 2, 4, 6, 8]}},
        out=base / "robust",
    )
    return align.directory, robust.directory


def copy_run(src, dst, **changes):
    """A copy of a run directory with top-level summary entries replaced (a run that wrote
    them: its manifest is written again)."""
    shutil.copytree(src, dst)
    path = dst / "summary.json"
    summary = json.loads(path.read_text())
    summary.update(changes)
    path.write_text(json.dumps(summary))
    return seal(dst)


def test_report_sections_figures_theory_and_self_contained(runs, tmp_path):
    align, robust = runs
    out = write_report([align, robust], out=tmp_path / "r.html")
    assert out == tmp_path / "r.html"
    text = out.read_text(encoding="utf-8")
    checker = check_html(text)

    secs = sections(text)
    assert len(secs) == 2
    assert "synthetic-alignment" in secs[0] and "synthetic-robustness" in secs[1]
    for sec, directory in zip(secs, runs, strict=True):
        n_png = len(list(directory.glob("*.png")))
        assert n_png >= 1
        assert sec.count("data:image/png;base64,") == n_png

    # measured beside theory: alignment (k = 4: 1/sqrt(2)) and robustness (sqrt(d/k))
    s_align = json.loads((align / "summary.json").read_text())
    row = row_of(text, "cos_same_class_mean_binary")
    assert fmt(s_align["cos_same_class_mean_binary"]) in row
    assert fmt(s_align["theory_cos_same_class"]) == "0.7071" and "0.7071" in row
    assert "agrees" in row or "deviates" in row
    s_rob = json.loads((robust / "summary.json").read_text())
    row = row_of(text, "exact_median_radius_binary")
    assert fmt(s_rob["exact_median_radius_binary"]) in row
    assert fmt(s_rob["theory_radius_feature_averaging"]) == "3.873" and "3.873" in row
    lo, hi = s_rob["exact_median_radius_binary_ci95"]
    assert f"[{fmt(lo)}, {fmt(hi)}]" in row  # 3 seeds: the interval is shown

    # nothing outside the page: only data: images and in-page anchors
    assert "http://" not in text and "https://" not in text
    assert checker.urls
    for url in checker.urls:
        assert url.startswith("data:image/png;base64,") or url.startswith("#"), url[:40]
    anchors = set(re.findall(r'id="([^"]+)"', text))
    for url in checker.urls:
        if url.startswith("#"):
            assert url[1:] in anchors
    # header, summary box, config, provenance, footer
    assert "featavg report" in text and "2 runs" in text
    box = summary_box(text)
    assert box.count('<a href="#run-') == 2
    assert "<summary>Config and provenance</summary>" in text
    commit = s_rob["provenance"]["git_commit"][:12]
    assert f"git {commit}" in text and text.count('class="note prov"') == 2  # one line each
    assert "featavg report RUN_DIR" in text


def test_run_notes_are_shown_escaped(runs, tmp_path):
    align, robust = runs
    note = "exact radii not computed for <i>binary net</i> (18 units)"
    noted = copy_run(robust, tmp_path / "noted", notes=[note])
    text = write_report([noted, align], out=tmp_path / "r.html").read_text()
    check_html(text)
    first, second = sections(text)
    assert "About this run" in first and "About this run" not in second
    assert "&lt;i&gt;binary net&lt;/i&gt; (18 units)" in first and "<i>binary" not in text


def test_stand_in_banner_and_escaping(runs, tmp_path):
    align, robust = runs
    data = 'stand-in: synthetic CIFAR-10 <b>seeded</b> & "x"'
    fake = copy_run(align, tmp_path / "fake", data=data, stand_in=True)
    text = write_report([fake, robust], out=tmp_path / "r.html").read_text()
    check_html(text)
    secs = sections(text)
    assert 'class="banner"' in secs[0] and 'class="banner"' not in secs[1]
    assert summary_box(text).count("stand-in data") == 1
    assert "<b>seeded</b>" not in text and "&lt;b&gt;seeded&lt;/b&gt;" in text
    assert "&amp; &#34;x&#34;" in text


def test_default_discovery_orders_runs_and_renders_sweeps(runs, tmp_path):
    align, robust = runs
    root = tmp_path / "runs"
    # names sort opposite to the paper's order: the report must follow the paper
    copy_run(robust, root / "a-robustness")
    copy_run(align, root / "b-alignment")
    sweep = root / "c-sweep"  # a sweep without sweep.json: cells found under cells/
    copy_run(align, sweep / "cells" / "lr=0.001")
    copy_run(align, sweep / "cells" / "lr=0.01")
    (sweep / "sweep.csv").write_text(
        "train.lr,cos_same_class_mean_binary,cos_same_class_mean_binary_lo,"
        "cos_same_class_mean_binary_hi,cell\n0.001,0.7,0.69,0.71,lr=0.001\n"
        "0.01,0.69,0.68,0.7,lr=0.01\n"
    )
    shutil.copy(next(align.glob("*.png")), sweep / "sweep.png")
    (root / "not-a-run").mkdir()

    found, sweeps = discover(root)
    assert [p.name for p in found] == ["a-robustness", "b-alignment"]
    assert [p.name for p in sweeps] == ["c-sweep"]

    out = write_report(root=root)
    assert out == root / "report.html"
    text = out.read_text()
    check_html(text)
    secs = sections(text)
    assert len(secs) == 3  # two runs and the sweep
    names = [re.search(r"experiment <code>([^<]+)</code>", s).group(1) for s in secs[:2]]
    assert names == ["synthetic-alignment", "synthetic-robustness"]
    assert "Sweep c-sweep" in secs[2] and "2 finished cells" in secs[2]
    assert "0.7<br><small>[0.69, 0.71]</small>" in secs[2]  # mean with its folded interval
    assert secs[2].count("data:image/png;base64,") == 1
    assert secs[2].count("<code>lr=0.0") == 2  # both cells beside the theory


def test_real_sweep_directory(tmp_path):
    from featavg.api import run_sweep

    sweep = run_sweep(
        "synthetic-alignment",
        {"train.lr": [0.001, 0.01]},
        overrides=TINY,
        out=tmp_path / "sweep",
        progress=False,
    )
    text = write_report([sweep.directory], out=tmp_path / "r.html").read_text()
    check_html(text)
    (sec,) = sections(text)
    assert "Sweep of synthetic-alignment over train.lr" in sec
    assert "2 finished cells" in sec and sec.count("data:image/png;base64,") == 1
    assert "cos_same_class_mean_binary" in plain(sec) and "0.7071" in sec  # theory beside each cell


def test_unknown_experiment_renders_generically(runs, tmp_path):
    align, _ = runs
    other = copy_run(
        align, tmp_path / "other", experiment="my-experiment", foo=2.0, theory_foo=4.0, bar=None
    )
    text = write_report([other], out=tmp_path / "r.html").read_text()
    check_html(text)
    row = row_of(text, "foo")
    assert "deviates" in row and ">2<" in row and "4" in row
    assert "n/a" in text


def test_missing_or_unfinished_run_dir_raises(tmp_path):
    with pytest.raises(ConfigError, match="not found: .*nowhere"):
        write_report([tmp_path / "nowhere"], out=tmp_path / "r.html")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty: no summary.json") as err:
        write_report([tmp_path / "empty"], out=tmp_path / "r.html")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="no finished runs"):
        write_report(root=tmp_path / "empty")
    with pytest.raises(ConfigError, match="root not found"):
        write_report(root=tmp_path / "missing-root")


def test_report_subcommand(runs, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "sub" / "report.html"
    args = parser.parse_args(["report", *map(str, runs), "--out", str(out)])
    assert args.root == "runs"
    assert report_command(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.stat().st_size > 10_000
    args = parser.parse_args(["report", str(tmp_path / "nope")])
    with pytest.raises(ConfigError):
        report_command(args)


def test_number_formatting():
    assert fmt(0.447213595) == "0.4472"
    assert fmt(17.471999) == "17.47"
    assert fmt(20.0) == "20"
    assert fmt(None, "radius50_binary") == "n/a (beyond the grid)"
    assert fmt(float("inf"), "pgd_radius50_binary") == "n/a (beyond the grid)"
    assert fmt(None, "cos_same_class_mean_binary") == "n/a"
    assert fmt(3) == "3" and fmt(True) == "yes"
    assert fmt(50000.0) == "50000"


# --- hand-made runs of a fake experiment: no training, the report's own behaviour ------------

PNG = b"\x89PNG\r\n\x1a\n fake"  # the page embeds the bytes; it never decodes them


class FakeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    k: int = 4


FAKE = Experiment(
    name="fake-exp",
    description="a fake experiment",
    config_cls=FakeConfig,
    run=lambda cfg, ctx: None,
    cost=negligible,
    claim=Claim("Fake claim title", "The paper says <i>this</i>.", "We add that."),
    figures={"second": "Declared second", "first": "Declared first"},
    checks=lambda cfg: [
        Check("accuracy", "acc", 0.5, "1/2", 0.1),
        Check("radius", "radius", "theory_radius", "√(d/k)", 0.1, relative=True),
    ],
    grid=GridCheck("settings", "cos", "theory_cos", "theory_cos_default", "1/√k", 0.05),
)


@pytest.fixture
def fake_registry(monkeypatch):
    """A registry of two fake experiments, standing in for the real one (not even imported:
    these tests exercise the report alone)."""
    other = replace(FAKE, name="aaa-other", claim=Claim("Other", "Other claim."), grid=None)
    registry = types.ModuleType("featavg.experiments.registry")
    registry.EXPERIMENTS = {"fake-exp": FAKE, "aaa-other": other}
    monkeypatch.setitem(sys.modules, "featavg.experiments.registry", registry)


def fake_run(directory, pngs=("extra", "first", "second"), **changes):
    """A finished run directory of the fake experiment (summary, PNGs, one CSV)."""
    summary = {
        "experiment": "fake-exp",
        "data": "none (synthetic)",
        "config": {"k": 4},
        "acc": 0.52,
        "acc_ci95": [0.5, 0.54],
        "radius": 3.0,
        "bar": None,
        "theory_cos_default": 0.5,
        "settings": {"a": {"cos": 0.5, "theory_cos": 0.5}, "b": {"cos": 0.9, "cos_ci95": [0.8, 1]}},
        "per_seed": {"acc": [0.5, 0.54]},
        "provenance": {"git_commit": "abc123", "wall_time_s": 1.5},
        **changes,
    }
    directory.mkdir(parents=True)
    (directory / "summary.json").write_text(
        json.dumps({k: v for k, v in summary.items() if v != ...})
    )
    for name in pngs:
        (directory / f"{name}.png").write_bytes(PNG)
    (directory / "curve.csv").write_text("radius,acc\n0,1.0\n2,0.5\n")
    return seal(directory)


def test_fake_run_checks_missing_rows_grid_and_figures(fake_registry, tmp_path):
    text = write_report([fake_run(tmp_path / "run")], out=tmp_path / "r.html").read_text()
    check_html(text)
    (sec,) = sections(text)
    assert "<h2>Fake claim title</h2>" in sec and "<strong>What the paper claims.</strong>" in sec
    assert "The paper says &lt;i&gt;this&lt;/i&gt;." in sec and "We add that." in sec
    # declared figures first, in the declared order, then the rest; captions beside them
    assert re.findall(r'alt="([^"]+)"', sec) == ["second", "first", "extra"]
    assert "<code>first.png</code> — Declared first" in sec
    row = row_of(sec, "acc")
    assert "0.52" in row and "[0.5, 0.54]" in row and "0.5 = 1/2" in row
    assert '<td class="ok">agrees' in row
    row = row_of(sec, "radius")  # its theory key is not in the summary: shown, as a problem
    assert '<td class="missing">missing from the summary: theory_radius</td>' in row
    # the grid check: a verdict per setting, intervals beside the values
    assert "<th>Verdict against 1/√k</th><th><code>cos</code></th>" in sec
    assert "0.9 <small>[0.8, 1]</small>" in sec and '<td class="dev">deviates' in sec
    assert "<summary>All numbers (4)</summary>" in sec and "n/a" in sec
    assert "<summary>Table <code>curve.csv</code> <small>(2 rows)</small></summary>" in sec
    assert "<summary>Config and provenance</summary>" in sec
    assert "git abc123" in sec and "1.5 s" in sec
    box = summary_box(text)
    for badge in ("2 agree", "1 deviate", "1 missing"):
        assert f">{badge}</span>" in box
    assert "stand-in data" not in box and 'class="banner"' not in sec


def test_fake_run_problems_are_shown_not_raised(fake_registry, tmp_path):
    bad_config = fake_run(tmp_path / "bad-config", config={"k": "many"})
    no_grid = fake_run(tmp_path / "no-grid", settings=..., stand_in=True, data="mine")
    (no_grid / "broken.csv").write_bytes(b"\xff\xfe\x00bad")
    seal(no_grid)
    text = write_report([bad_config, no_grid], out=tmp_path / "r.html").read_text()
    check_html(text)
    first, second = sections(text)
    assert '<p class="problem" role="note">Checks unavailable: config field k' in first
    assert "<summary>accuracy</summary>" not in first  # no check rows without the config
    assert "missing from the summary: the settings table &#39;settings&#39;" in second
    assert "broken.csv: unreadable" in second
    assert 'class="banner"' in second and "<em>mine</em>" in second  # the stand_in flag
    box = summary_box(text)
    assert ">1 missing<" in box and ">2 missing<" in box  # the config; theory_radius, the grid
    assert box.count("stand-in data") == 1


def test_fake_escaping_and_self_contained(fake_registry, tmp_path):
    evil = "<script>alert(1)</script>"
    run = fake_run(
        tmp_path / "<script>dir",
        pngs=['x"<y>'],
        data=evil,
        provenance={"host": evil},
        points=[{"name": evil, "v": 1}],
    )
    (run / "curve.csv").write_text(f"name,v\n{evil},1\n")
    seal(run)
    text = write_report([run], out=tmp_path / "r.html").read_text()
    checker = check_html(text)
    assert text.count("<script") == 1  # the page's own print script, nothing else
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert 'alt="x&#34;&lt;y&gt;"' in text
    assert "http://" not in text and "https://" not in text
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in checker.urls)


def test_fake_discovery_follows_the_registry_and_renders_a_sweep(fake_registry, tmp_path):
    root = tmp_path / "runs"
    for name, experiment in [
        ("1", "zzz-unknown"),
        ("2", "aaa-unknown"),
        ("3", "aaa-other"),
        ("4", "fake-exp"),
    ]:
        fake_run(root / name, experiment=experiment)
    sweep = root / "sweep"
    fake_run(sweep / "cells" / "k=2", stand_in=True)
    fake_run(sweep / "cells" / "k=4", acc=0.9)
    cells = [{"directory": f"cells/k={k}", "values": {"data.k": k}} for k in (2, 4)]
    spec = {"experiment": "fake-exp", "grid": {"data.k": [2, 4]}, "seeds": 3, "cells": cells}
    (sweep / "sweep.json").write_text(json.dumps(spec))
    (sweep / "sweep.csv").write_text(
        "cell,data.k,acc,acc_lo,acc_hi,theory,theory_lo,theory_hi\n"
        "k=2,2,0.52,0.5,0.54,0.5,0.5,0.5\nk=4,4,0.9,0.8,1.0,0.5,0.5,0.5\n"
    )
    (sweep / "sweep.png").write_bytes(PNG)
    text = write_report(root=root).read_text()
    check_html(text)
    secs = sections(text)
    titles = [re.search(r"<h2>([^<]+)</h2>", s).group(1) for s in secs]
    assert titles == [
        "Fake claim title", "Other", "aaa-unknown", "zzz-unknown",
        "Sweep of fake-exp over data.k",
    ]  # fmt: skip
    assert "About this experiment" in secs[2]  # an unknown experiment: a generic claim
    sec = secs[-1]
    assert "2 finished cells" in sec and "data.k ∈ {2, 4}" in sec and "3 seeds per cell" in sec
    assert 'class="banner"' in sec and sec.count("data:image/png;base64,") == 1
    assert "0.52<br><small>[0.5, 0.54]</small>" in sec
    assert '<td class="num">0.5</td>' in sec  # a constant column: no interval
    assert '<code>k=2</code><span class="badge standin">' in sec and "data.k=4" in sec
    assert "0.52 vs 0.5 = 1/2<br><code>acc</code>" in sec
    assert '<td class="dev">deviates' in sec and "1 missing" in sec
    assert "<summary><code>sweep.json</code> (grid and base config)</summary>" in sec


# --- polish: titles name their overrides, tables fit a page, printing, no outside files -------


def test_titles_name_the_fields_that_differ_from_the_defaults(runs, tmp_path):
    align, robust = runs
    text = write_report([align, robust], out=tmp_path / "r.html").read_text()
    titles = re.findall(r"<h2>([^<]+)</h2>", text)[1:]  # after "Contents"
    # TINY, in the config's order (data, net, train, seeds, attack)
    tiny = "data.d=60, data.k=4, data.n_train=80, data.n_test=40, train.steps=20"
    assert titles[0].endswith(f") ({tiny})")
    assert titles[1].endswith(f") ({tiny}, seeds=3, … 1 more in the config)")  # attack.radii
    box = summary_box(text)  # the claims in one line each, linked to their sections
    for title, anchor in zip(titles, ("run-1", "run-2"), strict=True):
        claim = title[: title.rindex(" (")]
        assert f'<a href="#{anchor}">{claim}</a>' in box


def test_fake_titles_default_and_overridden(fake_registry, tmp_path):
    runs = [fake_run(tmp_path / "a"), fake_run(tmp_path / "b", config={"k": 6, "old": [1, 2]})]
    text = write_report(runs, out=tmp_path / "r.html").read_text()
    titles = re.findall(r"<h2>([^<]+)</h2>", text)[1:]
    assert titles == ["Fake claim title", "Fake claim title (k=6, old=[1, 2])"]


def test_check_table_puts_the_verdict_before_the_numbers(fake_registry, tmp_path):
    metrics = {f"metric_{i}": 0.1 * i for i in range(6)}
    run = fake_run(
        tmp_path / "run",
        settings={"a": {"cos": 0.5, **metrics}, "b": {"cos": 0.9, **metrics}},
    )
    text = write_report([run], out=tmp_path / "r.html").read_text()
    check_html(text)
    heads = [
        re.findall(r"<th>(.*?)</th>", t) for t in re.findall(r"<table>.*?</table>", text, re.S)
    ]
    checks = next(h for h in heads if h and h[0] == "Quantity")
    assert checks == ["Quantity", "Verdict", "Measured (mean, 95% interval)", "Theory"]
    # seven metrics: four beside the verdict, the other three folded
    grids = [h for h in heads if h and h[0] == "settings"]
    assert [len(h) for h in grids] == [6, 4]
    assert grids[0][1] == "Verdict against 1/√k" and "<code>cos</code>" in grids[0][2]
    assert "<summary>settings: 3 more columns</summary>" in text
    assert "Note" not in checks  # the check's note is one click away, under its quantity
    row = row_of(text, "acc")
    assert row.index('class="ok"') < row.index("0.52")


def test_print_opens_only_small_folds(runs, tmp_path):
    text = write_report(list(runs), out=tmp_path / "r.html").read_text()
    (script,) = re.findall(r"<script>(.*?)</script>", text, re.S)
    assert 'querySelectorAll("details.print-open:not([open])")' in script
    assert 'querySelectorAll("details")' not in script
    folds = re.findall(r"<details([^>]*)><summary>(.*?)</summary>", text, re.S)
    opened = {plain(summary) for attrs, summary in folds if "print-open" in attrs}
    assert "Config and provenance" in opened  # one per run section, and the run's notes
    assert opened <= {"Config and provenance"} | {s for s in opened if s.startswith("About")}
    closed = [summary for attrs, summary in folds if "print-open" not in attrs]
    assert any("All numbers" in s for s in closed)
    assert sum("Table <code>" in s for s in closed) >= 2  # every CSV stays folded


def test_no_reference_to_files_outside_the_repository(tiny_runs):
    from pathlib import Path

    import featavg.reference
    import featavg.report

    _, report = tiny_runs
    text = Path(report).read_text(encoding="utf-8")
    assert "../shared" not in text and "SPEC.md" not in text
    for package in (featavg.report, featavg.reference):
        for path in Path(package.__file__).parent.rglob("*"):
            if path.is_file() and path.suffix in {".py", ".html", ".css", ".toml"}:
                source = path.read_text(encoding="utf-8")
                assert "../shared" not in source and "SPEC" not in source, path
