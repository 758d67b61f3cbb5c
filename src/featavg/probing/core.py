"""``featavg.probe``: measure feature averaging in any PyTorch model, at any layer."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from featavg import runs
from featavg.config import ConfigError
from featavg.data.groupings import Grouping, get_grouping, validate_groups
from featavg.device import resolve_device
from featavg.metrics.feature_alignment import group_mean_cosines, unit_class_cosines
from featavg.probing import measures, run
from featavg.probing.capture import Capture, capture, find_layer, layer_kind, unit_weights
from featavg.probing.data import ProbeData, ProbeInput, as_probe_data, tensor_fingerprint
from featavg.probing.loading import check_model_fits
from featavg.probing.outputs import Measured, build_outputs
from featavg.probing.robust import robustness
from featavg.seeding import generator


@dataclass
class ProbeResult:
    """What :func:`probe` returns. ``summary``: the numbers (as summary.json); ``cosines``
    (U, k) cos(w_r, mu_j); ``group_cosines`` (R, k) the Fig. 2c/d cells (rows: the outputs
    served, ``group_rows``); ``units``: one record per unit (output, group, rule, A_r, ...);
    ``class_means`` (k, D) float64 (None when read back from a cached run); ``directory``
    (None: nothing written) and ``cached``: whether an earlier identical run was reused."""

    summary: dict[str, Any]
    cosines: torch.Tensor
    group_cosines: torch.Tensor
    group_rows: list[dict[str, Any]]
    units: list[dict[str, Any]]
    class_means: torch.Tensor | None
    directory: Path | None
    cached: bool


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


def probe(
    model: nn.Module,
    data: ProbeInput,
    fine_labels: torch.Tensor | None = None,
    grouping: Grouping | str | Sequence[int] = "parity",
    *,
    layer: str,
    class_means: torch.Tensor | None = None,
    centre: bool = False,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    probe_points: int = 2048,
    grad_points: int = 2048,
    robust_eps: Sequence[float] | None = None,
    robust_points: int = 500,
    batch_size: int = 256,
    seed: int = 0,
    device: str | None = None,
    root: str | Path | None = None,
    out: str | Path | None = None,
    force: bool = False,
    progress: bool = False,
    model_info: dict[str, Any] | None = None,
) -> ProbeResult:
    """Measure feature averaging at ``layer`` of ``model`` (any ``nn.Module`` returning
    logits (B, O): O = G coarse groups, O = k fine classes, or O = 1, a margin, when G = 2).

    ``data``: an ImageDataset (means from train, accuracies from test), an ImageSplit, (x, y)
    tensors, x with ``fine_labels`` y, or an iterable of (x, y) batches (see
    :mod:`featavg.probing.data`); y are fine labels 0..k-1. ``grouping``: a Grouping, a spec
    (parity, halves, a file, "0,1,...") or k group ids; J_s = the classes of group s.
    ``layer``: a name from ``model.named_modules()`` (nn.Linear, a groups=1 conv, or a module
    with a 2-D weight). ``class_means`` (k, D): use these mu_j instead of measuring them (e.g.
    the cluster centers of the synthetic data); else mu_j = mean of the layer's input over
    the class's points (conv: averaged over space), minus the global mean if ``centre``
    (measured means only).
    ``probe_points``: at most this many features per split for the linear probe (a seeded
    uniform subsample); ``grad_points``: the first points whose gradients assign units to
    outputs; ``robust_eps``: also the model's L2 robust-accuracy curve (incremental PGD, 7
    steps of eps/4, :func:`featavg.attacks.robustness_curve.robustness_curve`) on the first
    ``robust_points`` evaluation points, radii in the model's input units. ``device``: None
    keeps the model where it is, else the model is moved there. With ``root`` (the run goes
    to ``<root>/probe-<hash>``) or ``out`` (that directory) the results are written and an
    identical earlier run is reused unless ``force``; with neither, nothing is written.
    ``model_info``: JSON-able facts about where the model came from (part of its identity).

    Returns a :class:`ProbeResult`; the measurements are documented in
    :mod:`featavg.probing.measures`. Bad input raises a one-line ConfigError.
    """
    start = time.perf_counter()
    for name, value, low in (("probe_points", probe_points, 10), ("grad_points", grad_points, 1)):
        if value < low:
            raise ConfigError(f"{name}: must be >= {low}, got {value}")
    if batch_size < 1:
        raise ConfigError(f"batch_size: must be >= 1, got {batch_size}")
    dev = _model_device(model, device)
    pdata, hashing = as_probe_data(data, fine_labels, batch_size)
    k = _num_classes(grouping, num_classes, class_means, pdata)
    group = _grouping(grouping, k)
    if pdata.head is not None:  # the model's output, checked on two points before any pass
        check_model_fits(model, pdata.head(2)[0], k, group.num_groups)
    module = find_layer(model, layer)
    kind = layer_kind(module)
    weights = unit_weights(module)
    if class_means is not None and tuple(class_means.shape) != (k, weights.shape[1]):
        raise ConfigError(
            f"class_means: need shape ({k}, {weights.shape[1]}) (classes, the layer's input "
            f"width), got {tuple(class_means.shape)}"
        )
    options = {
        "layer": layer,
        "grouping": group.describe(),
        "class_means": None if class_means is None else tensor_fingerprint(class_means),
        "centre": centre,
        "probe_points": probe_points,
        "grad_points": grad_points,
        "robust_eps": None if robust_eps is None else [float(e) for e in robust_eps],
        "robust_points": robust_points if robust_eps is not None else None,
        "seed": seed,
    }
    model_id = {"fingerprint": run.model_fingerprint(model), **(model_info or {})}

    def identity(fingerprint: str) -> dict[str, Any]:
        return {"model": model_id, "data_fingerprint": fingerprint, **options}

    if (out is not None or root is not None) and pdata.fingerprint is not None:
        hit = _cached(
            _directory(identity(pdata.fingerprint), root, out), identity(pdata.fingerprint), force
        )
        if hit is not None:
            return hit

    groups = torch.tensor(group.groups)
    fit = capture(
        model, module, pdata.fit(), groups, device=dev, grad_points=grad_points,
        keep=probe_points, seed=seed, stream="probe/keep/fit", progress=progress,
        desc="probe: fit data",
    )  # fmt: skip
    held = None
    if pdata.held_out is not None:
        held = capture(
            model, module, pdata.held_out(), groups, device=dev, grad_points=0,
            keep=probe_points, seed=seed, stream="probe/keep/held-out", progress=progress,
            desc="probe: held-out data",
        )  # fmt: skip
    means = _means(fit, class_means, centre)
    m = _measure(fit, held, means, weights, groups, k, seed, dev)
    robust = None
    if robust_eps is not None:
        robust = robustness(
            model, pdata, group, m.fine, robust_eps, robust_points, dev, seed, progress
        )
    cfg = identity(pdata.fingerprint or (hashing.fingerprint() if hashing else ""))
    ctx = {
        "cfg": cfg,
        "layer": layer,
        "kind": kind,
        "data": pdata,
        "group": group,
        "class_names": class_names,
        "class_means_source": "given"
        if class_means is not None
        else ("centred" if centre else "computed"),
        "evaluated_on": "held-out" if held is not None else "fit",
        "fit_points": fit.n,
        "grad_points": fit.grad_points,
        "robustness": robust,
        "provenance": runs.provenance(dev, time.perf_counter() - start, [seed]),
    }
    summary, tables, figure = build_outputs(m, ctx)
    directory = None
    if out is not None or root is not None:
        from featavg.runs.state import check_replaceable, inspect_run

        directory = _directory(cfg, root, out)
        state = inspect_run(directory, run.EXPERIMENT, cfg)
        check_replaceable(state, f"probe directory {directory}", force)
        run.write_probe_run(directory, summary, tables, figure)
    return ProbeResult(
        summary, m.cos, m.group_cos, tables["group_cosines"], tables["units"], means.cpu(),
        directory, False,
    )  # fmt: skip


def _directory(cfg: dict[str, Any], root: str | Path | None, out: str | Path | None) -> Path:
    """``out`` itself, else ``<root>/probe-<hash>``."""
    return Path(out) if out is not None else run.probe_directory(cfg, root or runs.DEFAULT_ROOT)


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


def _cached(directory: Path, cfg: dict[str, Any], force: bool) -> ProbeResult | None:
    """The finished run in ``directory`` when it is this very probe (and not ``force``)."""
    from featavg.runs.state import check_replaceable, inspect_run

    state = inspect_run(directory, run.EXPERIMENT, cfg)
    if state.kind == "hit" and not force and state.summary is not None:
        units_lead, cos = run.read_matrix(directory / "cosines.csv")
        rows_lead, cells = run.read_matrix(directory / "group_cosines.csv")
        return ProbeResult(
            state.summary,
            torch.tensor(cos, dtype=torch.float64),
            torch.tensor(cells, dtype=torch.float64),
            rows_lead,
            run.read_rows(directory / "units.csv"),
            None,
            directory,
            True,
        )
    check_replaceable(state, f"probe directory {directory}", force)
    return None
