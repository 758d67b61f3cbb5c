"""The report's real-data parts: the stand-in banner (section and contents) and the plain
per-radius answer to "Is the 10-class model more robust than the binary one?".

Run directories are fabricated (summary.json, config.json, manifest.json through
featavg.runs) with the schema the real-data experiments write, so these tests need no
training."""

import re

import pytest

from featavg import runs
from featavg.report import write_report
from featavg.report.view_real import QUESTION, sentence

LABEL = "Fashion-MNIST (stand-in for MNIST)"


def more_robust_rows(radii, binary, tenclass):
    """``more_robust`` records as the experiments write them (difference, verdict)."""
    rows = []
    for r, b, t in zip(radii, binary, tenclass, strict=True):
        d = t - b
        verdict = "tie" if d == 0 else ("10-class more robust" if d > 0 else "binary more robust")
        rows.append(
            {
                "radius": r,
                "radius_pixel": r / 2,
                "binary": b,
                "group_argmax": t,
                "difference": d,
                "verdict": verdict,
            }
        )
    return rows


def real_run(directory, **entries):
    """A finished run directory of an (unregistered) real-data experiment."""
    summary = {
        "experiment": "my-real-experiment",
        "data": "MNIST: 6000 training / 2000 test images, 500 attacked; grouping parity",
        "stand_in": None,
        "clean_acc_binary": 0.99,
        "radius50_binary": 0.8,
        "config": {"seed": 0},
        "provenance": {"git_commit": "abc123", "wall_time_s": 60.0},
    }
    summary.update(entries)
    directory.mkdir(parents=True)
    runs.write_json(directory / "config.json", summary["config"])
    runs.write_json(directory / "summary.json", summary)
    runs.write_manifest(directory)
    return directory


def sections(text):
    return re.findall(r'<section id="[^"]+">.*?</section>', text, flags=re.S)


def toc_of(text):
    """The summary box at the top: a line per run, with its badges."""
    start = text.index('<section class="summary"')
    return text[start : text.index("</section>", start)]


def render(tmp_path, *dirs):
    text = write_report(list(dirs), out=tmp_path / "r.html").read_text(encoding="utf-8")
    return text, sections(text), toc_of(text)


def test_stand_in_label_is_named_in_the_banner_and_the_contents(tmp_path):
    stand_in = real_run(
        tmp_path / "fashion",
        stand_in=True,
        stand_in_label=LABEL,
        data=f"{LABEL}: 6000 training / 2000 test images",
    )
    as_text = real_run(tmp_path / "text-flag", stand_in="synthetic CIFAR-10 <stand-in>")
    real = real_run(tmp_path / "real")
    text, (first, second, third), toc = render(tmp_path, stand_in, as_text, real)
    assert 'class="banner"' in first and f"<em>{LABEL}</em>" in first
    assert f"stand-in data: {LABEL}</span>" in toc
    # a `stand_in` given as the label itself (the label is escaped like every string)
    assert "<em>synthetic CIFAR-10 &lt;stand-in&gt;</em>" in second
    assert "stand-in data: synthetic CIFAR-10 &lt;stand-in&gt;" in toc
    assert 'class="banner"' not in third and toc.count("stand-in data") == 2


def test_explicit_null_stand_in_means_the_real_data(tmp_path):
    # data text that the old heuristics would take for a stand-in: the null flag decides
    chosen = real_run(tmp_path / "chosen", data="fashion-mnist (chosen with --data)")
    legacy = real_run(tmp_path / "legacy", data="Fashion-MNIST stand-in")
    text, (first, second), toc = render(tmp_path, chosen, legacy)
    assert 'class="banner"' not in first
    # a summary without a stand_in entry (older runs): its data text still decides
    legacy_summary = (legacy / "summary.json").read_text()
    assert '"stand_in": null' in legacy_summary  # written by real_run: remove it below
    (legacy / "summary.json").write_text(legacy_summary.replace('"stand_in": null,', ""))
    runs.write_manifest(legacy)  # an older run, whole: its manifest vouches for this summary
    text, (first, second), toc = render(tmp_path, chosen, legacy)
    assert 'class="banner"' in second and "<em>Fashion-MNIST stand-in</em>" in second
    assert toc.count("stand-in data") == 1


