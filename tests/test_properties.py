"""Property tests (hypothesis) of the layer contract over shapes, batch shapes and layer
configurations: the inverse round trip, the log-determinant against the brute-force Jacobian,
output and log-det shapes, and independence of the batch elements.

Reproducible by default: the ``ci`` profile derandomizes (the examples are a function of the
test, not of the clock) and keeps no example database. ``PYRO_GLOW_HYPOTHESIS=explore`` runs
random examples, four times as many.
"""

import math
import os

import torch
from conftest import perturb_
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_glow import glow
from pyro_glow.checks import check_transform
from pyro_glow.transforms import (
    ActNorm,
    AffineCoupling,
    ElementwiseAffine,
    InvertibleConv1x1,
    Split,
    Squeeze,
    Unsqueeze,
    forward_and_log_det,
    inverse_and_log_det,
)

settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore",
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("PYRO_GLOW_HYPOTHESIS", "ci"))

# Batch shapes: none, one dim, two dims (at most 4 elements: each gets a Jacobian).
batch_shapes = st.lists(st.integers(1, 2), min_size=0, max_size=2).map(tuple)
vector_shapes = st.integers(2, 6).map(lambda d: (d,))
image_shapes = st.tuples(
    st.integers(1, 4), st.sampled_from([2, 4]), st.sampled_from([2, 4])
).filter(lambda shape: math.prod(shape) <= 32)


def make_layer(kind: str, shape: tuple[int, ...], options: dict):
    """The layer ``kind`` over events of ``shape`` with the drawn ``options``."""
    event_dim = len(shape)
    features = shape[0]
    if kind == "actnorm":
        return ActNorm(features, event_dim)
    if kind == "conv1x1":
        return InvertibleConv1x1(features, event_dim)
    if kind == "coupling":
        return AffineCoupling(
            features,
            options["hidden"],
            event_dim,
            options["mask"],
            parity=options["parity"],
            additive=options["additive"],
        )
    if kind == "affine":
        return ElementwiseAffine(shape)
    if kind == "split":
        kept = features - features // 2
        inner = {"none": None, "actnorm": ActNorm(kept), "conv1x1": InvertibleConv1x1(kept)}
        return Split(features, inner[options["inner"]])
    raise ValueError(kind)


@st.composite
def layers(draw):
    """``(layer, batch_shape, event_shape)`` for every layer kind and legal configuration."""
    kind = draw(st.sampled_from(["actnorm", "conv1x1", "coupling", "affine", "split"]))
    options = {
        "hidden": draw(st.integers(1, 6)),
        "mask": draw(st.sampled_from(["channel", "checkerboard"])),
        "parity": draw(st.integers(0, 1)),
        "additive": draw(st.booleans()),
        "inner": draw(st.sampled_from(["none", "actnorm", "conv1x1"])),
    }
    images_only = kind == "split"
    shape = draw(image_shapes if images_only else st.one_of(vector_shapes, image_shapes))
    needs_two = kind == "split" or (
        kind == "coupling" and not (len(shape) == 3 and options["mask"] == "checkerboard")
    )
    if needs_two and shape[0] < 2:
        shape = (2, *shape[1:])
    return make_layer(kind, shape, options), draw(batch_shapes), shape


def ready(layer, batch_shape, event_shape, seed):
    """A float64 input, and the layer initialised on it then perturbed (zero-initialised
    networks would otherwise be the identity, where a wrong formula can hide)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_shape + event_shape, generator=generator, dtype=torch.float64)
    layer = layer.double()
    with torch.no_grad():
        layer(x)  # ActNorm's data-dependent initialisation
    layer.clear_cache()
    torch.manual_seed(seed)
    perturb_(layer, 0.1)
    return layer, x


@given(layers(), st.integers(0, 2**16))
def test_layer_inverse_log_det_and_shapes(case, seed):
    layer, batch_shape, event_shape = case
    layer, x = ready(layer, batch_shape, event_shape, seed)
    errors = check_transform(layer, x, atol=1e-9)  # round trips and brute-force log-det
    assert max(errors.values()) <= 1e-9 * (1 + x.numel())
    y, log_det = forward_and_log_det(layer, x)
    assert y.shape == x.shape and log_det.shape == batch_shape
    assert layer.forward_shape(x.shape) == y.shape


@given(layers(), st.integers(0, 2**16))
def test_batch_elements_are_independent(case, seed):
    """Each element's output and log-det are those of the element alone (a wrong reshape
    or a sum over the wrong dims mixes the batch)."""
    layer, batch_shape, event_shape = case
    layer, x = ready(layer, (3, *batch_shape), event_shape, seed)
    with torch.no_grad():
        z, log_det = inverse_and_log_det(layer, x)
        for index in range(3):
            z_alone, log_det_alone = inverse_and_log_det(layer, x[index])
            assert torch.allclose(z[index], z_alone, atol=1e-10)
            assert torch.allclose(log_det[index], log_det_alone, atol=1e-10)


@given(
    st.integers(1, 3),
    st.sampled_from([2, 4, 6]),
    st.sampled_from([2, 4]),
    batch_shapes,
)
def test_squeeze_unsqueeze_are_inverse_permutations(channels, height, width, batch_shape):
    x = torch.randn(batch_shape + (channels, height, width))
    squeezed = Squeeze()(x)
    assert squeezed.shape == batch_shape + (4 * channels, height // 2, width // 2)
    assert Squeeze().forward_shape(x.shape) == squeezed.shape
    assert torch.equal(Unsqueeze()(squeezed), x) and torch.equal(Squeeze().inv(squeezed), x)
    assert torch.equal(torch.sort(squeezed.flatten()).values, torch.sort(x.flatten()).values)


@st.composite
def glow_configs(draw):
    """Small vector or multi-scale Glows: shape, levels, steps, hidden, prior, additive."""
    if draw(st.booleans()):
        shape = (draw(st.integers(2, 5)),)
        levels = 1
    else:
        levels = draw(st.integers(1, 2))
        side = 2**levels * draw(st.integers(1, 2 if levels == 1 else 1))
        shape = (draw(st.integers(1, 2)), side, side)
    return {
        "shape": shape,
        "levels": levels,
        "steps": draw(st.integers(1, 2)),
        "hidden": draw(st.integers(1, 4)),
        "prior": draw(st.sampled_from(["normal", "diag", "mixture"])),
        "additive": draw(st.booleans()),
    }


@given(glow_configs(), batch_shapes, st.integers(0, 2**16))
def test_whole_glow_contract(config, batch_shape, seed):
    """The whole model is one bijection of the data's shape: its log-det matches the
    brute-force Jacobian and ``log_prob``/``sample`` have the batch and event shapes."""
    torch.manual_seed(seed)
    flow = glow(**config).double()
    shape = config["shape"]
    x = torch.randn((2, *batch_shape) + shape, dtype=torch.float64)
    flow.log_prob(x)  # ActNorm initialisation
    perturb_(flow, 0.05)
    errors = check_transform(flow.transform, x, atol=1e-8)
    assert errors["log_det"] <= 1e-8 * (1 + x.numel())
    log_prob = flow.log_prob(x)
    assert log_prob.shape == (2, *batch_shape) and torch.isfinite(log_prob).all()
    assert flow.sample(3).shape == (3, *shape)
