"""pyro-glow's layers mixed with Pyro's own flows (Planar, Radial, AffineAutoregressive,
Polynomial, Spline, SplineCoupling) in one TransformedDistribution."""

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import pytest
import torch
from conftest import perturb_
from pyro.infer import SVI, Trace_ELBO
from torch import nn
from torch.distributions import ComposeTransform

from pyro_glow import (
    ActNorm,
    AffineCoupling,
    Flow,
    InvertibleConv1x1,
    PiecewiseLinear,
    Rescale,
    StandardNormal,
    check_transform,
)

D = 2


@pytest.fixture(autouse=True)
def _float64_by_default():
    """Float64 throughout: Pyro's AffineAutoregressive inverse builds float32 zeros whatever
    the input's dtype (pyro 1.9.2, ``affine_autoregressive.py``, ``_inverse``)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _ours():
    return [
        AffineCoupling(D, 8, event_dim=1),
        InvertibleConv1x1(D, event_dim=1),
        PiecewiseLinear(8, -4.0, 4.0, features=D, learn="both"),
        Rescale((D,)),
    ]


def _modules(transforms):
    """Every module holding parameters (an inverse wrapper's module is its ``.inv``)."""
    owners = [t if isinstance(t, nn.Module) else t.inv for t in transforms]
    return nn.ModuleList([t for t in owners if isinstance(t, nn.Module)])


def _ready(transforms, seed=0):
    torch.manual_seed(seed)
    modules = _modules(transforms).double()
    perturb_(modules, 0.1)
    return modules


def _base():
    return dist.Normal(torch.zeros(D, dtype=torch.float64), 1.0).to_event(1)


def _brute_log_det(function, points):
    """``log|det J|`` of ``function`` at each row of ``points``, from the full Jacobian."""
    return torch.stack(
        [
            torch.linalg.slogdet(torch.autograd.functional.jacobian(function, p)).logabsdet
            for p in points
        ]
    )


def _every_family_generative():
    ours = _ours()
    return [
        ours[0],
        T.Planar(D),
        ours[1],
        T.Radial(D),
        T.affine_autoregressive(D, [8]),
        T.polynomial(D, [8]),
        ours[2],
        T.Spline(D, count_bins=4),
        ours[3],
    ]


def test_all_families_in_one_distribution_sample_score_and_train():
    transforms = _every_family_generative()
    modules = _ready(transforms)
    base = _base()
    compose = ComposeTransform(transforms)
    z = base.sample((6,))
    # Planar, Radial and Polynomial have no inverse: their samples are scored from the
    # caches that sampling fills, exactly as in variational inference.
    brute = _brute_log_det(compose, z)
    x = compose(z)
    log_prob = dist.TransformedDistribution(base, transforms).log_prob(x)
    assert log_prob.shape == (6,)
    assert torch.allclose(log_prob, base.log_prob(z) - brute, atol=1e-8)

    flow = dist.TransformedDistribution(base, transforms)
    samples = flow.rsample((16,))
    assert samples.shape == (16, D) and samples.requires_grad
    loss = -flow.log_prob(samples).mean() + samples.square().mean()
    loss.backward()
    for name, parameter in modules.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    before = [p.detach().clone() for p in modules.parameters()]
    torch.optim.Adam(modules.parameters(), lr=1e-3).step()  # steps bounded by lr
    assert any(not torch.equal(a, p) for a, p in zip(before, modules.parameters(), strict=True))
    # After the step, scoring a fresh sample still matches the brute-force Jacobian.
    z = base.sample((3,))
    brute = _brute_log_det(compose, z)
    x = compose(z)
    log_prob = dist.TransformedDistribution(base, transforms).log_prob(x)
    assert torch.allclose(log_prob.detach(), base.log_prob(z) - brute.detach(), atol=1e-8)


def _invertible_mix():
    ours = _ours()
    return [
        ours[0],
        T.affine_autoregressive(D, [8]),  # IAF direction: generative in one pass
        ours[1],
        T.spline_coupling(D, hidden_dims=[8], count_bins=4),
        T.affine_autoregressive(D, [8]).inv,  # MAF direction: density in one pass
        ours[2],
        T.Spline(D, count_bins=4),
        ours[3],
    ]


def test_invertible_mix_passes_check_transform():
    transforms = _invertible_mix()
    _ready(transforms)
    x = 0.8 * torch.randn(4, D, dtype=torch.float64)
    errors = check_transform(ComposeTransform(transforms), x, atol=1e-8)
    assert errors["log_det"] < 1e-8


def test_invertible_mix_scores_external_data():
    transforms = _invertible_mix()
    _ready(transforms)
    base = _base()
    compose = ComposeTransform(transforms)
    x = 0.8 * torch.randn(5, D, dtype=torch.float64)
    log_prob = dist.TransformedDistribution(base, transforms).log_prob(x)
    with torch.no_grad():
        z = compose.inv(x)
    expected = base.log_prob(z) + _brute_log_det(compose.inv, x)
    assert torch.allclose(log_prob, expected, atol=1e-8)


def test_normalizing_direction_families_score_external_data_and_train():
    """Planar, Radial and SOS used as normalizing maps (their ``.inv`` in the generative
    list): density of any data in one pass, the way to fit them to data."""
    ours = _ours()
    transforms = [
        ours[0],
        T.Planar(D).inv,
        ours[1],
        T.Radial(D).inv,
        T.polynomial(D, [8]).inv,
        ours[3],
    ]
    modules = _ready(transforms)
    base = _base()
    x = 0.8 * torch.randn(5, D, dtype=torch.float64)
    log_prob = dist.TransformedDistribution(base, transforms).log_prob(x)
    normalizing = ComposeTransform(transforms).inv
    with torch.no_grad():
        z = normalizing(x)
    assert torch.allclose(log_prob, base.log_prob(z) + _brute_log_det(normalizing, x), atol=1e-8)
    (-log_prob.mean()).backward()
    for name, parameter in modules.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_flow_with_pyro_layers_trains_through_svi():
    transforms = [
        ActNorm(D, event_dim=1),
        T.spline_coupling(D, hidden_dims=[8], count_bins=4),
        InvertibleConv1x1(D, event_dim=1),
        T.affine_autoregressive(D, [8]),
        Rescale((D,)),
    ]
    flow = Flow(StandardNormal((D,)), transforms)
    assert len(list(flow.parameters())) == len(list(_modules(transforms).parameters()))
    data = torch.randn(64, D) * torch.tensor([2.0, 0.5]) + 1.0

    def model(x):
        pyro.module("flow", flow)
        with pyro.plate("data", len(x)):
            pyro.sample("x", flow(), obs=x)

    svi = SVI(model, lambda x: None, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    losses = [svi.step(data) for _ in range(30)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 5.0


@pytest.mark.parametrize("family", ["planar", "radial", "polynomial"])
def test_non_invertible_pyro_layers_refuse_external_data(family):
    """The limitation the normalizing-direction use works around, locked in: scoring data
    that was not sampled needs an inverse these layers do not have."""
    layer = {"planar": T.Planar(D), "radial": T.Radial(D), "polynomial": T.polynomial(D, [8])}
    flow = dist.TransformedDistribution(
        dist.Normal(torch.zeros(D), 1.0).to_event(1), [layer[family]]
    )
    with pytest.raises((KeyError, NotImplementedError)):
        flow.log_prob(torch.randn(3, D))
