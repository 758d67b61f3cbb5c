"""Capture a layer's input and output with hooks while a model runs over data, in batches.

One pass over the data accumulates, in O(k D + O U + N_keep D) memory whatever the number
of points N (k fine classes, D the layer's input width, O logits, U units):

* the running per-class sums of the layer's input phi(x) (spatially averaged for a conv
  layer), from which the class means mu_j = (1/n_j) sum_{i: y_i = j} phi(x_i) follow;
* the summed gradients d logit_c / d a_r of every logit c with respect to every unit's
  activation a_r (the layer's output channel r, summed over space), on the first
  ``grad_points`` points only: what each unit pushes the model towards;
* the model's coarse (and fine) accuracy;
* a uniform random subsample of at most ``keep`` (feature, fine label) pairs for the linear
  probe: every point gets a key from a seeded generator and the ``keep`` smallest keys stay
  (reservoir sampling by random keys, so the sample does not depend on the batch size).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from featavg.attacks.core import eval_mode
from featavg.config import ConfigError
from featavg.faults import NumericalFault
from featavg.progress import bar
from featavg.seeding import generator

# how many layer names a "no such layer" message lists
SHOWN_LAYERS = 12
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule ``name`` as ``model.named_modules()`` names it ("" is the model).

    A ConfigError (one line) otherwise, listing the closest names first and then the others,
    truncated to :data:`SHOWN_LAYERS` names with the total count."""
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    names = [n for n in modules if n]  # "" (the model itself) is no name to suggest
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    ordered = close + [n for n in names if n not in close]
    shown = ", ".join(repr(n) for n in ordered[:SHOWN_LAYERS])
    more = f", ... ({len(names)} in all)" if len(names) > SHOWN_LAYERS else ""
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"layer: no module named {name!r}{hint}; available: {shown}{more}")


