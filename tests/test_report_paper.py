"""The paper beside us: the reference data file (every entry with its source) and the
report block that holds a run against it."""

import re
import sys
import tomllib
import types
from dataclasses import replace
from importlib import resources

import pytest
from markupsafe import escape

from featavg.config import ConfigError
from featavg.reference import ENTRY_KINDS, SOURCE_KINDS, load_references
from featavg.report import write_report
from test_report import FAKE, check_html, fake_run, plain, sections

TINY = {"data": {"d": 60, "k": 4, "n_train": 80, "n_test": 40}, "train": {"steps": 20}}


def raw_data() -> dict:
    """The packaged data file parsed by tomllib alone (not by the module under test)."""
    text = resources.files("featavg.reference").joinpath("paper_values.toml").read_text("utf-8")
    return tomllib.loads(text)


# --- the data file --------------------------------------------------------------------------


def test_every_entry_of_the_data_file_has_a_source():
    data = raw_data()
    sources = data["sources"]
    assert sources and all(
        s["text"].strip() and s["kind"] in SOURCE_KINDS for s in sources.values()
    )
    assert any(s["kind"] == "paper" for s in sources.values())
    n = 0
    for fid, fig in data["figures"].items():
        assert fig["title"].strip() and fig["source"] in sources and fig["where"].strip(), fid
        ids = [e["id"] for e in fig["entries"]]
        assert len(ids) == len(set(ids)), fid
        for e in fig["entries"]:
            n += 1
            where = f"{fid}.{e['id']}"
            assert e["source"] in sources and e["where"].strip(), where
            assert e["kind"] in ENTRY_KINDS, where
            if e["kind"] == "setting":
                assert "value" in e, where
            elif "value" not in e:  # no number: the entry says what the paper shows instead
                assert e["statement"].strip(), where
    assert n >= 30
    # the loader reads the same file into the same entries, each citing its source
    figures = load_references()
    assert list(figures) == list(data["figures"])
    for fid, fig in figures.items():
        assert [e.id for e in fig.entries] == [e["id"] for e in data["figures"][fid]["entries"]]
        for e in fig.entries:
            assert e.source.text in e.citation and e.where in e.citation


def test_the_project_spec_is_never_cited_as_the_paper():
    data = raw_data()
    for key, source in data["sources"].items():
        if source["kind"] == "paper":
            assert "arXiv 2410.10322" in source["text"], key
        else:
            assert "not the paper" in source["text"], key


def test_every_experiment_names_figures_of_the_data_file():
    from featavg.experiments.registry import EXPERIMENTS

    figures = load_references()
    named = {ref for exp in EXPERIMENTS.values() for ref in exp.paper_refs}
    assert named <= set(figures), named - set(figures)
    assert {"fig2ab", "fig3_left", "ablations", "adv_training"} <= named
    assert EXPERIMENTS["synthetic-alignment"].paper_refs == ("fig2ab",)


