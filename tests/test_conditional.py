"""ConditionalAffineCoupling: the layer contract for every context, broadcasting of the
context over sample dimensions, gradients, state_dict, Pyro's conditional distributions."""

import pyro.distributions as dist
import pytest
import torch
from conftest import perturb_
from pyro.distributions import ConditionalTransformedDistribution

from pyro_glow import check_transform
from pyro_glow.transforms import InvertibleConv1x1
from pyro_glow.transforms.conditional import ConditionalAffineCoupling

FEATURES, CONTEXT = 5, 3


def ready(parity=0, seed=0):
    torch.manual_seed(seed)
    layer = ConditionalAffineCoupling(FEATURES, CONTEXT, hidden=8, parity=parity).double()
    perturb_(layer, scale=0.3)
    return layer


@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize("batch_shape", [(), (4,), (2, 3)], ids=str)
def test_inverse_and_log_det_against_the_jacobian(parity, batch_shape):
    layer = ready(parity)
    context = torch.randn(CONTEXT, dtype=torch.float64)
    x = torch.randn(batch_shape + (FEATURES,), dtype=torch.float64)
    conditioned = layer.condition(context)
    errors = check_transform(conditioned, x, atol=1e-10)
    assert errors["log_det"] <= 1e-10
    # The log-det is not trivially zero: the perturbed network scales x_b.
    assert conditioned.log_abs_det_jacobian(x, conditioned(x)).abs().min() > 1e-4


@pytest.mark.parametrize("parity", [0, 1])
def test_only_the_transformed_half_changes_and_the_context_matters(parity):
    layer = ready(parity)
    x = torch.randn(6, FEATURES, dtype=torch.float64)
    h1, h2 = torch.randn(2, 6, CONTEXT, dtype=torch.float64)
    y1, y2 = layer.condition(h1)(x), layer.condition(h2)(x)
    kept = layer.cond_index
    assert torch.equal(y1[:, kept], x[:, kept])
    changed = layer.trans_index
    assert (y1[:, changed] - y2[:, changed]).abs().min() > 1e-6
    assert sorted(kept.tolist() + changed.tolist()) == list(range(FEATURES))


def test_one_context_per_point_serves_many_samples():
    layer = ready()
    context = torch.randn(4, CONTEXT, dtype=torch.float64)  # N = 4 data points
    x = torch.randn(7, 4, FEATURES, dtype=torch.float64)  # k = 7 samples each
    conditioned = layer.condition(context)
    y = conditioned(x)
    log_det = conditioned.log_abs_det_jacobian(x, y)
    assert y.shape == (7, 4, FEATURES) and log_det.shape == (7, 4)
    for n in range(4):
        single = layer.condition(context[n])
        assert torch.allclose(single(x[:, n]), y[:, n], atol=1e-12)
        assert torch.allclose(single.log_abs_det_jacobian(x[:, n], y[:, n]), log_det[:, n])
    # A single x broadcast against many contexts works too.
    assert conditioned(x[0, 0]).shape == (4, FEATURES)


def test_starts_as_the_identity():
    layer = ConditionalAffineCoupling(FEATURES, CONTEXT)
    x, h = torch.randn(3, FEATURES), torch.randn(3, CONTEXT)
    conditioned = layer.condition(h)
    assert torch.equal(conditioned(x), x)
    assert torch.equal(conditioned.log_abs_det_jacobian(x, x), torch.zeros(3))


def test_gradients_reach_every_parameter_and_the_context():
    layer = ready()
    context = torch.randn(4, CONTEXT, dtype=torch.float64, requires_grad=True)
    base = dist.Normal(torch.zeros(FEATURES, dtype=torch.float64), 1.0).to_event(1)
    flow = ConditionalTransformedDistribution(base, [layer]).condition(context)
    flow.log_prob(torch.randn(4, FEATURES, dtype=torch.float64)).sum().backward()
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert context.grad.abs().sum() > 0


def test_conditional_distribution_log_prob_matches_the_change_of_variables():
    layer = ready()
    mixer = InvertibleConv1x1(FEATURES, event_dim=1).double()
    context = torch.randn(5, CONTEXT, dtype=torch.float64)
    base = dist.Normal(torch.zeros(5, FEATURES, dtype=torch.float64), 1.0).to_event(1)
    flow = ConditionalTransformedDistribution(base, [layer, mixer]).condition(context)
    x = flow.sample((3,))
    assert x.shape == (3, 5, FEATURES)
    conditioned = layer.condition(context)
    u = mixer.inv(x)
    z = conditioned.inv(u)
    expected = (
        base.log_prob(z) - conditioned.log_abs_det_jacobian(z, u) - mixer.log_abs_det_jacobian(u, x)
    )
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-10)


def test_state_dict_round_trip():
    layer = ready()
    twin = ConditionalAffineCoupling(FEATURES, CONTEXT, hidden=8).double()
    twin.load_state_dict(layer.state_dict())
    x, h = torch.randn(3, FEATURES, dtype=torch.float64), torch.randn(3, CONTEXT).double()
    assert torch.equal(twin.condition(h)(x), layer.condition(h)(x))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: ConditionalAffineCoupling(1, 3), ValueError, "features must be an int >= 2"),
        (lambda: ConditionalAffineCoupling(4, 0), ValueError, "context_features must be"),
        (lambda: ConditionalAffineCoupling(4, 3, parity=2), ValueError, "parity must be 0 or 1"),
        (lambda: ConditionalAffineCoupling(4, 3, scale_bound=0), ValueError, "scale_bound"),
        (
            lambda: ConditionalAffineCoupling(4, 3).condition(torch.zeros(2, 5)),
            ValueError,
            "has 5 features",
        ),
        (
            lambda: ConditionalAffineCoupling(4, 3).condition(torch.zeros(2, 3, dtype=int)),
            TypeError,
            "floating-point",
        ),
        (
            lambda: ConditionalAffineCoupling(4, 3).condition(torch.zeros(3))(torch.zeros(2, 5)),
            ValueError,
            "has 5 channels",
        ),
    ],
)
def test_bad_input_raises_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
