"""The probe itself: measure feature averaging in any PyTorch model, at any layer.

:func:`probe` measures and returns a :class:`ProbeResult`, nothing else: no file is read or
written. Caching it in a run directory is :func:`featavg.probing.cached.probe_cached`'s job
(the API's ``featavg.probe(..., root=...)`` and ``featavg probe``), through the run store's
one door."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from featavg import runs
from featavg.config import ConfigError
from featavg.data.groupings import Grouping, get_grouping, validate_groups
from featavg.device import resolve_device
from featavg.faults import NumericalFault
from featavg.metrics.feature_alignment import group_mean_cosines, unit_class_cosines
from featavg.probing import measures
from featavg.probing.capture import (
    Capture,
    CaptureSettings,
    capture,
    find_layer,
    layer_kind,
    unit_weights,
)
from featavg.probing.data import ProbeData, ProbeInput, as_probe_data
from featavg.probing.loading import check_model_fits
from featavg.probing.options import ProbeOptions
from featavg.probing.outputs import Measured, build_outputs
from featavg.probing.robust import robustness
from featavg.seeding import generator

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class ProbeResult:
    """What :func:`probe` returns. ``summary``: the numbers (as summary.json); ``cosines``
    (U, k) cos(w_r, mu_j); ``group_cosines`` (R, k) the Fig. 2c/d cells (rows: the outputs
    served, ``group_rows``); ``units``: one record per unit (output, group, rule, A_r, ...);
    ``class_means`` (k, D) float64 (None when read back from a cached run); ``directory``
    (None: nothing written) and ``cached``: whether an earlier identical run was reused;
    ``tables`` and ``figure``: what a run directory of it holds (None when read back);
    ``data_fingerprint``: the content hash of the data probed."""

    summary: dict[str, Any]
    cosines: torch.Tensor
    group_cosines: torch.Tensor
    group_rows: list[dict[str, Any]]
    units: list[dict[str, Any]]
    class_means: torch.Tensor | None
    directory: Path | None
    cached: bool
    tables: dict[str, list[dict[str, Any]]] | None = None
    figure: Figure | None = None
    data_fingerprint: str = ""


def _grouping(spec: Grouping | str | Sequence[int], k: int) -> Grouping:
    if isinstance(spec, Grouping):
        return spec
    if isinstance(spec, str):
        return get_grouping(spec, k)
    return Grouping("custom", validate_groups(list(spec), k, "grouping"))


def _num_classes(
    grouping: Grouping | str | Sequence[int],
    num_classes: int | None,
    class_means: torch.Tensor | None,
    data: ProbeData,
) -> int:
    """k: the grouping's length (a Grouping, ids, inline "0,1,..."), else ``num_classes``,
    the given means' rows, the data's class count, else 10."""
    if isinstance(grouping, Grouping):
        return len(grouping.groups)
    if not isinstance(grouping, str):
        return len(list(grouping))
    if "," in grouping:  # inline group ids: one per class
        return len(grouping.split(","))
    for k in (num_classes, None if class_means is None else class_means.shape[0]):
        if k is not None:
            return int(k)
    return max(data.num_classes or 10, 2)


def _model_device(model: nn.Module, device: str | None) -> torch.device:
    if device is not None:
        dev = resolve_device(device)
        model.to(dev)
        return dev
    first = next(iter([*model.parameters(), *model.buffers()]), None)
    return first.device if first is not None else torch.device("cpu")


def _means(cap: Capture, given: torch.Tensor | None, centre: bool) -> torch.Tensor:
    """mu_j (k, D) float64: the given ones, else sums / counts (an empty class: a zero row),
    centred by the global mean (1/N) sum_i phi(x_i) when asked."""
    if given is not None:
        return given.detach().to(cap.sums.device, torch.float64)
    present = cap.counts > 0
    means = torch.where(present[:, None], cap.sums / cap.counts.clamp_min(1)[:, None], 0.0)
    if centre:
        means = torch.where(present[:, None], means - cap.sums.sum(0) / cap.counts.sum(), 0.0)
    return means


def _probe_sets(
    fit: Capture, held: Capture | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test) of the linear probe: the two reservoirs, or one
    reservoir split 70/30 by a seeded permutation."""
    if held is not None:
        return fit.kept_x, fit.kept_y, held.kept_x, held.kept_y
    n = fit.kept_y.shape[0]
    perm = torch.randperm(n, generator=generator(seed, "probe/split"))
    cut = max(1, min(n - 1, round(0.7 * n)))
    tr, te = perm[:cut], perm[cut:]
    return fit.kept_x[tr], fit.kept_y[tr], fit.kept_x[te], fit.kept_y[te]


