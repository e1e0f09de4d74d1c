"""Training pyro-glow flows through Pyro's SVI: as a density model and as an autoguide."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoNormalizingFlow
from sklearn.datasets import make_moons

import pyro_glow


def moons():
    x, _ = make_moons(n_samples=1000, noise=0.05, random_state=0)
    x = torch.tensor(x, dtype=torch.float32)
    return (x - x.mean(0)) / x.std(0)


def density_svi(flow, lr=5e-3):
    def model(x):
        pyro.module("flow", flow)
        with pyro.plate("data", len(x)):
            pyro.sample("x", flow(), obs=x)

    def guide(x):
        pass

    return SVI(model, guide, pyro.optim.Adam({"lr": lr}), Trace_ELBO())


def test_density_training_lowers_the_loss():
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    x = moons()
    flow = pyro_glow.glow((2,), steps=4, hidden=32)
    svi = density_svi(flow)
    losses = [svi.step(x) / len(x) for _ in range(300)]
    # A standardised Gaussian fit is ~2.8 nats per point; this run reaches ~1.2 from 2.7.
    assert sum(losses[-20:]) / 20 < losses[0] - 0.5
    final = svi.evaluate_loss(x)
    with torch.no_grad():
        expected = -flow.log_prob(x).sum().item()
    assert final == pytest.approx(expected, rel=1e-5)


def test_no_stale_cache_across_svi_steps():
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    x = moons()[:200]
    flow = pyro_glow.glow((2,), steps=2, hidden=16)
    svi = density_svi(flow, lr=1e-2)
    held = flow()  # a distribution object built before the parameters change
    with torch.no_grad():
        before = flow.log_prob(x)
    svi.step(x)
    with torch.no_grad():
        fresh = -flow.log_prob(x.clone()).sum()
        assert not torch.allclose(flow.log_prob(x), before)  # the step did change the model
        assert torch.equal(flow.log_prob(x), flow.log_prob(x.clone()))
        assert torch.allclose(held.log_prob(x), flow.log_prob(x.clone()), atol=1e-6)
    # The next step evaluates the model on the same x object: it must see the new parameters.
    assert svi.step(x) == pytest.approx(fresh.item(), rel=1e-6)


def sum_model():
    z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    pyro.sample("y", dist.Normal(z.sum(-1), 0.5), obs=torch.tensor(1.0))


def glow_guide():
    def init_transform(dim):
        return pyro_glow.glow((dim,), steps=4, hidden=32).transform

    return AutoNormalizingFlow(sum_model, init_transform)


def test_auto_normalizing_flow_guide_fits_the_posterior():
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    guide = glow_guide()
    optim = pyro.optim.ClippedAdam({"lr": 1e-2, "lrd": 0.995})
    svi = SVI(sum_model, guide, optim, Trace_ELBO(num_particles=8, vectorize_particles=True))
    losses = [svi.step() for _ in range(300)]
    assert sum(losses[-20:]) / 20 < sum(losses[:10]) / 10 - 0.5
    # s = z0 + z1 has prior N(0, 2) and likelihood N(1; s, 0.5^2): a Gaussian posterior.
    post_mean, post_var = 2.0 / 2.25 * 1.0, 2.0 * 0.25 / 2.25
    log_evidence = dist.Normal(0.0, 1.5).log_prob(torch.tensor(1.0)).item()
    elbo_loss = Trace_ELBO(num_particles=4000, vectorize_particles=True).loss(sum_model, guide)
    assert 0.0 < elbo_loss - (-log_evidence) < 0.1  # KL(q || posterior), with Monte Carlo slack
    z = Predictive(sum_model, guide=guide, num_samples=2000, parallel=True)()["z"]
    s = z.sum(-1)
    assert abs(s.mean().item() - post_mean) < 0.15
    assert abs(s.var().item() - post_var) < 0.1


def test_batched_draw_after_single_particle_training_keeps_the_guide():
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    guide = glow_guide()
    svi = SVI(sum_model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(20):
        svi.step()  # one latent per step: ActNorm stays uninitialised but gets trained
    before = {k: v.clone() for k, v in guide.transform.state_dict().items()}
    guide.get_posterior().sample((500,))
    after = guide.transform.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []


@pytest.mark.parametrize("shape", [(2,), (3, 4, 4)])
def test_flow_distribution_log_prob_fused_for_data_cached_for_its_own_draws(shape, monkeypatch):
    from conftest import perturb_

    from pyro_glow.flow import FlowDistribution
    from pyro_glow.transforms import AffineCoupling

    flow = pyro_glow.glow(shape, levels=2, steps=2, hidden=8).double()
    perturb_(flow, 0.1)  # at 0.3 some draws reach 1e7: no round trip is exact
    x = torch.randn(5, *shape, dtype=torch.float64)
    distribution = flow()
    assert isinstance(distribution, FlowDistribution)
    reference = dist.TransformedDistribution(flow.prior(), flow.transform).log_prob(x)
    torch.testing.assert_close(distribution.log_prob(x), reference, rtol=0, atol=1e-10)
    expanded = distribution.expand([3, 5])
    torch.testing.assert_close(expanded.log_prob(x), reference.expand(3, 5), rtol=0, atol=1e-10)

    inverses = []
    original = AffineCoupling._inverse_and_log_det
    monkeypatch.setattr(
        AffineCoupling,
        "_inverse_and_log_det",
        lambda self, y: inverses.append(1) or original(self, y),
    )
    drawn = distribution.rsample((4,))
    own = distribution.log_prob(drawn)
    assert not inverses  # its own draw is scored from the layers' caches, no inverse
    again = distribution.log_prob(drawn.clone())
    assert inverses  # a value it did not draw goes through the fused inverse
    torch.testing.assert_close(own, again, rtol=1e-6, atol=1e-6)  # a round trip apart


def test_flow_layers_keep_the_composition_and_its_state_dict_keys():
    from pyro.distributions.torch_transform import ComposeTransformModule

    from pyro_glow.flow import FlowLayers

    # float64: the two sum the log-dets of 192 dimensions in different orders
    flow = pyro_glow.glow((3, 8, 8), levels=2, steps=1, hidden=8).double()
    plain = ComposeTransformModule(list(flow.transform.parts))
    assert isinstance(flow.transform, FlowLayers)
    for name in ("domain", "codomain"):
        kept, walked = getattr(flow.transform, name), getattr(plain, name)
        assert type(kept) is type(walked) and kept.event_dim == walked.event_dim == 3
    assert list(flow.transform.state_dict()) == list(plain.state_dict())
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(
        flow().log_prob(x), dist.TransformedDistribution(flow.prior(), plain).log_prob(x)
    )


def _models_of_every_builder():
    torch.manual_seed(0)
    return {
        "glow image": pyro_glow.glow((3, 8, 8), levels=2, steps=2, hidden=8),
        "glow image, mixture prior, memory saving": pyro_glow.glow(
            (3, 8, 8), levels=2, steps=1, hidden=8, prior="mixture", memory_saving=True
        ),
        "glow vector": pyro_glow.glow((2,), steps=2, hidden=8),
        "nice vector": pyro_glow.nice((4,), hidden=8),
        "realnvp image": pyro_glow.realnvp((3, 8, 8), scales=2, hidden=8, learned_split=True),
        "realnvp vector": pyro_glow.realnvp((4,), couplings=2, hidden=8, seed=0),
    }


@pytest.mark.parametrize("kind", list(_models_of_every_builder()))
def test_svi_trains_every_parameter_of_the_flow_itself(kind):
    """Pyro's param store keeps a ``.contiguous()`` copy of a non-contiguous parameter, and
    SVI then steps the copy: the flow's own parameter must be the stored tensor, and every
    one must move. (Channels-last conv weights once froze every coupling network this way.)"""
    flow = _models_of_every_builder()[kind]
    x = torch.rand(16, *flow.event_shape)
    pyro.clear_param_store()
    model = pyro_glow.training.density_model(flow)
    optim = pyro_glow.optim.FlowOptimizer("adam", lr=1e-2)
    svi = SVI(model, pyro_glow.training.empty_guide, optim, Trace_ELBO())
    before = {name: p.detach().clone() for name, p in flow.named_parameters()}
    for _ in range(3):  # zero-initialised last layers pass gradients on from the second step
        svi.step(x)
    store = pyro.get_param_store()
    for name, parameter in flow.named_parameters():
        assert parameter.is_contiguous(), name
        assert store[f"flow$$${name}"] is parameter, name
    frozen = [n for n, p in flow.named_parameters() if torch.equal(p.detach(), before[n])]
    assert frozen == []
    pyro.clear_param_store()


def test_pyro_module_refuses_a_parameter_the_param_store_does_not_hold():
    pyro.clear_param_store()
    pyro_glow.glow((2,), steps=1, hidden=4).pyro_module("flow")  # an earlier model's entries
    flow = pyro_glow.glow((2,), steps=1, hidden=4)
    with pytest.raises(ValueError, match="clear_param_store"):
        flow.pyro_module("flow")
    pyro.clear_param_store()
    net = flow.transform.parts[0].net
    net.weights = torch.nn.Parameter(torch.zeros(2 * net.weights.numel())[::2])  # strided
    with pytest.raises(ValueError, match="non-contiguous"):
        flow.pyro_module("flow")
    pyro.clear_param_store()
