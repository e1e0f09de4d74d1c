"""The speed paths: kept 1x1-convolution matrices never go stale; channels-last nets compute
the same values as the plain layout; fused ActNorm + 1x1 convolution pairs compute what the
layers compute one by one; ``Flow.pyro_module`` registers what ``pyro.module``
registers, after any change to the flow."""

import copy
import warnings

import pyro
import pytest
import torch
from conftest import perturb_
from pyro import poutine
from torch import nn

from pyro_glow import glow
from pyro_glow.transforms import (
    AffineCoupling,
    InvertibleConv1x1,
    forward_and_log_det,
    inverse_and_log_det,
)
from pyro_glow.transforms.compose import LinearPairs, _event_dims_along


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


def test_clear_cache_refreshes_kept_matrices_after_an_edit_through_data():
    """``.data`` edits bump no version counter, so the kept matrices cannot see them;
    ``clear_cache()`` (which ``flow()`` calls) drops them."""
    layer = InvertibleConv1x1(4).with_cache(0)
    x = torch.randn(3, 4, 5, 5)
    before = _no_grad_output(layer, x)
    layer.lu.data.add_(0.1)
    layer.clear_cache()
    now = _no_grad_output(layer, x)
    assert not torch.allclose(now[0], before[0])
    for a, b in zip(now, _fresh_output(layer, x), strict=True):
        torch.testing.assert_close(a, b)
    flow = glow((4,), steps=2, hidden=8)
    conv = next(m for m in flow.modules() if isinstance(m, InvertibleConv1x1))
    z = torch.randn(5, 4)
    with torch.no_grad():
        first = flow().transforms[0](z)
        conv.lu.data.add_(0.1)
        second = flow().transforms[0](z)
    assert not torch.allclose(first, second)


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


def _param_sites(register):
    trace = poutine.trace(register).get_trace()
    return {name: site["value"] for name, site in trace.nodes.items() if site["type"] == "param"}


def _assert_registers_as_pyro_module(flow):
    pyro.clear_param_store()
    ours = _param_sites(lambda: flow.pyro_module("flow"))
    pyro.clear_param_store()
    theirs = _param_sites(lambda: pyro.module("flow", flow))
    assert list(ours) == list(theirs)
    for name, value in ours.items():
        assert value.unconstrained() is theirs[name].unconstrained()
    return ours


def test_pyro_module_registers_what_pyro_module_registers_after_every_change():
    torch.manual_seed(0)
    flow = glow((2,), steps=2, hidden=4)
    assert len(_assert_registers_as_pyro_module(flow)) == len(list(flow.parameters()))
    layer = flow.transform.parts[0]
    layer.net.weights = nn.Parameter(torch.zeros_like(layer.net.weights))  # replaced
    flow.transform.parts[3].net.weights.requires_grad_(False)  # frozen: not registered, warned
    with pytest.warns(UserWarning, match="requires_grad=False"):
        sites = _assert_registers_as_pyro_module(flow)
    assert any(value.unconstrained() is layer.net.weights for value in sites.values())
    layer.net.extra = nn.Linear(4, 4)  # a new submodule
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert "flow$$$transform.0.net.extra.weight" in _assert_registers_as_pyro_module(flow)
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        flow.double()  # new Parameter objects, no registration hook
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(False)
    flow.train(False)
    sites = _assert_registers_as_pyro_module(flow)
    assert all(value.dtype == torch.float64 for value in sites.values())
    pyro.clear_param_store()


def _pairs_of(transform, generative=False):
    return LinearPairs(list(transform.parts), _event_dims_along(transform), generative)


@pytest.mark.parametrize("shape", [(3, 8, 8), (4,)], ids=["images", "vectors"])
def test_fused_actnorm_conv1x1_pairs_equal_the_layers_one_by_one(shape):
    """The one-pass walkers fuse each ActNorm with the 1x1 convolution before it
    (``LinearPairs``); Pyro's path (``transform.inv``, ``transform(z)`` and
    ``log_abs_det_jacobian``) runs every layer on its own. Same maps, log-determinants and
    gradients to every parameter, both directions (float64; one level, so that no ``Split``
    walks its inner levels on the fused path inside the reference)."""
    flow = glow(shape, levels=1, steps=3, hidden=6).double()
    transform = flow.transform
    x = torch.rand((5,) + shape, dtype=torch.float64)
    assert not _pairs_of(transform).starts  # ActNorm not yet initialised: nothing fused
    flow.log_prob(x)
    perturb_(flow, scale=0.2)
    assert len(_pairs_of(transform).starts) == 3 and len(_pairs_of(transform, True).starts) == 3
    parameters = list(flow.parameters())

    def outputs_and_gradients(fused, inverse):
        flow.clear_cache()
        source = x if inverse else transform.inv(x).detach()
        if fused:
            walk = inverse_and_log_det if inverse else forward_and_log_det
            out, log_det = walk(transform, source)
        elif inverse:
            out = transform.inv(source)
            log_det = transform.log_abs_det_jacobian(out, source)
        else:
            out = transform(source)
            log_det = transform.log_abs_det_jacobian(source, out)
        loss = (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum() + log_det.sum()
        return [out, log_det, *torch.autograd.grad(loss, parameters)]

    for inverse in (True, False):
        fused, layers = outputs_and_gradients(True, inverse), outputs_and_gradients(False, inverse)
        assert fused[1].shape == (5,)
        for a, b in zip(fused, layers, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    z, _ = inverse_and_log_det(transform, x)
    torch.testing.assert_close(forward_and_log_det(transform, z)[0], x, rtol=0, atol=1e-12)