def test_more_robust_table_and_sentence(tmp_path):
    radii = [0.0, 0.1, 0.2, 0.3, 0.4]
    binary = [0.99, 0.90, 0.60, 0.30, 0.10]
    tenclass = [0.98, 0.95, 0.70, 0.30, 0.05]
    run = real_run(
        tmp_path / "run",
        more_robust=more_robust_rows(radii, binary, tenclass),
        pixel_units="pixel radius = normalised radius / 2 (uniform std 0.5)",
    )
    text, (sec,), _ = render(tmp_path, run)
    assert f"<h3>{QUESTION}</h3>" in sec
    # independent count over radii > 0: 10-class ahead at 0.1 and 0.2, binary at 0.4, tie 0.3
    assert (
        '<p class="answer">10-class more robust at 2 of 4 radii &gt; 0 '
        "(binary more robust at 1, tie at 1).</p>"
    ) in sec
    table = sec[sec.index(f"<h3>{QUESTION}</h3>") :]
    table = table[: table.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)
    assert len(rows) == 1 + len(radii)
    assert "Radius (normalised)" in rows[0] and "Radius (pixel)" in rows[0]
    cells = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r) for r in rows[1:]]
    assert [c[0] for c in cells] == ["0<br><small>clean</small>", "0.1", "0.2", "0.3", "0.4"]
    assert [c[1] for c in cells] == ["0", "0.05", "0.1", "0.15", "0.2"]
    assert cells[1][2:] == ["0.9", "0.95", "+0.050", "10-class more robust"]
    assert cells[3][4:] == ["+0.000", "tie"] and cells[4][4:] == ["-0.050", "binary more robust"]
    assert "Pixel radii: pixel radius = normalised radius / 2" in sec


def test_more_robust_without_difference_or_verdict_is_derived(tmp_path):
    rows = [{"radius": 0.0, "binary": 0.9, "group_argmax": 0.8}]
    rows += [{"radius": 0.5, "radius_pixel": [0.1, 0.2], "binary": 0.2, "group_argmax": 0.6}]
    rows += [{"radius_pixel": 1.0}]  # no radius: left out, and said so
    run = real_run(tmp_path / "run", more_robust=rows)
    text, (sec,), _ = render(tmp_path, run)
    assert "10-class more robust at 1 of 1 radius &gt; 0." in sec
    assert "<td>binary more robust</td>" in sec  # radius 0, from 0.8 - 0.9
    assert '<td class="num">0.1–0.2</td>' in sec and '<td class="num">+0.400</td>' in sec
    assert "1 record(s) of more_robust without a radius are left out." in sec


def test_no_comparison_without_more_robust(tmp_path):
    text, (sec,), _ = render(tmp_path, real_run(tmp_path / "run"))
    assert QUESTION not in sec


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([(0.0, "tie")], "No radius > 0 was attacked: only the clean accuracies are compared."),
        ([(0.0, "tie"), (1.0, "tie")], "10-class more robust at 0 of 1 radius > 0 (tie at 1)."),
        (
            [(0.5, "10-class more robust"), (1.0, "10-class more robust")],
            "10-class more robust at 2 of 2 radii > 0.",
        ),
    ],
)
def test_sentence(verdicts, expected):
    assert sentence(verdicts) == expected


def test_pooled_rows_show_their_interval_sign_count_and_noise_band(tmp_path):
    """Rows of the pooled comparison get the interval over seeds and points, the sign
    count and the within-run 2 SE, labelled as test-point noise only."""
    rows = more_robust_rows([0.0, 0.5, 1.0], [0.9, 0.8, 0.5], [0.9, 0.82, 0.7])
    pooled = [(0.0, 0.0, 0, "no difference shown"), (-0.03, 0.07, 3, "no difference shown"),
              (0.12, 0.28, 5, "10-class more robust")]  # fmt: skip
    for row, (lo, hi, positive, verdict) in zip(rows, pooled, strict=True):
        row.update(lo=lo, hi=hi, positive=positive, seeds=5, verdict=verdict, two_se=0.04)
    text, (sec,), _ = render(tmp_path, real_run(tmp_path / "run", more_robust=rows))
    assert "95% interval (seeds and points)" in sec and "2 SE (test points only)" in sec
    assert '<td class="num">[+0.120, +0.280]</td>' in sec
    assert '<td class="num">5 of 5</td>' in sec and '<td class="num">3 of 5</td>' in sec
    assert "<td>no difference shown</td>" in sec and "<td>10-class more robust</td>" in sec
    assert "10-class more robust at 1 of 2 radii &gt; 0 (no difference shown at 1), " in sec
    assert "pooled over 5 seeds" in sec
