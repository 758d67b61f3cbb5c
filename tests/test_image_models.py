"""Image models: ResNet-18 stems and keys, small CPU models, the normalising classifier, the
builtin registry. References are written here independently of src (a functional ResNet-18
forward from the state dict, the torchvision key list from the layer structure)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from featavg.config import ConfigError
from featavg.models.builtin import BUILTIN_MODELS, build_model, default_normalization
from featavg.models.image_classifier import (
    CIFAR_AUTHORS,
    CIFAR_PRETRAINED,
    MNIST_HALF,
    NONE,
    ImageClassifier,
    Normalization,
    load_backbone_state,
    normalization_by_name,
)
from featavg.models.resnet import Conv3x3, resnet18
from featavg.models.small_image import MLP, SmallCNN
from featavg.seeding import generator

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=generator(seed, "test/images"))


def torchvision_keys() -> list[str]:
    """torchvision's resnet18 state-dict keys, in registration order, from its structure."""
    keys = ["conv1.weight", *(f"bn1.{k}" for k in BN_KEYS)]
    for stage in range(1, 5):
        for block in range(2):
            p = f"layer{stage}.{block}"
            keys += [f"{p}.conv1.weight", *(f"{p}.bn1.{k}" for k in BN_KEYS)]
            keys += [f"{p}.conv2.weight", *(f"{p}.bn2.{k}" for k in BN_KEYS)]
            if stage > 1 and block == 0:
                keys += [f"{p}.downsample.0.weight", *(f"{p}.downsample.1.{k}" for k in BN_KEYS)]
    return keys + ["fc.weight", "fc.bias"]


def reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor, stem: str) -> torch.Tensor:
    """Eval-mode ResNet-18 written with torch.nn.functional from a state dict."""

    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(
            t,
            state[f"{p}.running_mean"],
            state[f"{p}.running_var"],
            state[f"{p}.weight"],
            state[f"{p}.bias"],
            training=False,
            eps=1e-5,
        )

    big = stem in ("mnist", "imagenet")
    out = F.conv2d(x, state["conv1.weight"], stride=2 if big else 1, padding=3 if big else 1)
    out = F.relu(bn(out, "bn1"))
    if stem != "cifar":
        out = F.max_pool2d(out, 3, stride=2, padding=1)
    for stage in range(1, 5):
        for block in range(2):
            p = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            h = F.relu(
                bn(F.conv2d(out, state[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1")
            )
            h = bn(F.conv2d(h, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            if f"{p}.downsample.0.weight" in state:
                short = bn(
                    F.conv2d(out, state[f"{p}.downsample.0.weight"], stride=stride),
                    f"{p}.downsample.1",
                )
            else:
                short = out
            out = F.relu(h + short)
    feats = out.mean(dim=(2, 3))
    return F.linear(feats, state["fc.weight"], state["fc.bias"])


def perturb_bn_stats(net: nn.Module, seed: int) -> None:
    """Non-trivial running statistics so that eval-mode comparisons test them too."""
    g = generator(seed, "test/bn")
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


def test_imagenet_resnet18_has_torchvision_parameter_count() -> None:
    net = resnet18(1000, "imagenet")
    assert sum(p.numel() for p in net.parameters()) == 11_689_512


@pytest.mark.parametrize(("stem", "channels", "kernel"), [("mnist", 1, 7), ("cifar", 3, 3)])
def test_parameter_count_differs_only_in_stem_and_head(
    stem: str, channels: int, kernel: int
) -> None:
    net = resnet18(10, stem)  # type: ignore[arg-type]
    expected = 11_689_512 - (3 * 64 * 49) - (512 * 1000 + 1000)
    expected += channels * 64 * kernel**2 + 512 * 10 + 10
    assert sum(p.numel() for p in net.parameters()) == expected


@pytest.mark.parametrize(
    ("stem", "channels", "size", "stem_size"),
    [("mnist", 1, 28, 7), ("cifar", 3, 32, 32), ("pretrained", 3, 32, 16), ("imagenet", 3, 32, 8)],
)
def test_stem_resolution_and_output_shapes(
    stem: str, channels: int, size: int, stem_size: int
) -> None:
    net = resnet18(10, stem).eval()  # type: ignore[arg-type]
    assert net.conv1.in_channels == channels
    seen: list[tuple[int, ...]] = []
    net.maxpool.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    x = rand(2, channels, size, size)
    with torch.no_grad():
        assert net.features(x).shape == (2, 512)
        assert net(x).shape == (2, 10)
    assert seen[0] == (2, 64, stem_size, stem_size)
    assert net.feature_dim == 512


@pytest.mark.parametrize(("stem", "size"), [("mnist", 28), ("pretrained", 32), ("cifar", 16)])
def test_resnet_matches_functional_reference(stem: str, size: int) -> None:
    net = resnet18(10, stem, generator=generator(1, "init"))  # type: ignore[arg-type]
    perturb_bn_stats(net, 1)
    net.eval()
    x = rand(3, net.conv1.in_channels, size, size) * 2 - 1
    with torch.no_grad():
        expected = reference_forward(dict(net.state_dict()), x, stem)
        torch.testing.assert_close(net(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    ("h", "w", "stride"),
    [(1, 1, 1), (1, 1, 2), (2, 2, 1), (2, 2, 2), (1, 2, 1), (2, 1, 2), (3, 3, 1)],
)
def test_conv3x3_dense_path_equals_conv2d_with_gradients(
    h: int, w: int, stride: int, channels_last: bool
) -> None:
    """Conv3x3's dense product on <= 2x2 inputs is the padded convolution: same output,
    same input gradient, same weight gradient (zero on the taps that see only padding)."""
    conv = Conv3x3(6, 5, stride)
    conv.weight.data.copy_(rand(5, 6, 3, 3, seed=2) - 0.5)
    x = rand(4, 6, h, w, seed=3) - 0.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    upstream = rand(4, 5, (h - 1) // stride + 1, (w - 1) // stride + 1, seed=4)
    x1 = x.clone().requires_grad_()
    out = conv(x1)
    out.backward(upstream)
    w2 = conv.weight.detach().clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    expected = F.conv2d(x2, w2, stride=stride, padding=1)
    expected.backward(upstream)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(conv.weight.grad, w2.grad, rtol=1e-5, atol=1e-6)
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_skip_padding_taps_changes_speed_not_the_function() -> None:
    """The MNIST-stem ResNet (layer3 at 2x2, layer4 at 1x1) gives the same logits and
    parameter gradients with the dense path on and off; both share one state-dict layout."""
    fast = resnet18(10, "mnist", generator=generator(5, "init"))
    plain = resnet18(10, "mnist", generator=generator(5, "init"), skip_padding_taps=False)
    plain.load_state_dict(fast.state_dict(), strict=True)
    x = rand(8, 1, 28, 28, seed=6) * 2 - 1
    y = torch.arange(8) % 10
    for net in (fast, plain):
        F.cross_entropy(net(x), y).backward()
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-5)
    for (name, p), q in zip(fast.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_pretrained_layout_matches_torchvision_keys_and_huyvnphan_stem() -> None:
    net = resnet18(10, "pretrained")
    state = net.state_dict()
    assert list(state) == torchvision_keys()
    assert state["conv1.weight"].shape == (64, 3, 3, 3)
    assert state["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert state["fc.weight"].shape == (10, 512)
    assert isinstance(net.maxpool, nn.MaxPool2d)
    assert (net.maxpool.kernel_size, net.maxpool.stride, net.maxpool.padding) == (3, 2, 1)
    assert isinstance(resnet18(10, "cifar").maxpool, nn.Identity)
    # every stem shares the keys (only conv1's shape differs)
    assert list(resnet18(2, "mnist").state_dict()) == torchvision_keys()


def test_kaiming_init_as_torchvision() -> None:
    net = resnet18(10, "cifar", generator=generator(0, "init"))
    w = net.layer4[1].conv2.weight  # fan_out = 512 * 9
    assert abs(w.std().item() / math.sqrt(2 / (512 * 9)) - 1) < 0.02
    assert torch.all(net.layer3[0].bn1.weight == 1) and torch.all(net.layer3[0].bn1.bias == 0)
    bound = 1 / math.sqrt(512)  # nn.Linear's default init
    assert net.fc.weight.abs().max() <= bound and net.fc.weight.abs().max() > 0.9 * bound


def test_seeded_init_is_reproducible_and_ignores_global_rng() -> None:
    torch.manual_seed(0)
    a = build_model("cnn", 10, 1, 28, MNIST_HALF, seed=3)
    torch.manual_seed(1)
    b = build_model("cnn", 10, 1, 28, MNIST_HALF, seed=3)
    c = build_model("cnn", 10, 1, 28, MNIST_HALF, seed=4)
    for (k, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), k
    assert not torch.equal(a.net.fc.weight, c.net.fc.weight)


def test_load_backbone_state_with_and_without_prefix() -> None:
    source = build_model("resnet18-pretrained", 10, 3, 32, CIFAR_PRETRAINED, seed=0)
    perturb_bn_stats(source.net, 2)
    target = build_model("resnet18-pretrained", 10, 3, 32, CIFAR_PRETRAINED, seed=1)
    x = rand(2, 3, 32, 32)
    source.eval()
    target.eval()
    with torch.no_grad():
        assert not torch.allclose(source(x), target(x))
        plain = source.net.state_dict()  # a huyvnphan-style checkpoint: no "net." prefix
        assert not any(k.startswith("net.") for k in plain)
        load_backbone_state(target, plain)
        assert torch.equal(source(x), target(x))
        other = build_model("resnet18-pretrained", 10, 3, 32, CIFAR_PRETRAINED, seed=2).eval()
        prefixed = source.state_dict()
        assert all(k.startswith("net.") for k in prefixed)
        load_backbone_state(other, prefixed)
        assert torch.equal(source(x), other(x))
        # checkpoints of old PyTorch versions lack num_batches_tracked
        old = {k: v for k, v in plain.items() if not k.endswith("num_batches_tracked")}
        load_backbone_state(other, old)
        assert torch.equal(source(x), other(x))


def test_load_backbone_state_errors_name_the_keys() -> None:
    model = build_model("resnet18-pretrained", 10, 3, 32, CIFAR_PRETRAINED)
    state = dict(model.net.state_dict())
    del state["layer3.1.conv2.weight"]
    state["head.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError, match="missing keys: layer3.1.conv2.weight") as err:
        load_backbone_state(model, state)
    assert "unexpected keys: head.weight" in str(err.value)
    assert "\n" not in str(err.value)
    binary = build_model("resnet18-pretrained", 2, 3, 32, CIFAR_PRETRAINED)
    with pytest.raises(ConfigError, match=r"fc.weight \(10, 512\) vs \(2, 512\)"):
        load_backbone_state(binary, model.net.state_dict())
    many = {f"x{i}": torch.zeros(1) for i in range(10)} | dict(model.net.state_dict())
    with pytest.raises(ConfigError, match=r"\(10 in all\)"):
        load_backbone_state(model, many)


def test_classifier_normalises_per_channel() -> None:
    net = resnet18(10, "cifar", generator=generator(0, "init")).eval()
    model = ImageClassifier(net, CIFAR_AUTHORS).eval()
    x = rand(2, 3, 16, 16)
    manual = torch.stack(
        [(x[:, c] - CIFAR_AUTHORS.mean[c]) / CIFAR_AUTHORS.std[c] for c in range(3)], dim=1
    )
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(manual))
        torch.testing.assert_close(model.features(x), net.features(manual))
    assert list(model.state_dict()) == ["net." + k for k in net.state_dict()]
    with pytest.raises(ValueError, match="expects"):
        model(rand(2, 1, 16, 16))


def test_single_value_normalisation_broadcasts_to_channels() -> None:
    net = MLP(3 * 4 * 4, 2, generator=generator(0, "init"))
    x = rand(5, 3, 4, 4)
    torch.testing.assert_close(ImageClassifier(net, MNIST_HALF)(x), net(2 * x - 1))
    torch.testing.assert_close(ImageClassifier(net, NONE)(x), net(x))


@pytest.mark.parametrize("norm", [CIFAR_AUTHORS, CIFAR_PRETRAINED])
def test_l2_and_linf_factors_bound_the_radius_conversion(norm: Normalization) -> None:
    lo, hi = norm.l2_factor
    assert norm.linf_factor == (lo, hi) and lo < hi
    std = torch.tensor(norm.std).reshape(1, 3, 1, 1)
    delta = torch.randn(200, 3, 8, 8, generator=generator(0, "test/delta"))
    for p in (2, math.inf):
        ratio = (delta / std).flatten(1).norm(p=p, dim=1) / delta.flatten(1).norm(p=p, dim=1)
        assert torch.all(ratio >= lo * (1 - 1e-6)) and torch.all(ratio <= hi * (1 + 1e-6))
    # the bounds are attained: all mass in the channel of largest / smallest std
    for channel, factor in (
        (norm.std.index(max(norm.std)), lo),
        (norm.std.index(min(norm.std)), hi),
    ):
        d = torch.zeros(1, 3, 8, 8)
        d[:, channel] = 0.3
        assert math.isclose((d / std).norm().item() / d.norm().item(), factor, rel_tol=1e-5)
    inner, outer = norm.to_pixel_radius(1.0)  # type: ignore[misc]
    assert math.isclose(inner, min(norm.std)) and math.isclose(outer, max(norm.std))
    assert norm.to_normalised_radius(1.0) == (lo, hi)


def test_uniform_normalisation_converts_radii_by_one_factor() -> None:
    model = ImageClassifier(MLP(4, 2), MNIST_HALF)
    assert model.l2_factor == (2.0, 2.0) and model.linf_factor == (2.0, 2.0)
    # SPEC §3.1: normalised radius 2.0 is pixel radius 1.0
    assert model.to_pixel_radius(2.0) == 1.0
    assert model.to_normalised_radius(0.1) == 0.2
    assert NONE.to_pixel_radius(0.5) == 0.5


def test_normalization_validation_and_lookup() -> None:
    assert normalization_by_name("cifar-pretrained") is CIFAR_PRETRAINED
    with pytest.raises(ConfigError, match="mnist-half"):
        normalization_by_name("imagenet")
    with pytest.raises(ConfigError, match="std must be > 0"):
        Normalization((0.5,), (0.0,), "bad")
    with pytest.raises(ConfigError, match="same number"):
        Normalization((0.5, 0.5), (0.5,), "bad")


@pytest.mark.parametrize("name", ["resnet18-mnist", "cnn", "mlp"])
def test_gradients_reach_the_input(name: str) -> None:
    model = build_model(name, 10, 1, 28, MNIST_HALF, seed=0).eval()
    x = rand(2, 1, 28, 28).requires_grad_(True)
    loss = F.cross_entropy(model(x), torch.tensor([1, 2]))
    (grad,) = torch.autograd.grad(loss, x)
    assert grad.shape == x.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("size", "channels", "spatial"),
    [(28, (16, 32, 64), 4), (32, (16, 32, 64), 4), (8, (16, 32), 2)],
)
def test_small_cnn_shapes(size: int, channels: tuple[int, ...], spatial: int) -> None:
    net = SmallCNN(3, 2, size, generator=generator(0, "init")).eval()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert tuple(c.out_channels for c in convs) == channels
    x = rand(4, 3, size, size)
    assert net.blocks(x).shape == (4, channels[-1], spatial, spatial)
    assert net.features(x).shape == (4, net.feature_dim) == (4, channels[-1])
    assert net(x).shape == (4, 2)
    torch.testing.assert_close(net(x), net.fc(net.features(x)))


def test_mlp_shapes_and_linear_case() -> None:
    net = MLP(28 * 28, 10, hidden=(64, 32))
    x = rand(5, 1, 28, 28)
    assert net.features(x).shape == (5, 32) and net(x).shape == (5, 10)
    assert torch.all(net.features(x) >= 0)
    linear = MLP(12, 3, hidden=())
    x = rand(5, 3, 2, 2)
    assert linear.feature_dim == 12
    torch.testing.assert_close(linear(x), x.flatten(1) @ linear.fc.weight.T + linear.fc.bias)


def test_builtin_registry_and_errors() -> None:
    assert set(BUILTIN_MODELS) == {
        "resnet18-mnist",
        "resnet18-cifar",
        "resnet18-pretrained",
        "resnet18-imagenet",
        "cnn",
        "mlp",
    }
    with pytest.raises(ConfigError, match="resnet18-mnist, resnet18-cifar"):
        build_model("resnet50", 10, 1, 28, MNIST_HALF)
    with pytest.raises(ConfigError, match="1-channel"):
        build_model("resnet18-mnist", 10, 3, 28, MNIST_HALF)
    with pytest.raises(ConfigError, match="28x28"):
        build_model("resnet18-mnist", 10, 1, 32, MNIST_HALF)
    with pytest.raises(ConfigError, match="3 channels, the data 1"):
        build_model("cnn", 10, 1, 28, CIFAR_AUTHORS)
    model = build_model("resnet18-cifar", 2, 1, 28, MNIST_HALF)
    assert isinstance(model.net, nn.Module) and model.net.conv1.in_channels == 1
    assert build_model("mlp", 10, 3, 8, CIFAR_AUTHORS).net.in_features == 3 * 8 * 8


def test_default_normalization_follows_spec() -> None:
    for dataset in ("mnist", "fashion-mnist", "mnist-5k"):
        assert default_normalization("resnet18-mnist", dataset) is MNIST_HALF
    assert default_normalization("resnet18-pretrained", "cifar10") is CIFAR_PRETRAINED
    assert default_normalization("resnet18-pretrained", "cifar10-synthetic") is CIFAR_PRETRAINED
    assert default_normalization("resnet18-cifar", "cifar10") is CIFAR_AUTHORS
    assert default_normalization("cnn", "cifar10-synthetic") is CIFAR_AUTHORS
    with pytest.raises(ConfigError, match="dataset"):
        default_normalization("cnn", "svhn")
    with pytest.raises(ConfigError, match="model"):
        default_normalization("vgg", "mnist")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    cpu = build_model("resnet18-mnist", 10, 1, 28, MNIST_HALF, seed=0).eval()
    gpu = build_model("resnet18-mnist", 10, 1, 28, MNIST_HALF, seed=0).eval().to("cuda")
    x = rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), rtol=1e-3, atol=1e-3)
