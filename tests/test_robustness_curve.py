"""Robustness curves of any model (featavg.attacks.robustness_curve, .incremental).

The reference for the incremental protocol is pgd() itself: per point and radius it runs the
same attack, so its flip radii must equal pgd's exactly and its curve must be the monotone
closure of pgd's grid (robust at r iff pgd keeps the point correct at every radius <= r).
Costs are checked against their formulas; the combined "fmn+pgd" against both parts.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from featavg.attacks import CrossEntropy, GroupCrossEntropy, pgd
from featavg.attacks.apgd import apgd_checkpoints, apgd_until_fooled
from featavg.attacks.core import AttackSettings, CurveResult, Rows
from featavg.attacks.descend import descend_pgd, pgd_until_fooled
from featavg.attacks.incremental import incremental_pgd
from featavg.attacks.robustness_curve import METHODS, robustness_curve
from featavg.config import ConfigError

D, K = 16, 10
PARITY = torch.arange(K) % 2
L2_RADII = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0]
LINF_RADII = [r / 4 for r in L2_RADII]
CURVE_METHODS = [
    (m, n) for m in METHODS for n in ("l2", "linf") if not (m.startswith("ddn") and n == "linf")
]


def clusters(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n points (n, D) float64 around K fixed Gaussian centres, and their classes (n,)."""
    centers = torch.randn(K, D, generator=torch.Generator().manual_seed(123), dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(0, K, (n,), generator=g)
    return centers[c] + 0.6 * torch.randn(n, D, generator=g, dtype=torch.float64), c


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    """A 10-class ReLU MLP (float64) trained on the clusters (300 Adam steps)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(D, 64), nn.ReLU(), nn.Linear(64, K)).double()
    x, c = clusters(600, seed=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), c).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def points() -> tuple[torch.Tensor, torch.Tensor]:
    """80 test points; the first 3 carry a wrong label (misclassified clean)."""
    x, c = clusters(80, seed=2)
    c[:3] = (c[:3] + 1) % K
    return x, c


def task(group: bool, c: torch.Tensor):
    """(objective, labels): the 10 classes, or the parity read-out of the 10-class model."""
    return (GroupCrossEntropy(PARITY), c % 2) if group else (CrossEntropy(), c)


def setting(norm: str) -> dict:
    """The paper's starts: on the eps-sphere for L2, uniform in the eps-box for L-inf."""
    return {"random_start": "sphere" if norm == "l2" else "box"}


@pytest.mark.parametrize("restarts", [1, 2])
@pytest.mark.parametrize("group", [False, True], ids=["classes", "parity-groups"])
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_incremental_is_the_monotone_closure_of_pgd(mlp, points, norm, group, restarts):
    x, c = points
    objective, y = task(group, c)
    radii = L2_RADII if norm == "l2" else LINF_RADII
    kw = dict(norm=norm, objective=objective, restarts=restarts, seed=3, **setting(norm))
    grid = pgd(mlp, x, y, radii, settings=AttackSettings(**kw))
    curve = incremental_pgd(mlp, x, y, radii, settings=AttackSettings(**kw))
    fooled = torch.isfinite(curve.flip_radius)
    assert 0 < fooled.float().mean() < 1  # the grid spans the interesting range
    assert torch.equal(curve.flip_radius, grid.flip_radius.cpu())
    assert torch.equal(curve.per_point_correct, grid.correct.cummin(0).values)
    assert not (curve.per_point_correct & ~grid.correct).any()  # never above pgd's grid
    assert torch.all(curve.robust_accuracy <= grid.robust_accuracy + 1e-12)


class Rings(nn.Module):
    """Two logits [0, sin(3 ||x||)]: the class alternates along every ray, so a point pgd
    fools at r can resist at r' > r (pgd's own curve is non-monotone)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sin(3 * x.flatten(1).norm(dim=1))
        return torch.stack([torch.zeros_like(s), s], 1)


@pytest.mark.parametrize("steps", [0, 7])
def test_incremental_closes_a_non_monotone_pgd_curve(steps):
    x = torch.randn(100, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = Rings()(x).argmax(1)
    radii = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
    grid = pgd(Rings(), x, y, radii, settings=AttackSettings(steps=steps))
    curve = incremental_pgd(Rings(), x, y, radii, settings=AttackSettings(steps=steps))
    closure = grid.correct.cummin(0).values
    assert (closure != grid.correct).sum() >= 10
    assert torch.equal(curve.per_point_correct, closure)
    assert torch.equal(curve.flip_radius, grid.flip_radius)
    assert (curve.robust_accuracy < grid.robust_accuracy).any()
    assert torch.all(curve.robust_accuracy.diff() <= 0)


def test_gradient_evaluations_follow_their_formulas(mlp, points):
    """per-radius: R * (points correct clean) * steps. incremental: steps * the points
    standing at each radius > 0 (a point fooled at r was attacked at r, not after)."""
    x, c = points
    steps = 5
    per_radius = robustness_curve(
        mlp, x, c, L2_RADII, settings=AttackSettings(steps=steps), method="per-radius"
    )
    incremental = robustness_curve(
        mlp, x, c, L2_RADII, settings=AttackSettings(steps=steps), method="incremental"
    )
    clean_correct = per_radius.per_point_correct[0]
    assert per_radius.gradient_evaluations == len(L2_RADII) * int(clean_correct.sum()) * steps
    standing = sum(int((incremental.flip_radius >= r).sum()) for r in L2_RADII if r > 0)
    assert incremental.gradient_evaluations == steps * standing
    assert incremental.gradient_evaluations < per_radius.gradient_evaluations
    # forward-only: the clean pass and each chunk's final iterate
    assert incremental.forward_evaluations == x.shape[0] + standing
    assert torch.equal(incremental.flip_radius, per_radius.flip_radius)


@pytest.mark.parametrize(("method", "norm"), CURVE_METHODS)
def test_every_method_gives_a_consistent_curve(mlp, points, method, norm):
    x, c = points
    radii = L2_RADII if norm == "l2" else LINF_RADII
    curve = robustness_curve(
        mlp,
        x,
        c,
        radii,
        settings=AttackSettings(norm=norm, min_norm_steps=30, **setting(norm)),
        method=method,
    )
    assert isinstance(curve, CurveResult)
    assert curve.method == method and curve.norm == norm
    assert curve.eps.dtype == torch.float64 and torch.equal(
        curve.eps, torch.tensor(radii, dtype=torch.float64)
    )
    assert curve.per_point_correct.shape == (len(radii), x.shape[0])
    assert curve.gradient_evaluations > 0 and curve.wall_s > 0
    # eps 0: the clean accuracy, for every method
    with torch.no_grad():
        clean = (mlp(x).argmax(1) == c).to(torch.float64).mean()
    assert curve.robust_accuracy[0] == clean
    assert torch.equal(curve.robust_accuracy, curve.per_point_correct.double().mean(1))
    assert torch.equal(curve.flip_radius[:3], torch.zeros(3))  # misclassified clean
    if method != "per-radius":  # the paper's protocol may be non-monotone; the others not
        assert torch.all(curve.robust_accuracy.diff() <= 0)
        expected = curve.eps[:, None] < curve.flip_radius[None, :]
        assert torch.equal(curve.per_point_correct, expected)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_fmn_plus_pgd_is_at_least_as_strong_as_both(mlp, points, norm):
    x, c = points
    radii = L2_RADII if norm == "l2" else LINF_RADII
    kw = dict(norm=norm, min_norm_steps=30, seed=1, **setting(norm))
    methods = ("incremental", "fmn", "fmn+pgd")
    alone = {
        m: robustness_curve(mlp, x, c, radii, settings=AttackSettings(**kw), method=m)
        for m in methods
    }
    both = alone["fmn+pgd"]
    assert torch.all(both.flip_radius <= alone["fmn"].flip_radius)
    assert torch.all(both.flip_radius <= alone["incremental"].flip_radius)
    assert torch.all(both.robust_accuracy <= alone["fmn"].robust_accuracy)
    assert torch.all(both.robust_accuracy <= alone["incremental"].robust_accuracy)
    # PGD refines only points still standing after FMN: no dearer than both alone
    cost = alone["fmn"].gradient_evaluations + alone["incremental"].gradient_evaluations
    assert alone["fmn"].gradient_evaluations < both.gradient_evaluations <= cost


def test_grid_order_and_chunks_do_not_matter(mlp, points):
    x, c = points
    reference = robustness_curve(mlp, x, c, L2_RADII, method="incremental")
    shuffled = robustness_curve(
        mlp, x, c, L2_RADII[::-1], settings=AttackSettings(batch_size=7), method="incremental"
    )
    assert torch.equal(shuffled.eps, reference.eps)
    assert torch.equal(shuffled.flip_radius, reference.flip_radius)
    assert shuffled.gradient_evaluations == reference.gradient_evaluations


def test_known_flip_radii_are_not_attacked(mlp, points):
    """incremental_pgd(known_flip=...) skips each point from its known radius on and
    reports min(known, found)."""
    x, c = points
    free = incremental_pgd(mlp, x, c, L2_RADII)
    known = torch.full((x.shape[0],), 0.35, dtype=torch.float64)
    capped = incremental_pgd(mlp, x, c, L2_RADII, known_flip=known)
    assert torch.equal(capped.flip_radius, torch.minimum(free.flip_radius, known))
    standing = sum(int((capped.flip_radius >= r).sum()) for r in L2_RADII if 0 < r < 0.35)
    assert capped.gradient_evaluations == 7 * standing


def test_box_and_image_shaped_inputs():
    """A small CNN on (B, 1, 6, 6) images in [0, 1] with box (0, 1): same closure property
    through image shapes and the clamp."""
    torch.manual_seed(4)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)).double()
    x = torch.rand(30, 1, 6, 6, dtype=torch.float64)
    y = cnn(x).argmax(1)
    radii = [0.0, 0.05, 0.1, 0.2, 0.4, 0.8]
    grid = pgd(cnn, x, y, radii, settings=AttackSettings(box=(0.0, 1.0)))
    curve = robustness_curve(
        cnn, x, y, radii, settings=AttackSettings(box=(0.0, 1.0)), method="incremental"
    )
    assert torch.equal(curve.per_point_correct, grid.correct.cummin(0).values)
    fmn_curve = robustness_curve(
        cnn, x, y, radii, settings=AttackSettings(box=(0.0, 1.0)), method="fmn"
    )
    assert fmn_curve.robust_accuracy[0] == 1.0 and fmn_curve.robust_accuracy[-1] < 1.0


def test_model_modes_parameters_and_grads_are_left_alone(points):
    """A model in train mode with BatchNorm and dropout, one submodule in eval mode: the
    attacks run in eval mode, restore each submodule's flag, and touch no parameter, buffer
    or .grad."""
    x, c = points
    torch.manual_seed(5)
    net = nn.Sequential(
        nn.Linear(D, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, K)
    ).double()
    net.train()
    net[3].eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for method in METHODS:
        robustness_curve(
            net,
            x,
            c,
            L2_RADII[:4],
            settings=AttackSettings(min_norm_steps=5, steps=2),
            method=method,
        )
    assert [m.training for m in net] == [True, True, True, False, True] and net.training
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_bad_arguments_are_config_errors(mlp, points):
    x, c = points
    with pytest.raises(ConfigError, match="method"):
        robustness_curve(mlp, x, c, L2_RADII, method="autoattack")
    with pytest.raises(ConfigError, match="norm"):
        robustness_curve(mlp, x, c, L2_RADII, settings=AttackSettings(norm="l1"))
    with pytest.raises(ConfigError, match="norm: method ddn"):
        robustness_curve(mlp, x, c, L2_RADII, settings=AttackSettings(norm="linf"), method="ddn")
    with pytest.raises(ConfigError, match="eps"):
        robustness_curve(mlp, x, c, [0.1, -1.0])
    with pytest.raises(ConfigError, match="eps"):
        robustness_curve(mlp, x, c, [])


def linear_binary(seed: int, n: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A linear 2-logit model [0, w.x + b] on n points (n, D) float64, their predicted labels
    and the exact L2 distance of each point to the decision boundary, |w.x + b| / ||w||."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(D, 1).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(1, D, generator=g, dtype=torch.float64))
        lin.bias.zero_()
    net = nn.Sequential(lin, nn.ConstantPad1d((1, 0), 0.0)).eval()
    x = 0.3 * torch.randn(n, D, generator=g, dtype=torch.float64)
    with torch.no_grad():
        f = lin(x)[:, 0]
    return net, x, (f > 0).long(), f.abs() / lin.weight.norm()


@pytest.mark.parametrize("warm", [False, True], ids=["random-start", "warm-start"])
def test_descend_pgd_is_sound_and_reaches_the_grid_radius_above_the_distance(warm):
    """On a linear model the exact distance is known: a point may only be counted fooled at
    radii >= its distance (soundness), and PGD started from any radius above it descends to
    the smallest grid radius >= the distance (up to a thin band where 7 steps fall short)."""
    net, x, y, dist = linear_binary(seed=0, n=120)
    radii = torch.linspace(0, 1.0, 21, dtype=torch.float64)
    nu = torch.full((x.shape[0],), math.inf, dtype=torch.float64)
    x_known = None
    if warm:  # a loose minimum-norm result: the exact direction, 1.5x too long
        w = net[0].weight[0].detach()
        step = (1.5 * dist)[:, None] * w / w.norm() * torch.where(y == 1, -1.0, 1.0)[:, None]
        x_known, nu = x + step, 1.5 * dist
    curve = descend_pgd(net, x, y, radii, nu, x_known)
    assert torch.all(curve.flip_radius >= dist - 1e-9)  # never fooled inside the true ball
    above = radii[torch.searchsorted(radii, dist).clamp_max(20)]
    reachable = dist <= radii[-1] * 0.99
    expected = torch.minimum(above, nu)  # no grid radius in [dist, nu): nu stays
    hit = curve.flip_radius[reachable] == expected[reachable]
    assert hit.float().mean() > 0.9, hit.float().mean()
    assert torch.all(curve.flip_radius <= nu)
    assert torch.equal(curve.flip_radius[~reachable], nu[~reachable])  # beyond the grid
    assert torch.all(curve.robust_accuracy.diff() <= 0)


def test_descend_pgd_cost_and_early_exit():
    """At most steps gradient evaluations per PGD run; a run that starts adversarial costs
    one (its first iterate is checked before any step); a point whose known radius lies at or
    below the smallest positive grid radius is never attacked."""
    net, x, y, dist = linear_binary(seed=1, n=60)
    radii = [0.0, 0.5, 1.0]
    far = torch.full((60,), math.inf, dtype=torch.float64)
    curve = descend_pgd(net, x, y, radii, far, settings=AttackSettings(steps=7))
    runs = 60 + int((curve.flip_radius <= 0.5).sum())  # one failed run each, plus descents
    assert 0 < curve.gradient_evaluations <= 7 * runs
    # every point known fooled at 0.5 already: no grid radius > 0 below it, no attack
    tiny = descend_pgd(net, x, y, radii, torch.full((60,), 0.5, dtype=torch.float64))
    assert tiny.gradient_evaluations == 0
    assert torch.equal(tiny.flip_radius, torch.full((60,), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_until_fooled_returns_verified_perturbations(mlp, points, norm):
    x, c = points
    eps = torch.full((x.shape[0],), 0.6 if norm == "l2" else 0.15, dtype=torch.float64)
    start = 0.0 * x
    settings = AttackSettings(norm=norm, steps=7, objective=CrossEntropy())
    fooled, delta = pgd_until_fooled(mlp, Rows(x, c, eps, eps / 4), start, settings)
    assert 0 < fooled.float().mean() < 1
    size = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(1)
    assert torch.all(size <= eps * (1 + 1e-9))
    with torch.no_grad():
        assert torch.equal(mlp(x + delta).argmax(1) != c, fooled)


@pytest.mark.parametrize(
    ("method", "norm"),
    [
        ("fmn+descend", "l2"),
        ("fmn+descend", "linf"),
        ("ddn+descend", "l2"),
        ("fmn+apgd", "l2"),
        ("fmn+apgd", "linf"),
    ],
)
def test_descend_methods_only_lower_the_min_norm_curve(mlp, points, method, norm):
    x, c = points
    radii = L2_RADII if norm == "l2" else LINF_RADII
    kw = dict(norm=norm, min_norm_steps=10, seed=1)
    alone = robustness_curve(
        mlp, x, c, radii, settings=AttackSettings(**kw), method=method.split("+")[0]
    )
    both = robustness_curve(mlp, x, c, radii, settings=AttackSettings(**kw), method=method)
    assert torch.all(both.flip_radius <= alone.flip_radius)
    assert (both.flip_radius < alone.flip_radius).any()  # 10 FMN steps leave room
    grid = torch.tensor(radii, dtype=torch.float64)
    lowered = both.flip_radius < alone.flip_radius
    assert torch.isin(both.flip_radius[lowered], grid).all()  # lowered only to grid radii
    assert both.gradient_evaluations > alone.gradient_evaluations


def test_descend_restarts_only_add_flips(mlp, points):
    """Random restarts after the warm start: never a higher flip radius than one start (same
    warm-start runs first), and a restart is paid only by the points it attacks."""
    x, c = points
    kw = dict(min_norm_steps=10, seed=2)
    one = robustness_curve(
        mlp, x, c, L2_RADII, method="fmn+descend", settings=AttackSettings(restarts=1, **kw)
    )
    three = robustness_curve(
        mlp, x, c, L2_RADII, method="fmn+descend", settings=AttackSettings(restarts=3, **kw)
    )
    assert torch.all(three.flip_radius <= one.flip_radius)
    assert one.gradient_evaluations < three.gradient_evaluations
    assert three.gradient_evaluations <= 3 * one.gradient_evaluations


@pytest.mark.parametrize(
    ("field", "settings"),
    [
        ("rel_step", dict(rel_step=1e39)),
        ("rel_step", dict(rel_step=math.inf)),
        ("step_size", dict(step_size=1e39)),
        ("box", dict(box=(-1e39, 1e39))),
    ],
)
def test_settings_beyond_float32_are_refused(field, settings):
    """rel_step 1e39 used to become inf in float32, its steps NaN, and every point counted
    fooled at every radius, clean accuracy included, without an error."""
    with pytest.raises(ConfigError, match=f"^{field}:") as err:
        AttackSettings(**settings)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("method", METHODS)
def test_radii_and_steps_that_overflow_the_inputs_dtype_are_refused(points, method):
    x, c = points
    x32 = x.float()
    net = nn.Sequential(nn.Linear(D, 8), nn.ReLU(), nn.Linear(8, K))
    with pytest.raises(ConfigError, match="^eps:"):
        robustness_curve(net, x32, c, [0.0, 1e39], method=method)
    # each fits float32, their product (the PGD step rel_step * eps) does not
    settings = AttackSettings(rel_step=1e30, min_norm_steps=2)
    if method in ("fmn", "ddn", "fmn+apgd"):  # no stage of rel_step * eps: no overflow
        robustness_curve(net, x32, c, [0.0, 1e10], method=method, settings=settings)
    else:
        with pytest.raises(ConfigError, match="^rel_step:"):
            robustness_curve(net, x32, c, [0.0, 1e10], method=method, settings=settings)


class SignedSqrt(nn.Module):
    """Logits W (sign(x) sqrt(|x|)) + b (a power normalisation of the input): finite
    everywhere, but the input gradient is NaN at every input with an exactly-zero entry
    (sqrt'(0) = inf times |.|'(0) = 0), e.g. the black background pixels of an image."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.linear = nn.Linear(D, K).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.sign(x) * torch.sqrt(x.abs()))


def zero_entries(x: torch.Tensor) -> torch.Tensor:
    """x with its first 4 coordinates set to exactly 0 (a black corner)."""
    x = x.clone()
    x[:, :4] = 0.0
    return x


@pytest.mark.parametrize("method", METHODS)
def test_radius_zero_is_the_clean_accuracy_even_with_nan_gradients(points, method):
    """PGD (which still takes its steps at eps 0) and FMN / DDN (whose first step is taken
    at x) used to step along the NaN gradient at x and report robust accuracy 0 at eps 0;
    now eps 0 is the clean prediction by construction, whatever the attack did there."""
    x, _ = points
    x, net = zero_entries(x), SignedSqrt()
    with torch.no_grad():
        c = net(x).argmax(1)
    c[:5] = (c[:5] + 1) % K  # a few clean mistakes
    x_probe = x[:4].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(x_probe).sum(), x_probe)
    assert torch.isnan(grad).any(1).all()  # the premise: NaN entries in every gradient
    settings = AttackSettings(min_norm_steps=5, steps=3)
    curve = robustness_curve(net, x, c, L2_RADII[:4], method=method, settings=settings)
    with torch.no_grad():
        clean = (net(x).argmax(1) == c).to(torch.float64).mean()
    assert 0.5 < clean < 1 and curve.robust_accuracy[0] == clean
    with torch.no_grad():
        assert torch.equal(curve.per_point_correct[0], net(x).argmax(1) == c)


