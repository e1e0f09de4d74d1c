"""Tests of the flow priors: StandardNormal, DiagNormal, GaussianMixture and make_prior."""

import pyro
import pytest
import torch
from torch.distributions import Normal

from pyro_glow.priors import DiagNormal, GaussianMixture, StandardNormal, make_prior

SHAPES = [(2,), (3, 4, 4)]
PRIORS = [StandardNormal, DiagNormal, GaussianMixture]


def perturbed(cls, shape):
    """A prior whose learnable parameters are moved away from their initial values."""
    prior = cls(shape)
    with torch.no_grad():
        for parameter in prior.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return prior


def flat_normal_log_prob(x, loc, scale, shape):
    """Sum over the event of independent normal log-densities, computed elementwise."""
    return Normal(loc, scale).log_prob(x).reshape(x.shape[: x.dim() - len(shape)] + (-1,)).sum(-1)


def mixture_log_prob(prior, x):
    """log p(x) of a GaussianMixture by hand: logsumexp over components."""
    flat = x.reshape(x.shape[: x.dim() - len(prior.shape)] + (1, -1))
    per_component = Normal(prior.locs, prior.log_scales.exp()).log_prob(flat).sum(-1)
    log_weights = torch.log_softmax(prior.logits, dim=0)
    return torch.logsumexp(per_component + log_weights, dim=-1)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cls", PRIORS, ids=lambda c: c.__name__)
def test_distribution_shapes(cls, shape):
    torch.manual_seed(0)
    d = cls(shape)()
    assert d.event_shape == torch.Size(shape)
    assert d.batch_shape == torch.Size()
    x = torch.randn((5, 2) + shape)
    assert d.log_prob(x).shape == (5, 2)
    assert d.rsample((7,)).shape == (7,) + shape


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_standard_normal_log_prob(shape):
    torch.manual_seed(0)
    x = torch.randn((6,) + shape)
    expected = flat_normal_log_prob(x, 0.0, 1.0, shape)
    torch.testing.assert_close(StandardNormal(shape)().log_prob(x), expected)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_diag_normal_log_prob(shape):
    torch.manual_seed(0)
    prior = perturbed(DiagNormal, shape)
    x = torch.randn((6,) + shape)
    expected = flat_normal_log_prob(x, prior.loc, prior.log_scale.exp(), shape)
    torch.testing.assert_close(prior().log_prob(x), expected)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_mixture_log_prob(shape):
    torch.manual_seed(0)
    prior = perturbed(GaussianMixture, shape)
    x = torch.randn((6,) + shape)
    torch.testing.assert_close(prior().log_prob(x), mixture_log_prob(prior, x))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cls", [DiagNormal, GaussianMixture], ids=lambda c: c.__name__)
@pytest.mark.parametrize("through", ["rsample", "log_prob"])
def test_gradients_reach_every_parameter(cls, shape, through):
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    prior = perturbed(cls, shape)
    if through == "rsample":
        z = prior().rsample((16,))
        loss = (z**2).sum()
    else:
        loss = -prior().log_prob(torch.randn((16,) + shape)).sum()
    loss.backward()
    for name, parameter in prior.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cls", PRIORS, ids=lambda c: c.__name__)
def test_sample_shape(cls, shape):
    torch.manual_seed(0)
    assert cls(shape).sample((4, 3), temperature=0.7).shape == (4, 3) + shape
    assert cls(shape).sample().shape == shape


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_temperature_zero_gives_the_mean(shape):
    torch.manual_seed(0)
    z = StandardNormal(shape).sample((3,), temperature=0.0)
    assert torch.equal(z, torch.zeros((3,) + shape))
    diag = perturbed(DiagNormal, shape)
    z = diag.sample((3,), temperature=0.0)
    torch.testing.assert_close(z, diag.loc.detach().expand_as(z))
    mixture = perturbed(GaussianMixture, shape)
    flat = mixture.sample((50,), temperature=0.0).reshape(50, 1, -1)
    distance = (flat - mixture.locs.detach()).abs().amax(-1)  # [sample, component]
    assert torch.all(distance.min(-1).values < 1e-6)
    assert len(set(distance.argmin(-1).tolist())) == mixture.components  # both modes drawn


@pytest.mark.parametrize("temperature", [0.3, 1.0, 1.5])
def test_standard_normal_std_follows_temperature(temperature):
    torch.manual_seed(0)
    z = StandardNormal((2,)).sample((20000,), temperature=temperature)
    assert z.mean(0).abs().max() < 0.05 * max(temperature, 1.0)
    torch.testing.assert_close(z.std(0), torch.full((2,), temperature), rtol=0.03, atol=0.0)


@pytest.mark.parametrize("cls", PRIORS, ids=lambda c: c.__name__)
def test_negative_temperature_raises(cls):
    with pytest.raises(ValueError, match="temperature"):
        cls((2,)).sample((3,), temperature=-0.1)


def test_make_prior_names():
    assert isinstance(make_prior("normal", (2,)), StandardNormal)
    assert isinstance(make_prior("diag", (2,)), DiagNormal)
    mixture = make_prior("mixture", (2,), components=3)
    assert isinstance(mixture, GaussianMixture) and mixture.components == 3
    with pytest.raises(ValueError, match="bogus"):
        make_prior("bogus", (2,))


@pytest.mark.parametrize("components", [0, -1])
def test_mixture_needs_a_component(components):
    with pytest.raises(ValueError, match="components"):
        GaussianMixture((2,), components=components)
