"""The contract every pyro-glow layer keeps, checked for every layer and configuration."""

import copy
from functools import partial
from itertools import product

import pyro.distributions as dist
import pytest
import torch
from conftest import perturb_
from pyro.distributions.torch_transform import ComposeTransformModule

from pyro_glow import check_transform
from pyro_glow.memory import MemorySavingStep
from pyro_glow.transforms import (
    ActNorm,
    AffineCoupling,
    ElementwiseAffine,
    InvertibleConv1x1,
    PiecewiseLinear,
    Rescale,
    Split,
    Squeeze,
    Unsqueeze,
)

IMAGE = (4, 4, 4)
VECTOR = (5,)


def _small_inner():
    return ComposeTransformModule(
        [AffineCoupling(2, 6, mask="checkerboard"), InvertibleConv1x1(2), ActNorm(2)]
    )


def _layer_cases():
    cases = []
    for event_dim, shape in ((1, VECTOR), (3, IMAGE)):
        features = shape[0]
        cases.append((f"actnorm-{event_dim}d", partial(ActNorm, features, event_dim), shape))
        conv = partial(InvertibleConv1x1, features, event_dim)
        cases.append((f"conv1x1-{event_dim}d", conv, shape))
        for mask, additive, parity in product(("channel", "checkerboard"), (False, True), (0, 1)):
            kind = "additive" if additive else "affine"
            coupling = partial(
                AffineCoupling, features, 6, event_dim, mask, parity=parity, additive=additive
            )
            cases.append((f"coupling-{event_dim}d-{mask}-{kind}-p{parity}", coupling, shape))
        silu = partial(AffineCoupling, features, 6, event_dim, activation="silu")
        cases.append((f"coupling-{event_dim}d-silu", silu, shape))
        affine = partial(ElementwiseAffine, shape, 0.3, -0.2)
        cases.append((f"elementwise-affine-{event_dim}d", affine, shape))
        cases.append((f"rescale-{event_dim}d", partial(Rescale, shape, -0.2), shape))
    for parity in (0, 1):
        half = torch.tensor([True, False, False, True, False])
        coupling = partial(AffineCoupling, VECTOR[0], 6, 1, half, parity=parity)
        cases.append((f"coupling-1d-tensor-mask-p{parity}", coupling, VECTOR))
    for learn in ("widths", "heights", "both"):
        piecewise = partial(PiecewiseLinear, 8, -3.0, 3.0, VECTOR[0], learn)
        cases.append((f"piecewise-linear-{learn}", piecewise, VECTOR))
    cases.append(("fixed-affine", partial(ElementwiseAffine, IMAGE, 2.0, 1.5, False), IMAGE))
    cases.append(("squeeze", Squeeze, IMAGE))
    cases.append(("unsqueeze", Unsqueeze, IMAGE))
    cases.append(("split", partial(Split, 4), IMAGE))
    cases.append(("split-inner", lambda: Split(4, _small_inner()), IMAGE))
    cases.append(("memory-saving-step", lambda: MemorySavingStep(_small_inner().parts), (2, 4, 4)))
    return cases


CASES = _layer_cases()
LEARNED = [case for case in CASES if case[0] not in ("squeeze", "unsqueeze", "fixed-affine")]
BATCH_SHAPES = [(), (4,), (2, 3)]


def _ready_layer(factory, shape, seed=0):
    """A float64 layer, initialised on data (ActNorm) and perturbed away from the identity."""
    torch.manual_seed(seed)
    layer = factory().double()
    layer(1.0 + 2.0 * torch.randn((16,) + shape, dtype=torch.float64))
    perturb_(layer)
    layer.clear_cache()
    return layer


