"""The parts of a run's section that only real-data runs have: what the stand-in banner
names, and the plain per-radius answer to "Is the 10-class model more robust than the
binary one?".

The real-data experiments (``mnist-robustness``, ``mnist-linf``, ``cifar10-robustness``,
``cifar10-features``) write ``more_robust``: one record per radius with ``radius``
(normalised units, the paper's), ``radius_pixel`` ([0, 1]-pixel units), ``binary`` and
``group_argmax`` (robust accuracy of the binary model and of the 10-class model read out by
the class group of its argmax, means over the seeds), ``difference`` (10-class - binary),
``lo`` / ``hi`` (its 95% interval over seeds and attacked points), ``positive`` of
``seeds`` (the sign count), ``two_se`` (the within-run noise band: test points only) and
``verdict`` ("10-class more robust" | "binary more robust" | "no difference shown", from
the interval). Runs made before the seeds were pooled have no interval; their rows are
shown as they are. Display strings only; the templates write the HTML.
"""

from __future__ import annotations

from typing import Any

from featavg.experiments.summary import is_number
from featavg.report.checks import is_stand_in
from featavg.report.view import Cell, Comparison, Table, fmt

QUESTION = "Is the 10-class model more robust than the binary one?"
TENCLASS, BINARY, TIE = "10-class more robust", "binary more robust", "tie"
NONE_SHOWN = "no difference shown"
# a difference this small is a tie (the experiments' own threshold)
TIE_TOL = 1e-12
HEADER = (
    "Radius (normalised)",
    "Radius (pixel)",
    "Binary model",
    "10-class model (group of argmax)",
    "Difference (10-class − binary)",
    "Verdict",
)


def stand_in_label(summary: dict[str, Any], fallback: bool = True) -> str:
    """What the stand-in banner names: the ``stand_in_label`` entry (e.g. "Fashion-MNIST
    (stand-in for MNIST)"), else a ``stand_in`` given as text, else (``fallback``) the
    ``data`` text; '' for a run on the real data (or without a label and no fallback)."""
    if not is_stand_in(summary):
        return ""
    for key in ("stand_in_label", "stand_in"):
        label = summary.get(key)
        if isinstance(label, str) and label.strip():
            return label
    return str(summary.get("data") or "unknown data") if fallback else ""


def _verdict(row: dict[str, Any], diff: float | None) -> str:
    """The row's verdict as written, else from the difference."""
    verdict = row.get("verdict")
    if isinstance(verdict, str) and verdict:
        return verdict
    if diff is None:
        return "—"
    return TIE if abs(diff) < TIE_TOL else (TENCLASS if diff > 0 else BINARY)


def _difference(row: dict[str, Any]) -> float | None:
    """``difference`` as written, else group_argmax - binary; None when neither is known."""
    if is_number(row.get("difference")):
        return float(row["difference"])
    if is_number(row.get("binary")) and is_number(row.get("group_argmax")):
        return float(row["group_argmax"]) - float(row["binary"])
    return None


def _pixel(value: Any) -> str:
    """A pixel radius: a number, or a [lo, hi] range where the std differs per channel."""
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"{fmt(value[0])}–{fmt(value[1])}"
    return fmt(value) if value is not None else "—"


def sentence(verdicts: list[tuple[float, str]], seeds: int | None = None) -> str:
    """One sentence over the radii > 0, e.g. "10-class more robust at 15 of 20 radii > 0
    (no difference shown at 5), pooled over 5 seeds."; radius 0 (clean accuracy) is left
    out."""
    attacked = [v for r, v in verdicts if r > 0]
    if not attacked:
        return "No radius > 0 was attacked: only the clean accuracies are compared."
    n = len(attacked)
    counts = {v: attacked.count(v) for v in (TENCLASS, BINARY, NONE_SHOWN, TIE)}
    others = [f"{name} at {counts[name]}" for name in (BINARY, NONE_SHOWN, TIE) if counts[name]]
    rest = f" ({', '.join(others)})" if others else ""
    over = f", pooled over {seeds} seed{'s' if seeds != 1 else ''}" if seeds else ""
    return f"{TENCLASS} at {counts[TENCLASS]} of {n} radi{'i' if n != 1 else 'us'} > 0{rest}{over}."


def comparison_view(summary: dict[str, Any]) -> Comparison | None:
    """The plain-statement table of the summary's ``more_robust`` records, or None when the
    run has none."""
    records = summary.get("more_robust")
    if not isinstance(records, list) or not records:
        return None
    rows, verdicts, skipped = [], [], 0
    # pooled runs record the interval over seeds and points, and the sign count
    pooled = any(isinstance(r, dict) and is_number(r.get("lo")) for r in records)
    noise = any(isinstance(r, dict) and is_number(r.get("two_se")) for r in records)
    seeds = None
    for row in records:
        if not isinstance(row, dict) or not is_number(row.get("radius")):
            skipped += 1
            continue
        diff = _difference(row)
        verdict = _verdict(row, diff)
        verdicts.append((float(row["radius"]), verdict))
        cells = [
            Cell(fmt(row["radius"]), "num", small="clean" if row["radius"] == 0 else ""),
            Cell(_pixel(row.get("radius_pixel")), "num"),
            Cell(fmt(row.get("binary"), "acc"), "num"),
            Cell(fmt(row.get("group_argmax"), "acc"), "num"),
            Cell(f"{diff:+.3f}" if diff is not None else "—", "num"),
        ]
        if pooled:
            seeds = int(row.get("seeds") or 1)
            interval = (
                f"[{float(row['lo']):+.3f}, {float(row['hi']):+.3f}]"
                if is_number(row.get("lo"))
                else "—"
            )
            cells.append(Cell(interval, "num"))
            cells.append(Cell(f"{row.get('positive', '—')} of {seeds}", "num"))
        if noise:
            two_se = row.get("two_se")
            band = f"±{float(two_se):.3f}" if isinstance(two_se, int | float) else "—"
            cells.append(Cell(band, "num"))
        rows.append([*cells, Cell(verdict)])
    notes = []
    if pooled:
        notes.append(
            "95% interval: of the mean gap over seeds and attacked points (a bootstrap that "
            "resamples both); the verdict is where it excludes 0. Seeds positive: how many "
            "seeds have the 10-class model ahead."
        )
        if seeds == 1:
            notes.append(
                "One training run: the verdict ignores training randomness; a second seed "
                "can flip it (run with --seeds 5)."
            )
    if noise:
        notes.append(
            "2 SE: twice the standard error of the paired difference over the attacked points "
            "of one run: test-point noise only, narrower than the seeds' spread."
        )
    units = summary.get("pixel_units")
    if isinstance(units, str) and units:
        notes.append(f"Pixel radii: {units}")
    verified = summary.get("autoattack")
    if isinstance(verified, dict) and isinstance(verified.get("note"), str):
        notes.append(f"Curves checked against AutoAttack: {verified['note']}.")
    else:
        notes.append(
            "The curves come from an attack: upper bounds on the robust accuracy, not checked "
            "against AutoAttack (featavg run --verify autoattack)."
        )
    if skipped:
        notes.append(f"{skipped} record(s) of more_robust without a radius are left out.")
    header = list(HEADER[:-1])
    if pooled:
        header += ["95% interval (seeds and points)", "Seeds positive"]
    if noise:
        header += ["2 SE (test points only)"]
    table = Table([Cell(h) for h in [*header, HEADER[-1]]], rows)
    return Comparison(QUESTION, sentence(verdicts, seeds), table, notes)
