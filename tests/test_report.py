"""The HTML report: one self-contained page, a section per run, theory beside each number."""

import argparse
import json
import re
import shutil
from html.parser import HTMLParser

import pytest

from featavg.config import ConfigError
from featavg.experiments.runner import run_experiment
from featavg.report import add_report_parser, discover, report_command, write_report
from featavg.report.html import fmt

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


def row_of(text: str, key: str) -> str:
    """The table row whose quantity is the summary key ``key``."""
    match = re.search(rf"<tr><td>[^<]*<br><code>{key}</code>.*?</tr>", text, flags=re.S)
    assert match, key
    return match.group(0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny finished runs: alignment (2 figures) and robustness (3 seeds, exact radii)."""
    base = tmp_path_factory.mktemp("runs")
    align = run_experiment("synthetic-alignment", overrides=TINY, out=base / "align")
    robust = run_experiment(
        "synthetic-robustness",
        overrides={**TINY, "seeds": 3, "attack": {"radii": [0, 2, 4, 6, 8]}},
        out=base / "robust",
    )
    return align.directory, robust.directory


def copy_run(src, dst, **changes):
    """A copy of a run directory with top-level summary entries replaced."""
    shutil.copytree(src, dst)
    path = dst / "summary.json"
    summary = json.loads(path.read_text())
    summary.update(changes)
    path.write_text(json.dumps(summary))
    return dst


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
    # header, contents, config, provenance, footer
    assert "featavg report" in text and "2 runs" in text
    assert '<nav class="toc">' in text
    assert "<summary>Config</summary>" in text and "git commit" in text
    assert "featavg report RUN_DIR" in text


def test_stand_in_banner_and_escaping(runs, tmp_path):
    align, robust = runs
    data = 'stand-in: synthetic CIFAR-10 <b>seeded</b> & "x"'
    fake = copy_run(align, tmp_path / "fake", data=data)
    text = write_report([fake, robust], out=tmp_path / "r.html").read_text()
    check_html(text)
    secs = sections(text)
    assert 'class="banner"' in secs[0] and 'class="banner"' not in secs[1]
    toc = text[text.index('<nav class="toc">') : text.index("</nav>")]
    assert toc.count("stand-in data") == 1
    assert "<b>seeded</b>" not in text and "&lt;b&gt;seeded&lt;/b&gt;" in text
    assert "&amp; &quot;x&quot;" in text


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
    from featavg.sweep import run_sweep

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
    assert "cos_same_class_mean_binary" in sec and "0.7071" in sec  # theory beside each cell


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
