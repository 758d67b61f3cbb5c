"""A run's setup in one compact block: what it ran on, how it differs from the paper, and
its provenance in one line.

The settings that differ from the paper's are all named, from three places: the data set
(a stand-in for the paper's), the settings the paper states (:mod:`featavg.report.paper`),
and every config field where the run differs from the paper's recipe: the experiment's
defaults with its ``paper`` preset applied, when it has one (the real-data experiments
default to a CPU-sized protocol; the synthetic ones default to the paper's config). Seeds
are replicates, not a setting of the paper. A null in the config is shown as what it means
(the whole split, every test point) or, for a radius grid, as the grid the run used.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from featavg.config import deep_merge
from featavg.experiments.summary import is_number
from featavg.report.checks import experiment_of, is_stand_in
from featavg.report.paper import (
    PaperSetup,
    compared_table,
    effective,
    paper_setup,
    same,
    value_text,
)
from featavg.report.view import RunPage, SetupView, fmt, run_date
from featavg.report.view_real import stand_in_label

# config fields named in words: (label, what null means)
FIELD_LABELS = {
    "train.train_size": ("training images", "the whole training split"),
    "train.test_size": ("test images", "the whole test split"),
    "train.sgd.epochs": ("training epochs", ""),
    "attack.points": ("attacked test points", "every test point"),
    "attack.also_per_radius": ("the per-radius PGD protocol too", ""),
    "attack.radii": ("radius grid", "the default grid"),
    "n_attack": ("attacked test points", "every test point"),
    "data.d": ("input dimension d", ""),
    "data.k": ("clusters k", ""),
}
REPLICATES = {"seed", "seeds"}  # replicates of a run, not a setting of the paper


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 0.01}} -> {'train.lr': 0.01}; lists are values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def field_text(dotted: str, value: Any, summary: dict[str, Any]) -> str:
    """A config value in words: its label's meaning of null, the radius grid the run used,
    lists shortened."""
    used, _ = effective(summary, dotted, value)
    if used is None:
        return FIELD_LABELS.get(dotted, ("", ""))[1] or "not set"
    return value_text(used)


def paper_recipe(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The flattened config of the paper's recipe for the run's experiment: its defaults
    with its ``paper`` preset applied; None for an unknown experiment."""
    exp = experiment_of(summary)
    if exp is None:
        return None
    try:
        defaults = exp.config_cls().model_dump(mode="json")
    except (ValidationError, TypeError):  # a config class without defaults for every field
        return None
    return flatten(deep_merge(defaults, dict(exp.presets.get("paper", {}))))


def recipe_differences(summary: dict[str, Any], covered: set[str]) -> list[str]:
    """Every config field (beyond ``covered`` and the replicates) where the run differs
    from the paper's recipe, in words: 'training images 3000 (the paper: the whole
    training split)'."""
    recipe = paper_recipe(summary)
    config = summary.get("config")
    if recipe is None or not isinstance(config, dict):
        return []
    out = []
    for key, value in flatten(config).items():
        if key in covered or key in REPLICATES or key not in recipe:
            continue
        if same(recipe[key], value):
            continue
        label = FIELD_LABELS.get(key, (key, ""))[0]
        ours, theirs = field_text(key, value, summary), field_text(key, recipe[key], summary)
        out.append(f"{label}: {ours} (the paper: {theirs})")
    return out


def seeds_text(summary: dict[str, Any]) -> str:
    """'1 seed (0)', '10 seeds (0 .. 9)' or '3 seeds (0, 4, 7)' from the provenance."""
    seeds = (summary.get("provenance") or {}).get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        return ""
    if len(seeds) == 1:
        return f"1 seed ({seeds[0]})"
    consecutive = seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    which = f"{seeds[0]} .. {seeds[-1]}" if consecutive else ", ".join(map(str, seeds))
    return f"{len(seeds)} seeds ({which})"


def provenance_line(run: RunPage) -> str:
    """featavg version, git commit, device, wall time, when it finished, torch and Python."""
    prov = run.summary.get("provenance")
    prov = prov if isinstance(prov, dict) else {}
    parts = []
    if prov.get("featavg_version"):
        parts.append(f"featavg {prov['featavg_version']}")
    if isinstance(prov.get("git_commit"), str):
        parts.append(f"git {prov['git_commit'][:12]}")
    if prov.get("device"):
        parts.append(f"on {prov['device']}")
    if is_number(prov.get("wall_time_s")):
        parts.append(f"{fmt(float(prov['wall_time_s']))} s")
    parts.append(f"finished {run_date(run.mtime)}")
    for key, name in (("torch_version", "torch"), ("python_version", "Python")):
        if prov.get(key):
            parts.append(f"{name} {prov[key]}")
    return " · ".join(parts)


def facts(summary: dict[str, Any], covered: set[str]) -> list[str]:
    """What the run ran on: its data, its seeds, its radius grid (unless a setting of the
    paper, in ``covered``, shows it)."""
    out = [f"data: {summary.get('data', 'unknown')}"]
    seeds = seeds_text(summary)
    if seeds:
        out.append(seeds)
    config = summary.get("config") if isinstance(summary.get("config"), dict) else {}
    for dotted, value in flatten(config or {}).items():
        if dotted.endswith("radii") and dotted not in covered:
            used, note = effective(summary, dotted, value)
            shown = value_text(used) if used is not None else "not recorded"
            out.append(f"radius grid: {shown}" + (f" ({note})" if note else ""))
    return out


def setup_view(run: RunPage) -> SetupView:
    """The run's setup block (see the module docstring)."""
    s = run.summary
    paper = paper_setup(s) or PaperSetup()
    differs = []
    if is_stand_in(s):
        differs.append(f"data set: {stand_in_label(s)} (the paper: its real data set)")
    differs += paper.differs + recipe_differences(s, paper.fields)
    return SetupView(
        facts=facts(s, paper.fields),
        differs=differs,
        same=paper.same,
        provenance=provenance_line(run),
        paper=paper.folds,
        paper_problems=paper.problems,
        compared=compared_table(paper),
    )


def config_text(summary: dict[str, Any]) -> str:
    """The config and the provenance, as JSON, for the folded block."""
    shown = {"config": summary.get("config", {}), "provenance": summary.get("provenance", {})}
    return json.dumps(shown, indent=2, sort_keys=False)
