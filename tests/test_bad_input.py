"""A catalogue of bad inputs: each raises ValueError or TypeError naming the problem."""

import numpy as np
import pytest
import torch

from pyro_glow import (
    ActNorm,
    AffineCoupling,
    InvertibleConv1x1,
    Split,
    Squeeze,
    Unsqueeze,
    glow,
)


def image_flow():
    return glow((3, 8, 8), levels=2, steps=1, hidden=8)


def vector_flow():
    return glow((2,), steps=1, hidden=8)


IMAGE_3CH = torch.linspace(-1, 1, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8)
IMAGE_4CH = torch.linspace(-1, 1, 2 * 4 * 8 * 8).reshape(2, 4, 8, 8)
UINT8_IMAGE = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)


def case(name, call, error, message):
    return pytest.param(call, error, message, id=name)


def vec(*shape):
    return torch.randn(*shape)


CASES = [
    # wrong channel count or shape
    case("actnorm-channels", lambda: ActNorm(3)(IMAGE_4CH), ValueError, "4 channels.*expected 3"),
    case("actnorm-inv-channels", lambda: ActNorm(3).inv(IMAGE_4CH), ValueError, "channels"),
    case("actnorm-vector", lambda: ActNorm(2, event_dim=1)(vec(5, 3)), ValueError, "channels"),
    case("actnorm-few-dims", lambda: ActNorm(3)(vec(3, 8)), ValueError, r"\[\.\.\., C, H, W\]"),
    case("conv1x1-channels", lambda: InvertibleConv1x1(3)(IMAGE_4CH), ValueError, "4 channels"),
    case("conv1x1-inv-channels", lambda: InvertibleConv1x1(3).inv(IMAGE_4CH), ValueError, "4 chan"),
    case("coupling-channels", lambda: AffineCoupling(4, 8)(IMAGE_3CH), ValueError, "3 channels"),
    case("coupling-vector", lambda: AffineCoupling(4, 8, 1)(vec(5, 3)), ValueError, "channels"),
    case("split-channels", lambda: Split(4)(IMAGE_3CH), ValueError, "3 channels.*expected 4"),
    case("flow-channels", lambda: image_flow().log_prob(IMAGE_4CH), ValueError, "shape"),
    case("flow-image-size", lambda: image_flow().log_prob(vec(2, 3, 16, 16)), ValueError, "shape"),
    case("flow-vector-size", lambda: vector_flow().log_prob(vec(5, 3)), ValueError, "shape"),
    case("squeeze-odd-height", lambda: Squeeze()(vec(2, 3, 7, 8)), ValueError, "odd height"),
    case("squeeze-odd-width", lambda: Squeeze()(vec(2, 3, 8, 5)), ValueError, "odd height or"),
    case("unsqueeze-channels", lambda: Unsqueeze()(vec(2, 3, 4, 4)), ValueError, "multiple of 4"),
    # constructor arguments
    case("actnorm-event-dim", lambda: ActNorm(3, event_dim=2), ValueError, "event_dim"),
    case("conv1x1-event-dim", lambda: InvertibleConv1x1(3, event_dim=0), ValueError, "event_dim"),
    case("coupling-event-dim", lambda: AffineCoupling(4, event_dim=2), ValueError, "event_dim"),
    case("coupling-1-vector", lambda: AffineCoupling(1, 8, 1), ValueError, "at least 2 features"),
    case("coupling-1-channel", lambda: AffineCoupling(1, 8), ValueError, "at least 2 features"),
    case("coupling-mask", lambda: AffineCoupling(4, mask="diag"), ValueError, "mask 'diag'"),
    case("coupling-parity", lambda: AffineCoupling(4, parity=2), ValueError, "parity"),
    case("actnorm-features", lambda: ActNorm(0), ValueError, "features"),
    case("split-features", lambda: Split(1), ValueError, "features"),
    # glow()
    case("glow-divisible", lambda: glow((3, 12, 12), levels=3), ValueError, "divisible by 8"),
    case("glow-levels-0", lambda: glow((3, 8, 8), levels=0), ValueError, "levels"),
    case("glow-steps-0", lambda: glow((2,), steps=0), ValueError, "steps"),
    case("glow-hidden-0", lambda: glow((2,), hidden=0), ValueError, "hidden"),
    case("glow-rank-2", lambda: glow((3, 8)), ValueError, r"\(C, H, W\)"),
    case("glow-vector-1d", lambda: glow((1,)), ValueError, "at least 2"),
    case("glow-prior", lambda: glow((2,), prior="bogus"), ValueError, "bogus"),
    # dtype and type
    case("flow-uint8", lambda: image_flow().log_prob(UINT8_IMAGE), TypeError, "dtype torch.uint8"),
    case("layer-int64", lambda: ActNorm(3)(UINT8_IMAGE.long()), TypeError, "dtype torch.int64"),
    case("flow-numpy", lambda: vector_flow().log_prob(np.zeros((5, 2))), TypeError, "torch.Tensor"),
    case("flow-list", lambda: vector_flow().log_prob([[0.0, 0.0]]), TypeError, "torch.Tensor"),
    case("layer-list", lambda: InvertibleConv1x1(2, 1)([0.0, 0.0]), TypeError, "torch.Tensor"),
    # sampling
    case("sample-negative-n", lambda: vector_flow().sample(-1), ValueError, "n must"),
    case("sample-float-n", lambda: vector_flow().sample(2.5), ValueError, "n must"),
    case("sample-temperature", lambda: vector_flow().sample(3, -0.5), ValueError, "temperature"),
    case("image-temperature", lambda: image_flow().sample(3, -1.0), ValueError, "temperature"),
]


@pytest.mark.parametrize("call, error, message", CASES)
def test_bad_input_raises(call, error, message):
    torch.manual_seed(0)
    with pytest.raises(error, match=message):
        call()


def test_bad_input_leaves_layer_untouched():
    torch.manual_seed(0)
    layer = ActNorm(3)
    with pytest.raises(ValueError):
        layer(IMAGE_4CH)
    assert not bool(layer.initialized)  # a rejected batch must not initialise the layer
    layer.inv(IMAGE_3CH)
    assert bool(layer.initialized)
