import torch
import torch.nn.functional as F

from featavg.models import NetConfig, TwoLayerEnsemble, binary_ensemble, multiclass_ensemble
from featavg.models.two_layer import binary_readout, multiclass_readout


def test_readouts():
    assert torch.equal(binary_readout(2, "unit"), torch.tensor([[1.0, 1.0, -1.0, -1.0]]))
    assert torch.equal(binary_readout(2, "mean"), torch.tensor([[0.5, 0.5, -0.5, -0.5]]))
    r = multiclass_readout(3, 2, "mean")
    assert r.shape == (3, 6) and torch.equal(r[1], torch.tensor([0, 0, 0.5, 0.5, 0, 0]))


def test_forward_matches_plain_formula_shared_and_stacked():
    torch.manual_seed(0)
    ens = binary_ensemble([1, 2, 3], d=7, cfg=NetConfig(m=2, init_std=1.0))
    ens.bias.normal_()
    x = torch.randn(5, 7)
    out = ens(x)
    for s in range(3):
        ref = torch.relu(x @ ens.weight[s].T + ens.bias[s]) @ ens.readout.T
        assert torch.allclose(out[s], ref, atol=1e-5)
    stacked = ens(x.expand(3, 5, 7))
    assert torch.allclose(out, stacked, atol=1e-5)


def test_member_module_returns_logits_consistent_with_ensemble():
    ens = multiclass_ensemble([0, 1], d=6, k=3, cfg=NetConfig(h=2, init_std=1.0))
    x = torch.randn(4, 6)
    net = ens.member(1)
    assert isinstance(net, torch.nn.Module)
    assert torch.allclose(net(x), ens(x)[1], atol=1e-6)


def test_binary_member_two_logits_give_logistic_loss():
    ens = binary_ensemble([0], d=5, cfg=NetConfig(m=3, init_std=1.0))
    net = ens.member(0)
    x, y = torch.randn(20, 5), torch.randint(0, 2, (20,)) * 2 - 1
    f = net.margin(x)
    ce = F.cross_entropy(net(x), (y + 1) // 2, reduction="none")
    assert torch.allclose(ce, F.softplus(-y * f), atol=1e-6)
    assert torch.equal(net(x).argmax(1) == 1, f > 0)


def test_members_initialised_from_their_own_seed():
    big = binary_ensemble([5, 6, 7], d=9)
    single = binary_ensemble([6], d=9)
    assert torch.equal(big.weight[1], single.weight[0])
    assert torch.all(big.bias == 0)


def test_init_schemes():
    he = binary_ensemble([0], d=2000, cfg=NetConfig(init="he", m=50))
    assert abs(he.weight.std().item() - (2 / 2000) ** 0.5) < 0.002
    small = binary_ensemble([0, 1], d=2000, init_std=[1e-5, 1e-2])
    assert abs(small.weight[0].std().item() / 1e-5 - 1) < 0.05
    assert abs(small.weight[1].std().item() / 1e-2 - 1) < 0.05


def test_unit_metadata():
    ens = multiclass_ensemble([0], d=4, k=3, cfg=NetConfig(h=2))
    assert torch.equal(ens.unit_class, torch.tensor([0, 0, 1, 1, 2, 2]))
    b = binary_ensemble([0], d=4, cfg=NetConfig(m=2))
    assert torch.equal(b.unit_sign, torch.tensor([1.0, 1.0, -1.0, -1.0]))
    assert isinstance(b, TwoLayerEnsemble) and b.size == 1
