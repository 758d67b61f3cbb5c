"""Robustness curves of the read-outs of :mod:`featavg.attacks.readouts`, in the paper's units,
and what a summary states about them.

The authors attack in the NORMALISED input space with no box clamp (MNIST, CIFAR-10), so
every read-out wraps ``model.net`` and is attacked at ``model.normalize(x)``: radii are then
exactly the paper's, also for CIFAR's per-channel std. Pixel-unit radii ([0, 1] pixels)
follow from the std (:func:`pixel_units`): exact for a uniform std (MNIST: normalised =
2 x pixel), an approximation with stated bounds otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from featavg.attacks.core import AttackSettings, CurveResult, eval_mode
from featavg.attacks.readouts import READOUT_LABELS, Readout
from featavg.attacks.robustness_curve import robustness_curve
from featavg.data.images import ImageSplit
from featavg.metrics.curves import crossing_radius
from featavg.models.image_classifier import Normalization
from featavg.plots.image_robustness import robustness_figure
from featavg.progress import bar as progress_bar
from featavg.trained_models.jobs import EVALUATION_SEED

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from featavg.experiments.image_common import ImageAttackSection

# the headline comparison: the 10-class model's binary decision (group of argmax) against
# the binary model
BINARY, TENCLASS = "binary", "group_argmax"
# the summary entry of the per-point correctness a single-seed run records
POINTS = "point_correct"


@dataclass(frozen=True)
class PixelUnits:
    """How a normalised radius r maps to [0, 1]-pixel units: r / ``factor``. ``exact`` for a
    uniform std; otherwise ``factor`` is a typical value (stated in ``note``) and a pixel
    ball of radius r / hi lies in the normalised ball of radius r, which lies in the pixel
    ball of radius r / lo."""

    factor: float
    lo: float
    hi: float
    exact: bool
    note: str

    def to_pixel(self, r: float) -> float:
        """A normalised radius in pixel units (approximate unless ``exact``)."""
        return r / self.factor

    @property
    def axis_label(self) -> str:
        """Axis label of pixel-unit radii."""
        return "radius, [0, 1]-pixel units" + ("" if self.exact else " (approx.)")


def pixel_units(normalization: Normalization, norm: str) -> PixelUnits:
    """The pixel units of radii under ``normalization`` for the ``norm`` ("l2" / "linf").

    Uniform std s: factor 1/s, exact. Per-channel std s_c: L2 takes the RMS factor
    sqrt(mean_c 1/s_c^2) (exact for a perturbation spread evenly over the channels), L-inf
    1/mean_c s_c (the mean per-channel box half-width); both labelled approximate."""
    lo, hi = normalization.l2_factor
    std = normalization.std
    if normalization.uniform:
        return PixelUnits(lo, lo, hi, True, f"pixel = normalised x {std[0]:g} (exact)")
    if norm == "l2":
        factor = math.sqrt(sum(1 / s**2 for s in std) / len(std))
        how = "RMS of the per-channel factors 1/std_c"
    else:
        factor = len(std) / sum(std)
        how = "1 / mean std_c"
    note = (
        f"pixel ≈ normalised / {factor:.3f} (approx.: {how}); exact bounds: normalised / "
        f"{hi:.3f} .. normalised / {lo:.3f}"
    )
    return PixelUnits(factor, lo, hi, False, note)


def attack_points(split: ImageSplit, points: int | None) -> ImageSplit:
    """The test points attacked: a class-balanced subset of ``points`` (all if None) drawn
    from the stream ``attack/points`` of :data:`~featavg.trained_models.jobs.EVALUATION_SEED`,
    the same for every training seed (the seeds' curves are then paired point by point)."""
    return split.subset(points, EVALUATION_SEED, "attack/points")


@dataclass
class ReadoutCurves:
    """One read-out's clean accuracy on the attacked points and its curve per method."""

    readout: Readout
    clean_acc: float
    curves: dict[str, CurveResult]


def clean_accuracy(
    readout: Readout, x: torch.Tensor, y: torch.Tensor, batch_size: int | None
) -> float:
    """Fraction of (x, y) the read-out gets right, in eval mode, without gradients."""
    chunk = x.shape[0] if batch_size is None else batch_size
    with torch.no_grad(), eval_mode(readout.module):
        correct = [
            readout.objective.correct(readout.module(xb), readout.objective.prepare(yb, x.device))
            for xb, yb in zip(x.split(chunk), y.split(chunk), strict=True)
        ]
    return float(torch.cat(correct).double().mean())


def attack_readouts(
    readouts: Mapping[str, Readout],
    x: torch.Tensor,
    y_fine: torch.Tensor,
    groups: Sequence[int],
    attack: ImageAttackSection,
    *,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, ReadoutCurves]:
    """Every read-out's robustness curve by every method of ``attack.methods``.

    x: (B, C, H, W) inputs in the space the read-outs take (here: normalised images, so
    radii are in the paper's units); y_fine: (B,) fine labels; groups: (10,) group id of
    each class. All read-outs use the same random starts (common random numbers)."""
    out = {}
    bar = progress_bar(total=len(readouts) * len(attack.methods), desc="attacks", enabled=progress)
    for name, readout in readouts.items():
        y = readout.labels(y_fine, groups)
        curves = {}
        for method in attack.methods:
            curves[method] = robustness_curve(
                readout.module,
                x,
                y,
                attack.radii,
                method=method,
                settings=AttackSettings(
                    norm=attack.norm,
                    objective=readout.objective,
                    steps=attack.steps,
                    rel_step=attack.rel_step,
                    random_start=attack.random_start,
                    min_norm_steps=attack.min_norm_steps,
                    seed=seed,
                    batch_size=attack.batch_size,
                    progress=progress,
                ),
            )
            # the attack saw the radii in x's dtype (0.2 -> 0.20000000298 in float32); record
            # the configured values (same order: the config's radii are strictly increasing)
            curves[method].eps = torch.tensor(attack.radii, dtype=torch.float64)
            bar.update(1)
        out[name] = ReadoutCurves(readout, clean_accuracy(readout, x, y, attack.batch_size), curves)
    bar.close()
    return out


def method_key(method: str) -> str:
    """A method name as a summary-key part: per-radius -> per_radius, fmn+pgd -> fmn_pgd."""
    return method.replace("-", "_").replace("+", "_")


def curve_rows(curves: Mapping[str, ReadoutCurves], units: PixelUnits) -> list[dict[str, Any]]:
    """The main table: one row per (read-out, method, radius) with the radius in normalised
    and pixel units (plus the exact pixel bounds; equal to it for a uniform std)."""
    rows = []
    for name, rc in curves.items():
        for method, curve in rc.curves.items():
            for eps, acc in zip(curve.eps.tolist(), curve.robust_accuracy.tolist(), strict=True):
                rows.append(
                    {
                        "readout": name,
                        "readout_label": rc.readout.label,
                        "method": method,
                        "radius": eps,
                        "radius_pixel": units.to_pixel(eps),
                        "radius_pixel_lo": eps / units.hi,
                        "radius_pixel_hi": eps / units.lo,
                        "robust_acc": acc,
                    }
                )
    return rows


def point_strings(curves: Mapping[str, ReadoutCurves], method: str) -> dict[str, list[str]]:
    """For the binary model and the 10-class model (group of argmax): per radius of the
    ``method`` curve, which attacked points it still gets right, as a '0'/'1' string."""
    out = {}
    for name in (BINARY, TENCLASS):
        correct = curves[name].curves[method].per_point_correct.to(dtype=torch.bool).cpu().numpy()
        out[name] = ["".join("1" if c else "0" for c in row) for row in correct]
    return out


def curve_numbers(
    curves: Mapping[str, ReadoutCurves], method: str, units: PixelUnits
) -> dict[str, Any]:
    """Summary numbers of the curves; ``method`` is the headline one.

    Per read-out r: clean_acc_r (attacked points), radius50_r (where the ``method`` curve
    crosses 1/2, interpolated, normalised units; inf if it stays above) and
    radius50_pixel_r; per read-out and method m: radius50_r_m and gradient_evaluations_r_m
    (the attacks' wall times are timings, :func:`attack_timings`, never results). Then
    ``curves`` (the accuracies per method and read-out) and, for the binary and the
    10-class model, which attacked points stay correct at each radius
    (:func:`point_strings`: what the comparison over seeds pairs)."""
    numbers: dict[str, Any] = {}
    for name, rc in curves.items():
        numbers[f"clean_acc_{name}"] = rc.clean_acc
        for m, curve in rc.curves.items():
            r50 = crossing_radius(curve.eps, curve.robust_accuracy)
            if m == method:
                numbers[f"radius50_{name}"] = r50
                numbers[f"radius50_pixel_{name}"] = units.to_pixel(r50)
            numbers[f"radius50_{name}_{method_key(m)}"] = r50
            numbers[f"gradient_evaluations_{name}_{method_key(m)}"] = curve.gradient_evaluations
    numbers[POINTS] = point_strings(curves, method)
    first = next(iter(curves.values()))
    eps = first.curves[method].eps.tolist()
    numbers["curves"] = {
        "radii": eps,
        "radii_pixel": [units.to_pixel(e) for e in eps],
        "pixel_units": units.note,
        **{
            m: {n: rc.curves[m].robust_accuracy.tolist() for n, rc in curves.items()}
            for m in first.curves
        },
    }
    return numbers


def attack_timings(curves: Mapping[str, ReadoutCurves]) -> dict[str, float]:
    """Seconds each read-out's attack took, per method (provenance: they vary with the
    machine and its load, so they are never results and never in a sweep's table)."""
    return {
        f"attack_s_{name}_{method_key(m)}": round(curve.wall_s, 3)
        for name, rc in curves.items()
        for m, curve in rc.curves.items()
    }


def curves_figure(
    curves: Mapping[str, Any], attack: ImageAttackSection, units: PixelUnits, title: str
) -> Figure:
    """The robustness figure of every read-out from the summary's ``curves`` (see
    :func:`curve_numbers`): ``attack.method`` solid, the other methods beside it, radii in
    normalised units below and pixel units above."""
    return robustness_figure(
        curves["radii"],
        {m: curves[m] for m in attack.methods},
        READOUT_LABELS,
        main_method=attack.method,
        units=units,
        norm=attack.norm,
        title=title,
    )
