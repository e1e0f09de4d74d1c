"""Layer-specific behaviour: Squeeze's channel order, ActNorm's initialisation, the LU
parametrisation, the packed coupling MLP, whole models against the brute-force Jacobian, and
the caches."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import perturb_
from pyro.infer import SVI, Trace_ELBO
from torch import nn

from pyro_glow import ActNorm, InvertibleConv1x1, Squeeze, check_transform, glow
from pyro_glow.nets import CouplingMLP
from pyro_glow.transforms import AffineCoupling, Split


def test_squeeze_channel_order_known_values():
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6)
    y = Squeeze()(x)
    assert y.shape == (8, 2, 3)
    assert y[:4, 0, 0].tolist() == [0.0, 1.0, 6.0, 7.0]
    for c in range(2):
        for i in range(2):
            for j in range(2):
                assert torch.equal(y[4 * c + 2 * i + j], x[c, i::2, j::2])
    assert Squeeze().forward_shape((5, 2, 4, 6)) == (5, 8, 2, 3)
    assert Squeeze().inverse_shape((8, 2, 3)) == (2, 4, 6)


@pytest.mark.parametrize(
    "shape,kwargs",
    [
        ((3, 8, 8), dict(levels=2, steps=2, hidden=8)),
        ((2,), dict(steps=4, hidden=16)),
        ((2,), dict(steps=4, hidden=16, additive=True)),
    ],
    ids=["image-L2-K2", "vector-K4", "vector-K4-additive"],
)
def test_whole_glow_against_brute_force_jacobian(shape, kwargs):
    flow = glow(shape, **kwargs).double()
    x = 2.0 + 3.0 * torch.randn((4,) + shape, dtype=torch.float64)
    flow.log_prob(x)  # ActNorm initialises on the data
    perturb_(flow, 0.03)
    errors = check_transform(flow.transform, x, atol=1e-9)
    assert errors["log_det"] < 1e-9
    flow.clear_cache()
    z = flow.transform.inv(x)
    log_det = flow.transform.log_abs_det_jacobian(z, flow.transform(z))
    expected = dist.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(-1) - log_det
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-9)
    assert log_det.abs().min() > 1e-3


def test_glow_structure_matches_the_course_model():
    flow = glow((3, 32, 32))
    couplings = [m for m in flow.modules() if isinstance(m, AffineCoupling)]
    splits = [m for m in flow.modules() if isinstance(m, Split)]
    assert len(couplings) == 48 and len(splits) == 2
    assert sorted(m.features for m in couplings) == [12] * 16 + [24] * 16 + [48] * 16
    assert {m.net[0].out_channels for m in couplings} == {512}
    assert flow.event_shape == (3, 32, 32)


@pytest.mark.parametrize("event_dim", [1, 3])
@pytest.mark.parametrize("direction", ["normalizing", "generative"])
def test_actnorm_initialises_to_zero_mean_unit_variance(event_dim, direction):
    shape = (256, 3) if event_dim == 1 else (16, 3, 8, 8)
    data = 5.0 + 3.0 * torch.randn(shape)
    layer = ActNorm(3, event_dim)
    out = layer.inv(data) if direction == "normalizing" else layer(data)
    per_channel = out.movedim(-3 if event_dim == 3 else -1, 0).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-4)
    assert torch.allclose(per_channel.var(1, unbiased=False), torch.ones(3), atol=1e-4)
    assert bool(layer.initialized)


def test_actnorm_constant_channel_and_single_sample():
    data = torch.randn(32, 3, 4, 4)
    data[:, 1] = 7.0
    layer = ActNorm(3)
    out = layer.inv(data)
    assert torch.isfinite(out).all() and torch.isfinite(layer.log_scale).all()
    assert torch.allclose(out[:, 1], torch.zeros(()), atol=1e-6)
    single = ActNorm(3)
    assert torch.equal(single.inv(data[:1]), data[:1]) and bool(single.initialized)
    assert torch.equal(single.inv(data), data), "a later batch must not re-initialise"


def test_actnorm_reloaded_model_does_not_reinitialise():
    layer = ActNorm(3)
    layer.inv(5.0 + 3.0 * torch.randn(64, 3, 4, 4))
    reloaded = ActNorm(3)
    reloaded.load_state_dict(layer.state_dict())
    reloaded.inv(-2.0 + 0.1 * torch.randn(64, 3, 4, 4))
    assert torch.equal(reloaded.log_scale, layer.log_scale)
    assert torch.equal(reloaded.bias, layer.bias)


def test_state_dicts_of_the_earlier_unpacked_layout_load_to_the_same_maps():
    """ActNorm once kept ``log_scale`` and ``bias``, the LU layer ``lower``, ``upper``,
    ``log_diag`` (and a ``lower_mask`` buffer) as separate tensors; checkpoints written then
    must load into the packed parameters and give the same outputs."""
    torch.manual_seed(0)
    actnorm, conv = ActNorm(3), InvertibleConv1x1(3)
    x = 5.0 + 3.0 * torch.randn(8, 3, 4, 4)
    actnorm.inv(x)
    with torch.no_grad():
        conv.lu.add_(0.3 * torch.randn(3, 3))
    old_actnorm = {
        "log_scale": actnorm.log_scale.clone(),
        "bias": actnorm.bias.clone(),
        "initialized": actnorm.initialized.clone(),
    }
    old_conv = {
        "permutation": conv.permutation.clone(),
        "diag_sign": conv.diag_sign.clone(),
        "lower_mask": torch.ones(3, 3).tril(-1),
        "identity": conv.identity.clone(),
        # the old layout left arbitrary values in the masked triangles: they must not leak
        "lower": conv.lu.detach().tril(-1) + 9.0 * torch.ones(3, 3).triu(),
        "upper": conv.lu.detach().triu(1) + 9.0 * torch.ones(3, 3).tril(),
        "log_diag": conv.log_diag.detach().clone(),
    }
    reloaded_actnorm, reloaded_conv = ActNorm(3), InvertibleConv1x1(3)
    reloaded_actnorm.load_state_dict(old_actnorm)
    reloaded_conv.load_state_dict(old_conv)
    assert torch.equal(reloaded_actnorm.inv(x), actnorm.inv(x))
    assert torch.equal(reloaded_conv.inv(x), conv.inv(x))
    assert set(reloaded_conv.state_dict()) == {"permutation", "diag_sign", "identity", "lu"}


def test_the_coupling_mlp_is_the_sequential_network_in_one_tensor():
    """``CouplingMLP`` computes what ``nn.Sequential(Linear, ReLU, Linear, ReLU, Linear)``
    computes with the same weights, starts as nn.Linear does (last layer zero), trains its one
    tensor, and loads state dicts of the earlier ``nn.Sequential`` layout."""
    torch.manual_seed(0)
    sequential = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
    sequential.append(nn.Linear(16, 4))
    old_state = sequential.state_dict()
    net = CouplingMLP(3, 16, 4)
    assert [name for name, _ in net.named_parameters()] == ["weights"]
    (w1, b1), (w2, b2), (w3, b3) = net.layers()
    for tensor, fan_in in ((w1, 3), (b1, 3), (w2, 16), (b2, 16)):
        assert 0 < tensor.abs().max() <= fan_in**-0.5
    assert not w3.any() and not b3.any()
    net.load_state_dict(old_state)
    assert "0.weight" in old_state  # load_state_dict converted a copy
    x = torch.randn(5, 7, 3)
    assert torch.equal(net(x), sequential(x))
    net(x).square().sum().backward()
    sequential(x).square().sum().backward()
    expected = torch.cat([p.grad.reshape(-1) for p in sequential.parameters()])
    assert torch.allclose(net.weights.grad, expected, rtol=1e-6, atol=1e-7)
    reloaded = CouplingMLP(3, 16, 4)
    reloaded.load_state_dict(net.state_dict())
    assert torch.equal(reloaded(x), net(x))
    with pytest.raises(RuntimeError, match="weights"):
        CouplingMLP(3, 8, 4).load_state_dict(net.state_dict())
    with pytest.raises(ValueError, match="hidden must be a positive int"):
        CouplingMLP(3, 0, 4)


def test_lu_determinant_never_vanishes():
    layer = InvertibleConv1x1(6, event_dim=1).double()
    with torch.no_grad():
        layer.lu.normal_(0, 2.0)
        layer.log_diag.copy_(torch.tensor([-3.0, 3.0, -2.0, 0.0, 1.0, -1.5]))
    weight = layer.weight()
    sign, logabsdet = torch.linalg.slogdet(weight)
    assert sign != 0
    assert torch.allclose(logabsdet, layer.log_diag.sum(), atol=1e-6)
    assert torch.allclose(
        layer.inverse_weight() @ weight, torch.eye(6, dtype=torch.float64), atol=1e-6
    )


def test_no_generic_matrix_inverse_per_call(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a generic matrix inverse was called")

    monkeypatch.setattr(torch, "inverse", forbidden)
    monkeypatch.setattr(torch.linalg, "inv", forbidden)
    monkeypatch.setattr(torch.Tensor, "inverse", forbidden)
    flow = glow((3, 8, 8), levels=2, steps=2, hidden=8)
    x = torch.randn(4, 3, 8, 8)
    flow.log_prob(x).sum().backward()
    assert flow.sample(2).shape == (2, 3, 8, 8)


@pytest.mark.parametrize("optimizer", ["adam", "adam-fused", "sgd"])
def test_no_stale_cache_after_optimizer_step(optimizer):
    flow = glow((2,), steps=2, hidden=8)
    x = torch.randn(64, 2)
    distribution = flow()
    params = list(flow.parameters())
    opt = {
        "adam": lambda: torch.optim.Adam(params, lr=0.05),
        "adam-fused": lambda: torch.optim.Adam(params, lr=0.05, fused=True),
        "sgd": lambda: torch.optim.SGD(params, lr=0.05),
    }[optimizer]()
    before = distribution.log_prob(x)
    (-before.mean()).backward()
    opt.step()
    after = distribution.log_prob(x)
    fresh = flow.log_prob(x.clone())
    assert not torch.allclose(before, after)
    assert torch.allclose(after, fresh, atol=1e-6)


def test_no_stale_cache_after_manual_parameter_edit():
    layer = AffineCoupling(4, 8, event_dim=1)
    x = torch.randn(8, 4)
    y = layer(x)
    with torch.no_grad():
        layer.net.layers()[-1][1].add_(1.0)  # the last bias, a view of the packed weights
    assert not torch.allclose(layer(x), y)


def test_each_network_runs_once_per_evaluation():
    flow = glow((3, 8, 8), levels=2, steps=2, hidden=8)
    nets = [m.net for m in flow.modules() if isinstance(m, AffineCoupling)]
    nets += [m.prior_net for m in flow.modules() if isinstance(m, Split)]
    calls = {id(net): 0 for net in nets}

    def count(module, args, output):
        calls[id(module)] += 1

    for net in nets:
        net.register_forward_hook(count)
    x = torch.randn(4, 3, 8, 8)

    def model(data):
        pyro.module("flow", flow)
        with pyro.plate("data", len(data)):
            pyro.sample("x", flow(), obs=data)

    svi = SVI(model, lambda data: None, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    svi.step(x)
    assert set(calls.values()) == {1}, calls
    flow.log_prob(x)
    assert set(calls.values()) == {2}, calls