def _base(layer, shape):
    return dist.Normal(torch.zeros(shape, dtype=torch.float64), 1.0).to_event(len(shape))


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
@pytest.mark.parametrize("name,factory,shape", CASES, ids=[c[0] for c in CASES])
def test_inverse_and_log_det_against_brute_force(name, factory, shape, batch_shape):
    layer = _ready_layer(factory, shape)
    x = torch.randn(batch_shape + shape, dtype=torch.float64)
    errors = check_transform(layer, x, atol=1e-9)
    assert set(errors) == {"inverse_of_forward", "forward_of_inverse", "log_det", "inverse_log_det"}
    if name not in ("squeeze", "unsqueeze") and "additive" not in name:
        y = layer(x)
        assert bool((layer.log_abs_det_jacobian(x, y).abs() > 1e-6).all()), (
            "log-det is zero: the test would not see a wrong formula"
        )


@pytest.mark.parametrize("name,factory,shape", LEARNED, ids=[c[0] for c in LEARNED])
def test_every_parameter_gets_a_gradient(name, factory, shape):
    layer = _ready_layer(factory, shape)
    flow = dist.TransformedDistribution(_base(layer, shape), [layer])
    data = flow.sample((8,))
    layer.clear_cache()
    (-flow.log_prob(data).sum() + flow.rsample((8,)).square().sum()).backward()
    for param_name, parameter in layer.named_parameters():
        assert parameter.grad is not None, param_name
        assert parameter.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("name,factory,shape", CASES, ids=[c[0] for c in CASES])
def test_state_dict_round_trip(name, factory, shape):
    layer = _ready_layer(factory, shape, seed=0)
    twin = factory().double()
    fresh = twin.with_cache(0)
    x = torch.randn((3,) + shape, dtype=torch.float64)
    if list(layer.parameters()):
        assert not torch.allclose(fresh(x), layer(x)), "the twin must differ before loading"
    twin.load_state_dict(layer.state_dict())
    reference = layer.with_cache(0)
    y = reference(x)
    assert torch.equal(fresh(x), y)
    assert torch.equal(fresh.inv(y), reference.inv(y))
    assert torch.equal(fresh.log_abs_det_jacobian(x, y), reference.log_abs_det_jacobian(x, y))
    assert torch.equal(copy.deepcopy(reference)(x), y)


@pytest.mark.parametrize("name,factory,shape", CASES, ids=[c[0] for c in CASES])
def test_with_cache_keeps_constructor_arguments(name, factory, shape):
    layer = _ready_layer(factory, shape)
    assert layer.with_cache(1) is layer
    uncached = layer.with_cache(0)
    assert uncached is not layer and uncached._cache_size == 0 and type(uncached) is type(layer)
    assert uncached.extra_repr() == layer.extra_repr()
    assert {k: v for k, v in vars(uncached).items() if not k.startswith("_")} == {
        k: v for k, v in vars(layer).items() if not k.startswith("_")
    }
    for (n1, p1), (n2, p2) in zip(
        uncached.named_parameters(), layer.named_parameters(), strict=True
    ):
        assert n1 == n2 and p1 is p2
    x = torch.randn((3,) + shape, dtype=torch.float64)
    assert torch.equal(uncached(x), layer(x))
    y = layer(x)
    assert uncached.inv(y) is not x and torch.allclose(uncached.inv(y), x, atol=1e-12)


@pytest.mark.parametrize("batch_shape", [(), (4,)], ids=str)
@pytest.mark.parametrize("name,factory,shape", CASES, ids=[c[0] for c in CASES])
def test_inside_transformed_distribution(name, factory, shape, batch_shape):
    layer = _ready_layer(factory, shape)
    base = _base(layer, shape)
    flow = dist.TransformedDistribution(base, [layer])
    out_shape = tuple(layer.forward_shape(shape))
    assert flow.event_shape == out_shape
    assert flow.sample(batch_shape).shape == batch_shape + out_shape
    sample = flow.rsample(batch_shape)
    assert sample.requires_grad or not list(layer.parameters())
    log_prob = flow.log_prob(sample)
    assert log_prob.shape == batch_shape
    layer.clear_cache()
    z = layer.inv(sample.detach())
    expected = base.log_prob(z) - layer.log_abs_det_jacobian(z, layer(z))
    assert torch.allclose(log_prob, expected, atol=1e-10)