@dataclass
class ProbePlan:
    """A probe's inputs brought to one form, before anything is measured: ``dev`` (the
    model is there), ``pdata``, ``hashing`` (a one-shot iterable's running hash), ``k``,
    ``group``, the probed ``module`` (its ``kind`` and unit ``weights``)."""

    model: nn.Module
    layer: str
    dev: torch.device
    pdata: ProbeData
    hashing: Any
    k: int
    group: Grouping
    module: nn.Module
    kind: str
    weights: torch.Tensor


def plan_probe(
    model: nn.Module,
    data: ProbeInput,
    grouping: Grouping | str | Sequence[int],
    *,
    layer: str,
    fine_labels: torch.Tensor | None = None,
    options: ProbeOptions,
    device: str | None = None,
) -> ProbePlan:
    """Check and resolve the probe's inputs (a one-line ConfigError otherwise; non-finite
    unit weights are a :class:`~featavg.faults.NumericalFault`); the model is moved to
    ``device`` when given."""
    dev = _model_device(model, device)
    pdata, hashing = as_probe_data(data, fine_labels, options.batch_size)
    k = _num_classes(grouping, options.num_classes, options.class_means, pdata)
    group = _grouping(grouping, k)
    if pdata.head is not None:  # the model's output, checked on two points before any pass
        check_model_fits(model, pdata.head(2)[0], k, group.num_groups)
    module = find_layer(model, layer)
    kind = layer_kind(module)
    weights = unit_weights(module)
    if not bool(torch.isfinite(weights).all()):
        raise NumericalFault(
            f"layer {layer!r}: its weights hold NaN or inf (a diverged or damaged model): "
            "a numerical fault, nothing measured"
        )
    means = options.class_means
    if means is not None and tuple(means.shape) != (k, weights.shape[1]):
        raise ConfigError(
            f"class_means: need shape ({k}, {weights.shape[1]}) (classes, the layer's input "
            f"width), got {tuple(means.shape)}"
        )
    return ProbePlan(model, layer, dev, pdata, hashing, k, group, module, kind, weights)


def measurement_identity(
    plan: ProbePlan, options: ProbeOptions, data_fingerprint: str
) -> dict[str, Any]:
    """What a probe measured, as JSON: the layer, the grouping, the data's fingerprint and
    the options (a cached probe's identity adds the model's)."""
    return {
        "data_fingerprint": data_fingerprint,
        "layer": plan.layer,
        "grouping": plan.group.describe(),
        **options.identity(),
    }


def probe(
    model: nn.Module,
    data: ProbeInput,
    grouping: Grouping | str | Sequence[int] = "parity",
    *,
    layer: str,
    fine_labels: torch.Tensor | None = None,
    options: ProbeOptions | None = None,
    device: str | None = None,
    progress: bool = False,
) -> ProbeResult:
    """Measure feature averaging at ``layer`` of ``model`` (any ``nn.Module`` returning
    logits (B, O): O = G coarse groups, O = k fine classes, or O = 1, a margin, when G = 2).

    ``data``: an ImageDataset (means from train, accuracies from test), an ImageSplit, (x, y)
    tensors, x with ``fine_labels`` y, or an iterable of (x, y) batches (see
    :mod:`featavg.probing.data`); y are fine labels 0..k-1. ``grouping``: a Grouping, a spec
    (parity, halves, a file, "0,1,...") or k group ids; J_s = the classes of group s.
    ``layer``: a name from ``model.named_modules()`` (nn.Linear, a groups=1 conv, or a module
    with a 2-D weight). ``options`` (:class:`~featavg.probing.options.ProbeOptions`): given
    class means instead of measured ones, centring, the point budgets, an optional
    robustness curve (incremental PGD, 7 steps of eps/4, on the first ``robust_points``
    evaluation points, radii in the model's input units), the seed. ``device``: None keeps
    the model where it is, else the model is moved there.

    Returns a :class:`ProbeResult` (nothing is written); the measurements are documented in
    :mod:`featavg.probing.measures`. Bad input raises a one-line ConfigError; a model whose
    weights, activations or logits are not finite a
    :class:`~featavg.faults.NumericalFault` (before the expensive part).
    """
    options = options if options is not None else ProbeOptions()
    plan = plan_probe(
        model, data, grouping, layer=layer, fine_labels=fine_labels, options=options,
        device=device,
    )  # fmt: skip
    return measure(plan, options, progress)


