"""Cross-check our L2 PGD against torchattacks' PGDL2 (torchattacks 3.5.1).

torchattacks works on images in [0, 1] (it clamps to that box) and draws its random start
with radius eps * U, U ~ U(0, 1); we compare with box=(0, 1) and our nearest start
("ball", radius eps * U^(1/D)), same eps and step alpha = eps/4.

Three checks: no random start, step for step; torchattacks' own random start replayed
through ``init_delta``, step for step; and our "ball" start against theirs within attack
noise. The last uses 20 steps: with 7 steps of eps/4 the start law itself matters. A start
at radius ~eps (ours: U^(1/64) is close to 1; the paper's sphere start is exactly eps)
leaves a random component that projection removes only slowly, so it is weaker than
torchattacks' start (mean radius eps/2) by about 0.05 robust accuracy on this task, and
weaker still than no random start at all.

Differences by design, excluded from the step-for-step checks: we keep a clean-misclassified
point as its own adversarial example (it is fooled at every radius) where torchattacks still
moves it; torchattacks divides the gradient by ||g|| + eps_for_division (1e-10) of a
batch-MEAN loss, so on very confident points its steps shrink; we pass 1e-30 there.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from featavg.attacks import AttackSettings, pgd

try:
    import torchattacks
except ImportError:  # a declared test dependency: the test must fail, not skip
    torchattacks = None

RADII = [0.25, 0.5, 0.75, 1.0]


@pytest.fixture(scope="module")
def attacks_lib():
    if torchattacks is None:
        pytest.fail("torchattacks==3.5.1 is a declared test dependency (pip install '.[test]')")
    return torchattacks


@pytest.fixture(scope="module")
def image_task():
    """A 4-class task on 1x8x8 'images' in [0, 1] and a small MLP trained on it."""
    gen = torch.Generator().manual_seed(0)
    templates = 0.3 + 0.4 * torch.rand(4, 1, 8, 8, generator=gen)

    def sample(n):
        labels = torch.randint(4, (n,), generator=gen)
        noise = 0.25 * torch.randn(n, 1, 8, 8, generator=gen)
        return (templates[labels] + noise).clamp(0, 1), labels

    x_train, y_train = sample(1000)
    x_test, y_test = sample(400)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x_train), y_train).backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, x_test, y_test


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).double().mean().item()


def test_deterministic_pgd_matches_torchattacks_step_for_step(attacks_lib, image_task):
    model, x, y = image_task
    clean = model(x).argmax(1) == y
    ours = pgd(
        model, x, y, RADII, settings=AttackSettings(box=(0.0, 1.0), random_start="none", steps=7)
    )
    for i, eps in enumerate(RADII):
        attack = attacks_lib.PGDL2(
            model, eps=eps, alpha=eps / 4, steps=7, random_start=False, eps_for_division=1e-30
        )
        theirs = attack(x, y)
        torch.testing.assert_close(ours.x_adv[i][clean], theirs[clean], rtol=0, atol=1e-5)
        assert abs(ours.robust_accuracy[i].item() - accuracy(model, theirs, y)) <= 0.01


def test_torchattacks_random_start_reproduced_step_for_step(attacks_lib, image_task):
    """Feed torchattacks' own random start (same global-RNG draws) as init_delta."""
    model, x, y = image_task
    clean = model(x).argmax(1) == y
    with torch.random.fork_rng():
        torch.manual_seed(11)  # replay PGDL2's draws: Gaussian direction, radius eps * U
        gauss = torch.empty_like(x).normal_()
        norms = gauss.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        unit_start = gauss * torch.zeros_like(norms).uniform_(0, 1) / norms
        init = torch.stack([eps * unit_start for eps in RADII])
        ours = pgd(
            model, x, y, RADII, settings=AttackSettings(box=(0.0, 1.0), steps=7), init_delta=init
        )
        for i, eps in enumerate(RADII):
            torch.manual_seed(11)
            attack = attacks_lib.PGDL2(
                model, eps=eps, alpha=eps / 4, steps=7, eps_for_division=1e-30
            )
            theirs = attack(x, y)  # float32 rounding of the start differs: atol 1e-4
            torch.testing.assert_close(ours.x_adv[i][clean], theirs[clean], rtol=0, atol=1e-4)
            assert abs(ours.robust_accuracy[i].item() - accuracy(model, theirs, y)) <= 0.01


def test_random_start_pgd_matches_torchattacks_within_attack_noise(attacks_lib, image_task):
    # 20 steps: with 7 steps of eps/4 the start law matters (see the module docstring)
    model, x, y = image_task
    ours = pgd(
        model,
        x,
        y,
        RADII,
        settings=AttackSettings(box=(0.0, 1.0), random_start="ball", steps=20, seed=0),
    )
    acc = ours.robust_accuracy
    assert acc[0] > 0.6 and acc[-1] < 0.1  # the grid covers the informative range
    with torch.random.fork_rng():  # torchattacks draws from the global generator
        torch.manual_seed(0)
        for i, eps in enumerate(RADII):
            attack = attacks_lib.PGDL2(model, eps=eps, alpha=eps / 4, steps=20)
            theirs = accuracy(model, attack(x, y), y)
            assert abs(acc[i].item() - theirs) <= 0.03, (eps, acc[i].item(), theirs)
