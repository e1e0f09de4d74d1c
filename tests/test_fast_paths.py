"""The speed paths: kept 1x1-convolution matrices never go stale; channels-last nets compute
the same values as the plain layout."""

import copy

import torch
from conftest import perturb_

from pyro_glow.transforms import AffineCoupling, InvertibleConv1x1


def _no_grad_output(layer, x):
    with torch.no_grad():
        return layer.inverse_and_log_det(x)[0], layer.forward_and_log_det(x)[0]


def _fresh_output(layer, x):
    """The same maps from matrices computed now (with autograd on nothing is kept)."""
    with torch.enable_grad():
        return [out.detach() for out in (layer.inverse_and_log_det(x)[0], layer(x))]


def test_kept_matrices_follow_every_parameter_change():
    torch.manual_seed(0)
    layer = InvertibleConv1x1(4).with_cache(0)
    x = torch.randn(3, 4, 5, 5)
    before = _no_grad_output(layer, x)
    for a, b in zip(before, _fresh_output(layer, x), strict=True):
        torch.testing.assert_close(a, b)
    changes = [
        lambda: perturb_(layer),  # in-place edit without autograd
        lambda: _optimizer_step(layer, x),
        lambda: layer.load_state_dict(InvertibleConv1x1(4).state_dict()),
    ]
    for change in changes:
        previous = _no_grad_output(layer, x)
        change()
        now = _no_grad_output(layer, x)
        assert not torch.allclose(now[0], previous[0])
        for a, b in zip(now, _fresh_output(layer, x), strict=True):
            torch.testing.assert_close(a, b)
    double = layer.double()
    out = _no_grad_output(double, x.double())
    assert out[0].dtype == torch.float64


def _optimizer_step(layer, x):
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.01)
    layer.inverse_and_log_det(x)[0].square().mean().backward()
    optimizer.step()


def test_channels_last_coupling_equals_the_plain_layout():
    torch.manual_seed(0)
    layer = AffineCoupling(6, 16)
    perturb_(layer)
    x = torch.randn(2, 6, 8, 8)
    y, log_det = layer.inverse_and_log_det(x)
    assert y.is_contiguous()
    plain_net = copy.deepcopy(layer.net).to(memory_format=torch.contiguous_format)
    assert plain_net[0].weight.is_contiguous()
    out = plain_net(x[:, :3].contiguous())
    shift, raw = out.chunk(2, dim=1)
    log_scale = layer.scale_bound * torch.tanh(raw / layer.scale_bound)
    torch.testing.assert_close(y[:, 3:], (x[:, 3:] - shift) * torch.exp(-log_scale))
    torch.testing.assert_close(log_det, log_scale.sum(dim=(1, 2, 3)))