GOOD_ENTRY = 'id = "a"\nlabel = "A"\nkind = "setting"\nvalue = 1\nsource = "s"\nwhere = "p. 1"\n'


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (GOOD_ENTRY.replace('source = "s"\n', ""), r"entries\[0\]\.source: a non-empty string"),
        (GOOD_ENTRY.replace('where = "p. 1"', 'where = " "'), r"entries\[0\]\.where"),
        (GOOD_ENTRY.replace('source = "s"', 'source = "t"'), r"\.source: 't' is not one of"),
        (GOOD_ENTRY.replace("value = 1\n", ""), r"\.value: a setting needs its value"),
        (GOOD_ENTRY.replace('kind = "setting"', 'kind = "guess"'), r"\.kind: 'guess'"),
        (GOOD_ENTRY + "colour = 1\n", r"unknown field 'colour'"),
        (GOOD_ENTRY.replace("value = 1\n", "").replace("setting", "result"), r"\.statement"),
        (GOOD_ENTRY + "tol = 0.1\n", r"\.ours: a tolerance compares exactly one"),
    ],
)
def test_a_malformed_data_file_is_a_one_line_config_error(tmp_path, entry, message):
    path = tmp_path / "values.toml"
    path.write_text(
        '[sources.s]\ntext = "the paper"\nkind = "paper"\n'
        '[figures.f]\ntitle = "F"\nsource = "s"\nwhere = "Fig. 1"\n'
        f"[[figures.f.entries]]\n{entry}"
    )
    with pytest.raises(ConfigError, match=message) as err:
        load_references(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


# --- the report block: the run's setup beside the paper's ------------------------------------


@pytest.fixture(scope="module")
def tiny_alignment(tmp_path_factory):
    from featavg.experiments.runner import run_experiment

    out = tmp_path_factory.mktemp("paper") / "align"
    return run_experiment("synthetic-alignment", overrides=TINY, out=out).directory


def setup_block(section: str) -> str:
    start = section.index('<div class="setup">')
    return plain(section[start : section.index('<p class="note prov">', start)])


def test_setup_block_names_every_setting_that_differs_and_the_statements(tiny_alignment, tmp_path):
    text = write_report([tiny_alignment], out=tmp_path / "r.html").read_text(encoding="utf-8")
    check_html(text)
    (sec,) = sections(text)
    block = setup_block(sec)
    fig = raw_data()["figures"]["fig2ab"]
    differs = block[
        block.index("Differs from the paper:") : block.index("</p>", block.index("Differs"))
    ]
    same = block[block.index("As in the paper:") : block.index("</p>", block.index("As in the"))]
    # the tiny run overrides d, n and the steps (TINY), not the learning rate or m: by hand
    assert "input dimension d: 60 (the paper: 3072)" in differs
    assert "training points n: 80 (the paper: 1000)" in differs
    assert "full-batch GD steps: 20 (the paper: 100)" in differs
    assert "learning rate: 0.001" in same and "learning rate" not in differs
    assert "clusters k: 4 (the paper: 10)" in differs
    settings = [e for e in fig["entries"] if e["kind"] == "setting" and "config" in e]
    for e in settings:  # every setting of the figure is in exactly one of the two lines
        label = str(escape(e["label"]))
        assert (label + ":" in differs) != (label + ":" in same), e["id"]
    # what the paper states, folded, with this run's numbers and the known differences
    assert str(escape(fig["title"])) in block
    assert "arXiv 2410.10322 v2 (1 Mar 2025), abstract, sentence 4" in block
    assert "This run: cos_same_class_mean_binary = " in block
    assert str(escape(fig["differences"][0])) in block
    # no table of dashes: the paper gives no number for this figure, said in one line
    assert "<table>" not in block and "The paper gives no number in these figures" in block
    # nothing an outside reader cannot follow: no internal section numbers or names
    assert "specification" not in text and "§" not in block and "experiment table" not in block


def test_setup_block_compares_numbers_and_reports_unknown_figures(monkeypatch, tmp_path):
    path = tmp_path / "values.toml"
    path.write_text(
        '[sources.p]\ntext = "Paper, Table 9"\nkind = "paper"\n'
        '[sources.q]\ntext = "Spec summary (not the paper)"\nkind = "project spec"\n'
        '[figures.figx]\ntitle = "Fig. X"\nsource = "p"\nwhere = "Fig. X"\n'
        'differences = ["We use exact radii."]\n'
        '[[figures.figx.entries]]\nid = "k"\nlabel = "k same"\nkind = "setting"\nvalue = 4\n'
        'config = "k"\nsource = "p"\nwhere = "Fig. X"\n'
        '[[figures.figx.entries]]\nid = "k8"\nlabel = "k other"\nkind = "setting"\nvalue = 8\n'
        'config = "k"\nsource = "q"\nwhere = "§2"\nnote = "we chose 4"\n'
        '[[figures.figx.entries]]\nid = "nope"\nlabel = "no field"\nkind = "setting"\n'
        'value = 1\nconfig = "net.m"\nsource = "p"\nwhere = "Fig. X"\n'
        '[[figures.figx.entries]]\nid = "stmt"\nlabel = "a claim"\nkind = "statement"\n'
        'statement = "Units average."\nours = ["acc"]\nsource = "q"\nwhere = "§4"\n'
        '[[figures.figx.entries]]\nid = "acc"\nlabel = "acc close"\nkind = "result"\n'
        'value = 0.5\ntol = 0.05\nours = ["acc"]\nsource = "p"\nwhere = "Fig. X"\n'
        '[[figures.figx.entries]]\nid = "acc2"\nlabel = "acc far"\nkind = "result"\n'
        'value = 0.9\napprox = true\ntol = 0.1\nours = ["acc"]\nsource = "p"\nwhere = "Fig. X"\n'
        'note = "we think: fewer steps"\n'
    )
    figures = load_references(path)

    def lookup(fid):
        if fid not in figures:
            raise ConfigError(f"paper reference {fid!r}: not in the data file")
        return figures[fid]

    monkeypatch.setattr("featavg.report.paper.paper_figure", lookup)
    monkeypatch.setattr("featavg.report.view_summary.paper_figure", lookup)
    exp = replace(FAKE, paper_refs=("figx", "missing"))
    registry = types.ModuleType("featavg.experiments.registry")
    registry.EXPERIMENTS = {"fake-exp": exp}
    monkeypatch.setitem(sys.modules, "featavg.experiments.registry", registry)

    text = write_report([fake_run(tmp_path / "run")], out=tmp_path / "r.html").read_text()
    check_html(text)
    (sec,) = sections(text)
    block = setup_block(sec)
    assert "<strong>As in the paper:</strong> k same: 4." in block
    assert "k other: 4 (the paper: 8; we chose 4)" in block
    assert "no field: 1 in the paper (not a setting here)" in block
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr><td>([^<]+)</td>.*?</tr>", block)}
    assert '<td class="ok">agrees (Δ +0.02; tolerance ±0.05)' in rows["acc close"]
    assert "acc = 0.52 [0.5, 0.54]" in rows["acc close"]
    assert "≈ 0.9" in rows["acc far"]
    assert '<td class="dev">differs (Δ -0.38; tolerance ±0.1)' in rows["acc far"]
    assert "we think: fewer steps" in rows["acc far"]
    # a summary we worked from is named as such, without its internal location
    assert "a claim: Units average. (source: the paper, as summarised for us" in block
    assert "§4" not in block and "Spec summary" not in block
    assert "<summary>Fig. X <small>(Paper, Table 9, Fig. X)</small></summary>" in block
    assert "<li>Where we differ: We use exact radii.</li>" in block
    assert '<p class="problem" role="note">paper reference &#39;missing&#39;' in block
    # the summary box puts the paper's published number beside the key number
    box = text[text.index('<section class="summary"') : text.index("</section>")]
    assert "<td>0.5</td>" in box  # the first published number naming acc, the key check


def test_no_paper_block_without_references(tmp_path, monkeypatch):
    registry = types.ModuleType("featavg.experiments.registry")
    registry.EXPERIMENTS = {"fake-exp": FAKE}
    monkeypatch.setitem(sys.modules, "featavg.experiments.registry", registry)
    text = write_report([fake_run(tmp_path / "run")], out=tmp_path / "r.html").read_text()
    assert "As in the paper" not in text and "Differs from the paper" not in text
    assert "The paper gives no number" not in text