def measure(plan: ProbePlan, options: ProbeOptions, progress: bool = False) -> ProbeResult:
    """Run the probe of ``plan`` (see :func:`probe`)."""
    start = time.perf_counter()
    model, dev, pdata = plan.model, plan.dev, plan.pdata
    groups = torch.tensor(plan.group.groups)
    keep, seed = options.probe_points, options.seed
    fit = capture(
        model, plan.module, pdata.fit(), groups, device=dev, progress=progress,
        settings=CaptureSettings(
            options.grad_points, keep, seed, "probe/keep/fit", "probe: fit data"
        ),
    )  # fmt: skip
    held = None
    if pdata.held_out is not None:
        held = capture(
            model, plan.module, pdata.held_out(), groups, device=dev, progress=progress,
            settings=CaptureSettings(0, keep, seed, "probe/keep/held-out", "probe: held-out data"),
        )  # fmt: skip
    means = _means(fit, options.class_means, options.centre)
    m = _measure(fit, held, means, plan.weights, groups, plan.k, seed, dev)
    robust = None
    if options.robust_eps is not None:
        robust = robustness(model, pdata, plan.group, m.fine, options, dev, progress)
    fingerprint = pdata.fingerprint or (plan.hashing.fingerprint() if plan.hashing else "")
    ctx = {
        "cfg": measurement_identity(plan, options, fingerprint),
        "layer": plan.layer,
        "kind": plan.kind,
        "data": pdata,
        "group": plan.group,
        "class_names": options.class_names,
        "class_means_source": "given"
        if options.class_means is not None
        else ("centred" if options.centre else "computed"),
        "evaluated_on": "held-out" if held is not None else "fit",
        "fit_points": fit.n,
        "grad_points": fit.grad_points,
        "robustness": robust,
        "provenance": runs.provenance(dev, time.perf_counter() - start, [seed]),
    }
    summary, tables, figure = build_outputs(m, ctx)
    return ProbeResult(
        summary, m.cos, m.group_cos, tables["group_cosines"], tables["units"], means.cpu(),
        None, False, tables, figure, fingerprint,
    )  # fmt: skip


def _measure(
    fit: Capture,
    held: Capture | None,
    means: torch.Tensor,
    weights: torch.Tensor,
    groups: torch.Tensor,
    k: int,
    seed: int,
    dev: torch.device,
) -> Measured:
    """Cosines, unit outputs, alignment numbers, the linear probe and the accuracies."""
    cos = unit_class_cosines(weights.to(means.device), means).cpu()
    fine = fit.correct_fine is not None
    grad_mean = fit.grad_sums / max(fit.grad_points, 1)
    outputs, rules = measures.favoured_outputs(grad_mean, cos, groups, fine)
    numbers, index = measures.alignment(cos, means, outputs, groups, fine)
    rows = measures.output_rows(outputs, fit.grad_sums.shape[0])
    x_tr, y_tr, x_te, y_te = _probe_sets(fit, held, seed)
    numbers.update(measures.linear_probe(x_tr, y_tr, x_te, y_te, k, device=dev))
    evaluated = held or fit
    numbers["coarse_accuracy"] = evaluated.correct_coarse / evaluated.n
    if evaluated.correct_fine is not None:
        numbers["fine_accuracy"] = evaluated.correct_fine / evaluated.n
    # d logit_c / d a_r = [c = r] exactly: the layer's outputs are the logits
    eye = torch.eye(*grad_mean.shape, dtype=grad_mean.dtype, device=grad_mean.device)
    logit_layer = bool(torch.allclose(grad_mean, eye, atol=1e-6))
    return Measured(
        numbers, cos, group_mean_cosines(cos, rows), rows, outputs, rules, index,
        weights.cpu(), groups, fine, logit_layer,
    )  # fmt: skip