def test_pgd_never_steps_along_a_non_finite_gradient(points):
    x, _ = points
    x, net = zero_entries(x), SignedSqrt()
    with torch.no_grad():
        c = net(x).argmax(1)
    result = pgd(net, x, c, [0.0, 0.3], AttackSettings(steps=3))
    assert torch.isfinite(result.x_adv).all()
    with torch.no_grad():
        verdict = net(result.x_adv.flatten(0, 1)).argmax(1) == c.repeat(2)
    assert torch.equal(verdict.view(2, -1), result.correct)
    assert torch.equal(result.correct[0], torch.ones_like(c, dtype=torch.bool))


class BatchDependent(nn.Module):
    """A linear model whose logits flip sign in batches larger than 80 rows: its verdict at
    x itself depends on what it is batched with, as no attack should assume it does not."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.linear = nn.Linear(D, K).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        return -out if x.shape[0] > 80 else out


def test_radius_zero_is_the_clean_pass_by_construction(points):
    """Per-radius PGD evaluates eps 0 in one (R*B)-row batch with the other radii; its verdict
    there is not the clean pass's, but the curve at eps 0 is the clean correctness."""
    x, _ = points
    net = BatchDependent()
    with torch.no_grad():
        c = net(x).argmax(1)  # 80 rows: every point correct clean
    grid = pgd(net, x, c, L2_RADII[:3], AttackSettings(steps=0))
    assert not grid.correct[0].any()  # the premise: the batched verdict at eps 0 differs
    curve = robustness_curve(
        net, x, c, L2_RADII[:3], method="per-radius", settings=AttackSettings(steps=0)
    )
    assert curve.robust_accuracy[0] == 1.0 and curve.per_point_correct[0].all()
    assert torch.all(curve.flip_radius > 0)