def layer_kind(layer: nn.Module) -> str:
    """ "conv" for Conv1d/2d/3d, "linear" for nn.Linear or any module with a 2-D ``weight``
    (out, in); a ConfigError for anything else (no weight rows to compare with)."""
    if isinstance(layer, CONV_TYPES):
        if layer.groups != 1:
            raise ConfigError(
                f"layer: {type(layer).__name__} with groups={layer.groups} is not supported "
                "(its units see only part of the input); probe a groups=1 conv or a Linear"
            )
        return "conv"
    weight = getattr(layer, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.ndim == 2:
        return "linear"
    raise ConfigError(
        f"layer: {type(layer).__name__} has no weight rows (need nn.Linear, a groups=1 "
        "Conv1d/2d/3d or a module with a 2-D weight (out, in))"
    )


def unit_weights(layer: nn.Module) -> torch.Tensor:
    """The units' weight vectors w_r as (U, D), detached.

    Linear: the rows of ``weight`` (U, D). Conv: ``weight`` (U, D, *kernel) summed over the
    kernel positions, i.e. w_r[c] = sum_{kh, kw} W[r, c, kh, kw]. Why the sum: it is the
    response of unit r to a spatially constant input (a feature vector v at every position
    gives the pre-activation <w_r, v> away from the borders), which matches the class means
    of the layer's input averaged over space. Biases are ignored (as in the paper's Fig. 2).
    """
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ConfigError(f"layer: {type(layer).__name__} has no weight tensor")
    weight = weight.detach()
    if layer_kind(layer) == "conv":
        return weight.sum(dim=tuple(range(2, weight.ndim)))
    return weight


def reduce_input(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The layer's input as one feature vector per point, (B, D).

    Conv (B, D, *space): the mean over the spatial positions. Linear (B, ..., D): the mean
    over the middle axes (e.g. tokens), (B, D) unchanged."""
    if kind == "conv":
        return x.flatten(2).mean(2)
    return x.reshape(x.shape[0], -1, x.shape[-1]).mean(1)


def reduce_output(g: torch.Tensor, kind: str) -> torch.Tensor:
    """A gradient with respect to the layer's output, summed over points and space: (U,).

    Conv (B, U, *space) and Linear (B, ..., U): the sum over every axis but the unit's, so
    that it is the effect of raising the unit's activation by one at every position."""
    if kind == "conv":
        return g.transpose(0, 1).reshape(g.shape[1], -1).sum(1)
    return g.reshape(-1, g.shape[-1]).sum(0)


def as_logits(out: torch.Tensor) -> torch.Tensor:
    """The model's output as (B, O) logits; a single output f is read as the margin of
    group 1 over group 0 and becomes [-f/2, f/2] (softmax of which is sigmoid(f))."""
    if out.ndim != 2:
        raise ConfigError(
            f"model: must return logits (B, num_outputs), got shape {tuple(out.shape)}"
        )
    return torch.cat([-out / 2, out / 2], dim=1) if out.shape[1] == 1 else out


class _Tap:
    """Forward hook: keep the layer's reduced input; when asked, replace its output by a
    detached leaf that requires grad, so d logits / d output comes out of autograd without
    touching the model's parameters (their .grad stays as it was)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.want_grad = False
        self.calls = 0
        self.features: torch.Tensor | None = None
        self.output: torch.Tensor | None = None

    def __call__(
        self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> torch.Tensor | None:
        self.calls += 1
        self.features = reduce_input(inputs[0].detach(), self.kind).to(torch.float64)
        if not self.want_grad:
            return None
        if not isinstance(output, torch.Tensor):
            raise ConfigError(f"layer: returns {type(output).__name__}, not a tensor")
        self.output = output.detach().requires_grad_(True)
        return self.output


@dataclass
class Capture:
    """What one pass accumulated (float64 sums on the model's device).

    sums (k, D), counts (k,): per fine class; grad_sums (O, U): sum over the gradient points
    of d logit_c / d a_r; grad_points: how many; correct_coarse / correct_fine / n: accuracy
    counts (correct_fine is None for a coarse model); kept_x (N_keep, D) float32 and kept_y
    (N_keep,) on the CPU: the subsample for the linear probe."""

    sums: torch.Tensor
    counts: torch.Tensor
    grad_sums: torch.Tensor
    grad_points: int = 0
    correct_coarse: int = 0
    correct_fine: int | None = None
    n: int = 0
    kept_x: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    kept_y: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    kept_keys: torch.Tensor = field(default_factory=lambda: torch.empty(0))


def _keep(
    cap: Capture, feats: torch.Tensor, y: torch.Tensor, gen: torch.Generator, keep: int
) -> None:
    """Merge a batch into the reservoir (the ``keep`` smallest random keys stay)."""
    if keep <= 0:
        return
    keys = torch.rand(y.shape[0], generator=gen, dtype=torch.float64)
    x = torch.cat([cap.kept_x.reshape(-1, feats.shape[1]), feats.float().cpu()])
    ys = torch.cat([cap.kept_y, y.cpu()])
    ks = torch.cat([cap.kept_keys.to(torch.float64), keys])
    if ks.shape[0] > keep:
        idx = torch.topk(ks, keep, largest=False).indices.sort().values
        x, ys, ks = x[idx], ys[idx], ks[idx]
    cap.kept_x, cap.kept_y, cap.kept_keys = x, ys, ks


@dataclass(frozen=True)
class CaptureSettings:
    """What one capture pass keeps: gradients on the first ``grad_points`` points, a
    subsample of ``keep`` points drawn from ``seed``'s ``stream``; ``desc`` names the
    progress bar."""

    grad_points: int = 2048
    keep: int = 4096
    seed: int = 0
    stream: str = "probe/keep"
    desc: str = "probe"


def capture(
    model: nn.Module,
    layer: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    groups: torch.Tensor,
    *,
    device: torch.device,
    settings: CaptureSettings = CaptureSettings(),
    progress: bool = False,
) -> Capture:
    """Run ``model`` (in eval mode; modes restored after) over ``batches`` of (x, fine y).

    x: a float batch, or uint8 pixels (converted to float / 255: featavg's image models take
    [0, 1] pixels); y: (B,) fine labels in 0..k-1 with k = len(groups). ``groups`` (k,) maps
    a fine class to its coarse group (J_s). The model must return (B, O) logits with O = G
    (a coarse model), O = k (a fine model; read out by the group of its argmax) or O = 1
    when G = 2 (a margin, see :func:`as_logits`); anything else is a ConfigError. A batch
    whose layer input or logits are not finite (NaN, inf: weights that are finite can still
    overflow) is a :class:`~featavg.faults.NumericalFault` naming the batch, since a class
    mean through it would be NaN and every measure after it meaningless.
    """
    grad_points, keep, seed = settings.grad_points, settings.keep, settings.seed
    stream, desc = settings.stream, settings.desc
    kind = layer_kind(layer)
    k = int(groups.numel())
    n_groups = int(groups.max()) + 1
    groups = groups.to(device)
    tap = _Tap(kind)
    handle = layer.register_forward_hook(tap)
    gen = generator(seed, stream)
    cap: Capture | None = None
    try:
        with eval_mode(model), bar(desc=desc, enabled=progress, unit="batch") as pbar:
            for batch, (x, y) in enumerate(batches):
                x = x.to(device)
                x = x.float() / 255.0 if x.dtype == torch.uint8 else x
                y = y.to(device, torch.long).reshape(-1)
                if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
                    raise ConfigError(
                        f"fine_labels: must lie in 0..{k - 1} (the grouping's classes), got "
                        f"{int(y.min())}..{int(y.max())}"
                    )
                want = grad_points > 0 and (cap is None or cap.grad_points < grad_points)
                tap.want_grad, tap.calls = want, 0
                with torch.set_grad_enabled(want):
                    logits = as_logits(model(x))
                if tap.calls != 1:
                    raise ConfigError(
                        f"layer: called {tap.calls} times in one forward pass (need exactly "
                        "once: probe a layer the model uses once)"
                    )
                assert tap.features is not None
                _check_finite(tap.features, logits, batch, desc)
                n_out = logits.shape[1]
                if n_out not in (n_groups, k):
                    raise ConfigError(
                        f"model: returns {n_out} logits; the grouping has {n_groups} coarse "
                        f"groups over {k} fine classes (need {n_groups} or {k} logits)"
                    )
                if cap is None:
                    d = tap.features.shape[1]
                    cap = Capture(
                        sums=torch.zeros(k, d, dtype=torch.float64, device=device),
                        counts=torch.zeros(k, dtype=torch.float64, device=device),
                        grad_sums=torch.zeros(n_out, 0, dtype=torch.float64, device=device),
                        correct_fine=0 if n_out == k and n_out != n_groups else None,
                    )
                if want:
                    _add_gradients(cap, logits, tap, kind)
                _count(cap, logits.detach(), y, groups, n_groups)
                cap.sums.index_add_(0, y, tap.features)
                cap.counts += torch.bincount(y, minlength=k).to(torch.float64)
                _keep(cap, tap.features, y, gen, keep)
                tap.output = None
                pbar.update(1)
    finally:
        handle.remove()
    if cap is None:
        raise ConfigError("data: no points (the probe needs at least one batch)")
    return cap


def _check_finite(features: torch.Tensor, logits: torch.Tensor, batch: int, desc: str) -> None:
    """A NumericalFault when the layer's input or the logits of one batch are not finite."""
    for what, t in (("the probed layer's input", features), ("the logits", logits)):
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise NumericalFault(
                f"model: {bad} non-finite values in {what} on batch {batch} ({desc}); the "
                "model overflows on this data (check its weights and input scale)"
            )


def _add_gradients(cap: Capture, logits: torch.Tensor, tap: _Tap, kind: str) -> None:
    """Add sum_points d logit_c / d a_r for every logit c (one backward pass each)."""
    assert tap.output is not None
    rows = []
    for c in range(logits.shape[1]):
        (g,) = torch.autograd.grad(
            logits[:, c].sum(), tap.output, retain_graph=c < logits.shape[1] - 1, allow_unused=True
        )
        g = torch.zeros_like(tap.output) if g is None else g
        rows.append(reduce_output(g, kind).to(torch.float64))
    grads = torch.stack(rows)
    cap.grad_sums = grads if cap.grad_points == 0 else cap.grad_sums + grads
    cap.grad_points += logits.shape[0]


def _count(
    cap: Capture, logits: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, n_groups: int
) -> None:
    """Coarse accuracy (a fine model: the group of its argmax, the argmax form) and fine."""
    pred = logits.argmax(1)
    if cap.correct_fine is not None:
        cap.correct_fine += int((pred == y).sum())
        pred = groups[pred]
    cap.correct_coarse += int((pred == groups[y]).sum())
    cap.n += int(y.shape[0])
