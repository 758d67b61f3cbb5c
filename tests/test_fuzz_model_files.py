"""A seeded sample of scripts/fuzz_model_files.py: hostile progress files, model-file
metadata and user models each end in a one-line refusal or a correct result (the script's
verdicts), never a traceback, a wrong result or a hang. The script runs the same
generators with many more cases."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import fuzz_model_files as fz  # noqa: E402

SAMPLE = 8  # cases per surface, seed 0: the same inputs every run


def test_a_seeded_sample_of_hostile_files_and_models(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the progress cases compare with a run made the same way
    try:
        tallies = fz.run_cases(fz.make_cases(SAMPLE, seed=0, workdir=tmp_path))
    finally:
        torch.set_num_threads(threads)
    failures = [f for t in tallies.values() for f in t.failures]
    assert not failures, "\n" + fz.report(tallies) + "\n" + "\n".join(failures[:10])
    for surface, tally in tallies.items():
        assert sum(tally.verdicts.values()) == SAMPLE, surface
        assert set(tally.verdicts) <= set(fz.OK_VERDICTS), (surface, tally.verdicts)
    # the sample reaches the outcomes that matter on each surface
    assert tallies["progress"].verdicts["discarded"] > 0
    assert tallies["model-file"].verdicts["refused"] > 0
    assert tallies["model-file"].verdicts["correct"] > 0
    assert tallies["user-model"].verdicts["refused"] > 0
    assert tallies["user-model"].verdicts["correct"] > 0


def test_the_verdicts_are_not_vacuous(tmp_path):
    """The checks behind 'correct' can fail: a model whose output the probe cannot use,
    slipped past check_model_fits, is a wrong result; an escaping exception a traceback."""
    module = tmp_path / "fuzz_vacuous_net.py"
    module.write_text(
        "import torch\nfrom torch import nn\n"
        "def make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 3))\n"
    )
    import featavg.probing.loading as loading

    real = loading.check_model_fits
    loading.check_model_fits = lambda *a, **k: None  # a check that lets everything through
    try:
        tally = fz.Tally()
        tally.add(fz.Case("user-model", "3 logits", lambda: fz.user_model_verdict(module)))
        tally.add(fz.Case("user-model", "raises", lambda: 1 / 0))
    finally:
        loading.check_model_fits = real
    assert tally.verdicts == {"wrong result": 1, "traceback": 1}
