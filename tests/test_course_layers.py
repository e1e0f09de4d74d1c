"""PiecewiseLinear and Rescale: known values, the tails, monotonicity and bad arguments (the
generic contract is in test_contract.py)."""

import pytest
import torch
from conftest import perturb_

from pyro_glow import PiecewiseLinear, Rescale


def _perturbed_piecewise(bins=5, low=-2.0, high=3.0, features=2, scale=1.0):
    torch.manual_seed(0)
    layer = PiecewiseLinear(bins, low, high, features, learn="both").double()
    perturb_(layer, scale)
    return layer


def test_piecewise_known_values_through_its_knots():
    layer = PiecewiseLinear(2, 0.0, 4.0).double()
    with torch.no_grad():
        layer.width_logits.copy_(torch.tensor([[0.0, 0.0]]))  # widths 2, 2
        layer.height_logits.copy_(torch.tensor([[0.0, torch.tensor(3.0).log()]]))  # ~1, ~3
    a, b = (knots.detach() for knots in layer.knots())
    assert torch.allclose(a, torch.tensor([[0.0, 2.0, 4.0]], dtype=torch.float64))
    assert torch.allclose(b, torch.tensor([[0.0, 1.0, 4.0]], dtype=torch.float64), atol=2e-3)
    z = torch.tensor([[-1.0], [1.0], [2.0], [3.0], [4.0], [5.0]], dtype=torch.float64)
    x = layer(z)
    slope_0, slope_1 = (b[0, 1] - b[0, 0]) / 2, (b[0, 2] - b[0, 1]) / 2
    expected = torch.tensor([-1.0, slope_0, 2 * slope_0, b[0, 1] + slope_1, 4.0, 5.0])
    assert torch.allclose(x.squeeze(-1), expected, atol=1e-12)
    log_det = layer.log_abs_det_jacobian(z, x)
    zero = torch.zeros((), dtype=torch.float64)
    assert torch.allclose(
        log_det,
        torch.stack([zero, slope_0.log(), slope_1.log(), slope_1.log(), slope_1.log(), zero]),
    )


def test_piecewise_is_identity_outside_and_increasing_inside():
    layer = _perturbed_piecewise()
    z = torch.linspace(-6.0, 7.0, 2001, dtype=torch.float64).unsqueeze(-1).expand(-1, 2)
    x = layer(z)
    outside = (z < -2.0) | (z > 3.0)
    assert torch.equal(x[outside], z[outside])
    assert bool((x.diff(dim=0) > 0).all()), "the map must be strictly increasing"
    inside = ~outside
    assert bool(((x[inside] >= -2.0) & (x[inside] <= 3.0)).all())
    assert not torch.allclose(x[inside], z[inside]), "the perturbed map is not the identity"
    layer.clear_cache()
    assert torch.allclose(layer.inv(x), z, atol=1e-12)


def test_piecewise_log_det_is_zero_in_the_tails_only():
    layer = _perturbed_piecewise(features=1)
    z = torch.tensor([[-5.0], [0.5], [9.0]], dtype=torch.float64)
    log_det = layer.log_abs_det_jacobian(z, layer(z))
    assert log_det[0] == 0 and log_det[2] == 0 and log_det[1] != 0


def test_piecewise_slopes_stay_bounded_for_extreme_logits():
    layer = PiecewiseLinear(4, -1.0, 1.0).double()
    with torch.no_grad():
        layer.width_logits.copy_(torch.tensor([[80.0, -80.0, -80.0, -80.0]]))
        layer.height_logits.copy_(torch.tensor([[-80.0, 80.0, -80.0, -80.0]]))
    z = torch.linspace(-1.0, 1.0, 101, dtype=torch.float64).unsqueeze(-1)
    x = layer(z)
    log_det = layer.log_abs_det_jacobian(z, x)
    assert bool(torch.isfinite(log_det).all()) and log_det.abs().max() < 2 * 6.91 + 1e-6
    layer.clear_cache()
    assert torch.allclose(layer.inv(x), z, atol=1e-9)


@pytest.mark.parametrize(
    "args,error,message",
    [
        ((0, -1.0, 1.0), ValueError, "bins must be a positive int"),
        ((4, 1.0, 1.0), ValueError, "low must be < high"),
        ((4, -1.0, float("inf")), ValueError, "high must be finite"),
        ((4, "a", 1.0), TypeError, "low must be a number"),
        ((4, -1.0, 1.0, 0), ValueError, "features must be a positive int"),
        ((4, -1.0, 1.0, 1, "grid"), ValueError, "learn must be one of"),
    ],
)
def test_piecewise_bad_arguments(args, error, message):
    with pytest.raises(error, match=message):
        PiecewiseLinear(*args)


@pytest.mark.parametrize(
    "learn,learned",
    [("widths", {"width_logits"}), ("heights", {"height_logits"}), ("both", None)],
)
def test_piecewise_learns_only_the_requested_knots(learn, learned):
    layer = PiecewiseLinear(4, -1.0, 1.0, learn=learn)
    both = {"width_logits", "height_logits"}
    assert {name for name, _ in layer.named_parameters()} == (learned or both)
    assert set(layer.state_dict()) == both


def test_piecewise_bad_input_names_the_shape():
    with pytest.raises(ValueError, match="expected 2"):
        PiecewiseLinear(4, -1.0, 1.0, features=2)(torch.zeros(3, 3))


def test_rescale_known_values_and_bad_arguments():
    layer = Rescale((3,), log_scale=torch.tensor([0.0, 1.0, -1.0]))
    x = layer(torch.ones(2, 3))
    assert torch.allclose(x, torch.tensor([1.0, 2.718281828, 0.367879441]).expand(2, 3))
    assert layer.log_abs_det_jacobian(torch.ones(2, 3), x).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="does not broadcast"):
        Rescale((3,), log_scale=torch.zeros(2))
    with pytest.raises(ValueError, match="shape must be"):
        Rescale((2, 3))
    with pytest.raises(ValueError, match="event shape"):
        Rescale((1, 4, 4))(torch.zeros(2, 4, 4, 1))
