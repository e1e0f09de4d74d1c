"""pyro_glow.guides: Glow flows as Pyro guides (AutoNormalizingFlow factory, AutoGlow,
SiteFlows), trained with Trace_ELBO / TraceMeanField_ELBO and used by Predictive."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import AutoNormalizingFlow, init_to_value

from pyro_glow.guides import AutoGlow, SiteFlows, glow_transform, vector_glow
from pyro_glow.transforms import ActNorm, AffineCoupling, ElementwiseAffine

NOISE = 0.5


def gaussian_model(y):
    """z ~ N(0, I), y ~ N(z, 0.5^2): posterior N(0.8 y, 0.2 I), evidence N(y; 0, 1.25 I)."""
    z = pyro.sample("z", dist.Normal(torch.zeros_like(y), 1.0).to_event(y.dim()))
    pyro.sample("y", dist.Normal(z, NOISE).to_event(y.dim()), obs=y)


def log_evidence(y):
    return dist.Normal(0.0, math.sqrt(1 + NOISE**2)).log_prob(y).sum().item()


def fit(model, guide, args, steps, lr=2e-2, loss=None):
    loss = loss or Trace_ELBO(num_particles=16, vectorize_particles=True)
    svi = SVI(model, guide, pyro.optim.ClippedAdam({"lr": lr, "lrd": 0.1 ** (1 / steps)}), loss)
    for _ in range(steps):
        svi.step(*args)


def kl_to_posterior(model, guide, args, particles=4000):
    """log p(y) - ELBO = KL(q || posterior) for the Gaussian model."""
    elbo = Trace_ELBO(num_particles=particles, vectorize_particles=True)
    return elbo.loss(model, guide, *args) + log_evidence(args[0])


def actnorms(module):
    return [m for m in module.modules() if isinstance(m, ActNorm)]


def test_glow_transform_in_auto_normalizing_flow_fits_the_posterior():
    y = torch.tensor([1.0, -2.0, 0.5])
    guide = AutoNormalizingFlow(gaussian_model, glow_transform(steps=2, hidden=16))
    fit(gaussian_model, guide, (y,), steps=120)
    # Measured (seed 0): 11.9 nats before training, 0.012 after 120 steps.
    assert kl_to_posterior(gaussian_model, guide, (y,)) < 0.05
    z = Predictive(gaussian_model, guide=guide, num_samples=4000, parallel=True)(y)["z"]
    assert torch.allclose(z.mean(0), 0.8 * y, atol=0.1)
    assert torch.allclose(z.var(0), torch.full_like(y, 0.2), atol=0.05)


def test_actnorm_in_a_guide_starts_as_the_identity_by_default():
    transform = glow_transform(steps=2, hidden=8)(3)
    layers = actnorms(transform)
    assert len(layers) == 2 and all(bool(layer.initialized) for layer in layers)
    guide = AutoNormalizingFlow(gaussian_model, glow_transform(steps=2, hidden=8))
    y = torch.zeros(3)
    Predictive(gaussian_model, guide=guide, num_samples=500, parallel=True)(y)  # batched draw
    for layer in actnorms(guide.transform):
        assert torch.equal(layer.log_scale, torch.zeros(3))
        assert torch.equal(layer.bias, torch.zeros(3))


def test_actnorm_data_init_standardises_the_generative_output():
    transform = glow_transform(steps=2, hidden=8, actnorm_init="data")(3)
    first = actnorms(transform)[0]  # the last layer in generative order: outputs the sample
    assert not bool(first.initialized)
    eps = 3.0 + 2.0 * torch.randn(4000, 3)
    with torch.no_grad():
        out = transform(eps)
    assert bool(first.initialized)
    assert torch.allclose(out.mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std(0, unbiased=False), torch.ones(3), atol=1e-4)


def test_actnorm_data_init_from_a_single_sample_keeps_the_identity():
    transform = glow_transform(steps=1, hidden=8, actnorm_init="data")(2)
    layer = actnorms(transform)[0]
    transform(torch.randn(2))
    assert bool(layer.initialized)
    assert torch.equal(layer.bias, torch.zeros(2))
    with torch.no_grad():
        transform(5 + torch.randn(100, 2))
    assert torch.equal(layer.bias, torch.zeros(2))


def two_site_model(y):
    """A scale with a positive support and a weight vector: a correlated posterior."""
    scale = pyro.sample("scale", dist.LogNormal(0.0, 0.5))
    w = pyro.sample("w", dist.Normal(torch.zeros(2), scale.unsqueeze(-1)).to_event(1))
    pyro.sample("y", dist.Normal(w.sum(-1), 0.3), obs=y)


def test_auto_glow_starts_at_the_init_point_and_learns_several_sites():
    y = torch.tensor(1.5)
    init = init_to_value(values={"scale": torch.tensor(2.0), "w": torch.tensor([0.3, -0.2])})
    guide = AutoGlow(two_site_model, steps=2, hidden=16, init_loc_fn=init, init_scale=0.01)
    start = Predictive(two_site_model, guide=guide, num_samples=200, parallel=True)(y)
    assert (start["scale"] - 2.0).abs().max() < 0.1
    assert (start["w"] - torch.tensor([0.3, -0.2])).abs().max() < 0.05
    loss_before = Trace_ELBO(num_particles=2000, vectorize_particles=True).loss(
        two_site_model, guide, y
    )
    fit(two_site_model, guide, (y,), steps=100)
    loss_after = Trace_ELBO(num_particles=2000, vectorize_particles=True).loss(
        two_site_model, guide, y
    )
    assert loss_after < loss_before - 0.5
    samples = Predictive(two_site_model, guide=guide, num_samples=2000, parallel=True)(y)
    assert (samples["scale"] > 0).all()
    assert abs(samples["w"].sum(-1).mean().item() - 1.5) < 0.3  # the data pull w1 + w2 to y
    # The posterior couples w1 and w2 (their sum is pinned): a mean-field guide cannot.
    w = samples["w"]
    assert torch.corrcoef(w.T)[0, 1] < -0.3


def test_site_flows_fit_an_image_site_with_both_elbos():
    torch.manual_seed(0)
    y = torch.randn(1, 4, 4)
    for loss in (Trace_ELBO(num_particles=8, vectorize_particles=True), TraceMeanField_ELBO()):
        pyro.clear_param_store()
        flows = SiteFlows({"z": (1, 4, 4)}, steps=1, hidden=8, levels=1)
        before = kl_to_posterior(gaussian_model, flows.guide, (y,), particles=500)
        fit(gaussian_model, flows.guide, (y,), steps=150, lr=3e-2, loss=loss)
        after = kl_to_posterior(gaussian_model, flows.guide, (y,), particles=500)
        # Measured (seed 0): about 40 nats before; after, 0.13 (Trace_ELBO) and 0.55
        # (TraceMeanField_ELBO, one particle per step).
        assert before > 20 and after < 1.5, type(loss).__name__
    z = Predictive(gaussian_model, guide=flows.guide, num_samples=1000, parallel=True)(y)["z"]
    assert z.shape == (1000, 1, 4, 4)
    assert (z.mean(0) - 0.8 * y).abs().mean() < 0.1


def test_site_flows_sample_constrained_sites_and_build_the_right_flows():
    flows = SiteFlows(
        {"w": (3,), "tau": (1,), "img": (2, 4, 4)},
        steps=2,
        hidden=8,
        levels=2,
        supports={"tau": dist.constraints.positive},
        init_scale=0.5,
    )
    with pyro.plate("draws", 100):
        values = flows.guide()
    assert values["w"].shape == (100, 3) and values["img"].shape == (100, 2, 4, 4)
    assert (values["tau"] > 0).all()
    assert isinstance(flows.flows["tau"][0], ElementwiseAffine)  # 1-D: an affine map
    outer = flows.flows["w"][-1]
    assert torch.allclose(outer.log_scale, torch.full((3,), math.log(0.5)))
    log_q = flows.distribution("img").log_prob(values["img"])
    assert log_q.shape == (100,) and torch.isfinite(log_q).all()


def test_site_flows_guide_a_model_with_a_scalar_constrained_site():
    y = torch.tensor(1.5)
    flows = SiteFlows(
        {"scale": (), "w": (2,)}, steps=1, hidden=8, supports={"scale": dist.constraints.positive}
    )
    elbo = Trace_ELBO(num_particles=500, vectorize_particles=True)
    before = elbo.loss(two_site_model, flows.guide, y)
    fit(two_site_model, flows.guide, (y,), steps=60, loss=TraceMeanField_ELBO())
    # Measured (seed 0): a loss of 26.6 nats before, 3.5 after 60 steps.
    assert elbo.loss(two_site_model, flows.guide, y) < 0.5 * before
    samples = Predictive(two_site_model, guide=flows.guide, num_samples=300, parallel=True)(y)
    assert samples["scale"].shape == (300,) and (samples["scale"] > 0).all()
    assert samples["w"].shape == (300, 2)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: glow_transform(steps=0), "steps must be a positive int"),
        (lambda: glow_transform(actnorm_init="batch"), "actnorm_init must be one of"),
        (lambda: vector_glow(0), "dim must be a positive int"),
        (lambda: glow_transform(activation="tanh"), "activation must be one of"),
        (lambda: AffineCoupling(4, 8, event_dim=1, activation="elu"), "activation must be one"),
        (lambda: AutoGlow(two_site_model, init_scale=0.0), "init_scale must be positive"),
        (lambda: SiteFlows({}), "non-empty mapping"),
        (lambda: SiteFlows({"z": (2, 3)}), r"\(\), \(D,\) or \(C, H, W\)"),
        (lambda: SiteFlows({"z": (1, 6, 6)}, levels=2), "divisible by 4"),
        (lambda: SiteFlows({"z": (2,)}, supports={"q": None}), r"unknown sites \['q'\]"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_unknown_site_raises_key_error():
    with pytest.raises(KeyError, match="unknown site 'x'"):
        SiteFlows({"z": (2,)}).distribution("x")
