"""nice() and realnvp(): whole models against the brute-force Jacobian, their structure, and
their configuration errors."""

import pyro.distributions as dist
import pytest
import torch
from conftest import perturb_

from pyro_glow import check_transform, nice, realnvp
from pyro_glow.transforms import AffineCoupling, Rescale, Split

BUILDS = [
    ("nice-vector", nice, (4,), dict(couplings=4, hidden=8)),
    ("nice-image", nice, (2, 4, 4), dict(couplings=3, hidden=4)),
    ("realnvp-vector", realnvp, (5,), dict(couplings=4, hidden=8, seed=1)),
    ("realnvp-image-3-scales", realnvp, (2, 4, 4), dict(scales=3, hidden=4)),
    (
        "realnvp-image-learned-split",
        realnvp,
        (1, 4, 4),
        dict(scales=2, hidden=4, learned_split=True),
    ),
]


@pytest.mark.parametrize("name,builder,shape,kwargs", BUILDS, ids=[b[0] for b in BUILDS])
def test_whole_model_against_brute_force_jacobian(name, builder, shape, kwargs):
    torch.manual_seed(0)
    flow = builder(shape, **kwargs).double()
    perturb_(flow, 0.1)
    x = 1.0 + 2.0 * torch.randn((3,) + shape, dtype=torch.float64)
    errors = check_transform(flow.transform, x, atol=1e-9)
    assert errors["log_det"] < 1e-9
    flow.clear_cache()
    z = flow.transform.inv(x)
    log_det = flow.transform.log_abs_det_jacobian(z, flow.transform(z))
    assert log_det.abs().min() > 1e-3, "a zero log-det would hide a wrong formula"
    expected = dist.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(-1) - log_det
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-9)
    assert flow.sample(2).shape == (2,) + shape


def test_nice_changes_volume_only_through_rescale():
    torch.manual_seed(0)
    flow = nice((6,), couplings=4, hidden=8).double()
    perturb_(flow, 0.2)
    rescale, *couplings = flow.transform.parts
    assert isinstance(rescale, Rescale) and len(couplings) == 4
    assert all(c.additive and c.mask == "checkerboard" for c in couplings)
    # Generative order is the reverse of NICE's: parities alternate 1, 0, 1, 0 -> 0, 1, 0, 1.
    assert [c.parity for c in reversed(couplings)] == [0, 1, 0, 1]
    x = torch.randn(5, 6, dtype=torch.float64)
    z = flow.transform.inv(x)
    log_det = flow.transform.log_abs_det_jacobian(z, x)
    assert torch.allclose(log_det, rescale.log_scale.sum().expand(5), atol=1e-12)


def test_realnvp_image_structure_matches_the_paper():
    flow = realnvp((3, 32, 32), scales=3, hidden=4)
    couplings = [m for m in flow.modules() if isinstance(m, AffineCoupling)]
    splits = [m for m in flow.modules() if isinstance(m, Split)]
    assert len(splits) == 2 and len(couplings) == 3 + 3 + 3 + 3 + 4
    kinds = sorted((m.mask, m.features) for m in couplings)
    assert kinds == sorted(
        [("checkerboard", 3)] * 3
        + [("channel", 12)] * 3
        + [("checkerboard", 6)] * 3
        + [("channel", 24)] * 3
        + [("checkerboard", 12)] * 4
    )
    # Generative order of a scale: squeeze, factor-out, 3 channel couplings, unsqueeze,
    # 3 checkerboard couplings, masks alternating within each run.
    parts = flow.transform.parts
    names = [type(p).__name__ for p in parts]
    assert (
        names
        == ["Squeeze", "Split"] + ["AffineCoupling"] * 3 + ["Unsqueeze"] + ["AffineCoupling"] * 3
    )
    masks = [(p.mask, p.parity) for p in parts if isinstance(p, AffineCoupling)]
    assert masks == [("channel", 0), ("channel", 1), ("channel", 0)] + [
        ("checkerboard", 0),
        ("checkerboard", 1),
        ("checkerboard", 0),
    ]
    last_scale = parts[1].inner.parts[1].inner.parts
    assert [(p.mask, p.parity) for p in last_scale] == [
        ("checkerboard", k % 2) for k in (1, 0, 1, 0)
    ]
    assert flow.event_shape == (3, 32, 32)


@pytest.mark.parametrize("learned_split", [False, True])
def test_realnvp_factor_out_is_plain_unless_learned(learned_split):
    flow = realnvp((1, 8, 8), scales=2, hidden=4, learned_split=learned_split)
    x = torch.randn(16, 1, 8, 8)
    optimizer = torch.optim.Adam([p for p in flow.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        (-flow.log_prob(x).mean()).backward()
        optimizer.step()
    split = next(m for m in flow.modules() if isinstance(m, Split))
    weights = torch.cat([p.flatten() for p in split.prior_net.parameters()])
    assert bool((weights == 0).all()) != learned_split


def test_realnvp_vector_masks_are_random_halves_complemented_every_other_layer():
    flow = realnvp((6,), couplings=6, hidden=4, seed=3)
    layers = list(reversed(flow.transform.parts))  # the course's (normalizing) order
    conditioning = [set(layer.cond_index.tolist()) for layer in layers]
    assert all(len(c) == 3 for c in conditioning)
    for even in (0, 2, 4):
        assert conditioning[even] | conditioning[even + 1] == set(range(6))
        assert not conditioning[even] & conditioning[even + 1]
    assert len({frozenset(c) for c in conditioning[::2]}) > 1, "masks must be re-drawn"
    again = realnvp((6,), couplings=6, hidden=4, seed=3)
    assert [set(p.cond_index.tolist()) for p in reversed(again.transform.parts)] == conditioning
    # Without a seed the masks come from torch's global generator.
    drawn = []
    for _ in range(2):
        torch.manual_seed(5)
        drawn.append([p.cond_index.tolist() for p in realnvp((6,), hidden=4).transform.parts])
    assert drawn[0] == drawn[1]


def test_realnvp_vector_masks_are_saved_with_the_model():
    torch.manual_seed(0)
    flow = realnvp((6,), couplings=4, hidden=4, seed=3)
    perturb_(flow)
    other = realnvp((6,), couplings=4, hidden=4, seed=4)
    x = torch.randn(5, 6)
    assert not torch.allclose(other.log_prob(x), flow.log_prob(x))
    other.load_state_dict(flow.state_dict())
    assert torch.equal(other.log_prob(x), flow.log_prob(x))


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: nice((1,)), "at least 2 dimensions"),
        (lambda: nice((2, 3)), "shape must be"),
        (lambda: nice((2,), couplings=0), "couplings must be a positive int"),
        (lambda: nice((2,), hidden=1.5), "hidden must be a positive int"),
        (lambda: nice((2,), prior="laplace"), "unknown prior"),
        (lambda: realnvp((1, 6, 8), scales=3), "divisible by 4"),
        (lambda: realnvp((1, 8, 8), scales=0), "scales must be a positive int"),
        (lambda: realnvp((4,), couplings=-1), "couplings must be a positive int"),
    ],
)
def test_bad_configuration_raises_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(event_dim=3, mask=torch.tensor([True, False])), "for vectors"),
        (dict(mask=torch.tensor([1, 0, 1, 0])), "must be boolean of shape"),
        (dict(mask=torch.tensor([True, False])), "must be boolean of shape"),
        (dict(mask=torch.ones(4, dtype=torch.bool)), "needs True and False"),
    ],
)
def test_bad_tensor_mask_raises_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AffineCoupling(4, 8, **{"event_dim": 1, **kwargs})