def autoattackapgd_checkpoints(steps: int) -> list[int]:
    """AutoAttack's checkpoint schedule, replayed from its code: a counter reaches k, then k
    shrinks by 3 % of the steps down to 6 %, starting at 22 %."""
    k, shortest, shrink = (
        max(int(0.22 * steps), 1),
        max(int(0.06 * steps), 1),
        max(int(0.03 * steps), 1),
    )
    out, counter = [], 0
    for i in range(steps):
        counter += 1
        if counter == k:
            out.append(i + 1)
            k, counter = max(k - shrink, shortest), 0
    return out


def test_apgdapgd_checkpoints_follow_autoattack():
    for steps in (1, 5, 20, 100):
        assert apgd_checkpoints(steps) == autoattackapgd_checkpoints(steps)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_apgd_until_fooled_returns_verified_perturbations(mlp, points, norm):
    x, c = points
    eps = torch.full((x.shape[0],), 0.6 if norm == "l2" else 0.15, dtype=torch.float64)
    settings = AttackSettings(norm=norm)
    fooled, delta = apgd_until_fooled(mlp, Rows(x, c, eps, 2 * eps), 0.0 * x, settings, 20)
    size = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(1)
    assert torch.all(size <= eps * (1 + 1e-9))
    with torch.no_grad():
        assert torch.equal(mlp(x + delta).argmax(1) != c, fooled)
    # at least as strong as PGD-20 of eps/4 from the same start, here
    pgd_fooled, _ = pgd_until_fooled(
        mlp, Rows(x, c, eps, eps / 4), 0.0 * x, AttackSettings(norm=norm, steps=20)
    )
    assert 0 < int(pgd_fooled.sum()) <= int(fooled.sum()) < x.shape[0]


def test_fmn_apgd_reaches_the_grid_radius_above_the_distance():
    """On a linear model: never fooled inside the exact ball, and fooled at every grid
    radius beyond it: the curve is exactly the true one, acc(eps) = share of distances >
    eps (a flip radius is FMN's norm or the grid radius APGD reached, whichever is
    smaller)."""
    net, x, y, dist = linear_binary(seed=2, n=120)
    radii = torch.linspace(0, 1.0, 21, dtype=torch.float64)
    curve = robustness_curve(net, x, y, radii, method="fmn+apgd")
    assert torch.all(curve.flip_radius >= dist - 1e-9)
    truth = radii[:, None] < dist[None, :]
    assert torch.equal(curve.per_point_correct, truth)
    # cost: 10 FMN steps per point, then at most 21 per APGD run, most stopping early
    assert 10 * 120 < curve.gradient_evaluations < (10 + 2 * 21) * 120
