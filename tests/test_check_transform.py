"""check_transform accepts correct layers and names the check that a broken one fails."""

import math

import pytest
import torch
from torch.distributions import Transform, constraints

from pyro_glow import InvertibleConv1x1, check_transform
from pyro_glow.transforms import FlowTransform


class Double(Transform):
    """y = 2x on vectors, with a correct log-determinant unless a subclass breaks it."""

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True

    def _call(self, x):
        return 2 * x

    def _inverse(self, y):
        return y / 2

    def log_abs_det_jacobian(self, x, y):
        return x.new_full(x.shape[:-1], x.shape[-1] * math.log(2))


class WrongLogDet(Double):
    def log_abs_det_jacobian(self, x, y):
        return x.new_zeros(x.shape[:-1])


class WrongInverse(Double):
    def _inverse(self, y):
        return y / 3


class WrongLogDetShape(Double):
    def log_abs_det_jacobian(self, x, y):
        return torch.full_like(x, math.log(2))  # per coordinate, not summed over the event


class FusedDouble(FlowTransform):
    """y = 2x as a pyro-glow layer whose fused inverse returns a wrong log-determinant."""

    def __init__(self):
        super().__init__(event_dim=1)

    def _forward_and_log_det(self, x):
        return 2 * x, x.new_full(x.shape[:-1], x.shape[-1] * math.log(2))

    def _inverse_and_log_det(self, y):
        return y / 2, y.new_zeros(y.shape[:-1])


def vectors():
    return torch.randn(3, 4, dtype=torch.float64)


def test_passes_on_invertible_conv1x1():
    torch.manual_seed(0)
    layer = InvertibleConv1x1(3).double()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    errors = check_transform(layer, torch.randn(2, 3, 4, 4, dtype=torch.float64))
    assert set(errors) == {"inverse_of_forward", "forward_of_inverse", "log_det", "inverse_log_det"}
    assert max(errors.values()) < 1e-9


def test_passes_on_a_correct_toy():
    torch.manual_seed(0)
    errors = check_transform(Double(), vectors())
    assert max(errors.values()) < 1e-12


@pytest.mark.parametrize(
    "transform, check",
    [
        (WrongLogDet(), "log-det against the brute-force Jacobian failed"),
        (WrongInverse(), "inverse of forward failed"),
        (WrongLogDetShape(), r"log-det shape failed: got \[3, 4\], expected the batch shape \[3\]"),
    ],
    ids=["wrong-log-det", "wrong-inverse", "wrong-log-det-shape"],
)
def test_fails_naming_the_check(transform, check):
    torch.manual_seed(0)
    with pytest.raises(AssertionError, match=check):
        check_transform(transform, vectors())


def test_fails_on_a_wrong_fused_inverse_log_det():
    torch.manual_seed(0)
    with pytest.raises(AssertionError, match="inverse log-det"):
        check_transform(FusedDouble(), vectors())


def test_rejects_too_few_dims():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="at least 3 dims"):
        check_transform(InvertibleConv1x1(3).double(), torch.randn(3, 4, dtype=torch.float64))
