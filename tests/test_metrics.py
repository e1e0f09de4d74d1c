"""Dequantization and bits per dimension: known answers, ranges, bad input."""

import math

import pytest
import torch

from pyro_glow import metrics
from pyro_glow.metrics import bits_per_dim, dequantize, quantize, to_image

ALL_BYTES = torch.arange(256, dtype=torch.uint8)


def test_quantize_reduces_bits():
    assert torch.equal(quantize(ALL_BYTES), ALL_BYTES)
    levels = quantize(ALL_BYTES, n_bits=5)
    assert levels.dtype == torch.uint8
    assert levels[255] == 31 and levels[0] == 0 and levels[7] == 0 and levels[8] == 1
    for n_bits in range(1, 9):
        levels = quantize(ALL_BYTES, n_bits)
        # Each of the 2**n levels takes exactly 2**(8 - n) consecutive byte values.
        assert torch.equal(
            torch.bincount(levels.long()), torch.full((2**n_bits,), 2 ** (8 - n_bits))
        )
        assert torch.equal(
            levels,
            torch.div(ALL_BYTES.long(), 2 ** (8 - n_bits), rounding_mode="floor").to(torch.uint8),
        )


def test_quantize_accepts_integers_in_range_only():
    assert torch.equal(quantize(torch.tensor([0, 255, 100]), 4), torch.tensor([0, 15, 6]))
    with pytest.raises(ValueError, match=r"\[0, 255\].*\[-1, 3\]"):
        quantize(torch.tensor([-1, 3]))
    with pytest.raises(ValueError, match="0, 256"):
        quantize(torch.tensor([0, 256]))
    with pytest.raises(TypeError, match="float32"):
        quantize(torch.rand(3))
    with pytest.raises(TypeError, match="bool"):
        quantize(torch.tensor([True]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        quantize([0, 1])
    for n_bits in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match="n_bits"):
            quantize(ALL_BYTES, n_bits)


@pytest.mark.parametrize("n_bits", [8, 5, 1])
def test_dequantize_fills_each_bin_uniformly(n_bits):
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (50_000,), dtype=torch.uint8, generator=generator)
    y = dequantize(x, n_bits, generator=generator)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert y.min() >= 0 and y.max() < 1
    levels = quantize(x, n_bits).float()
    assert torch.equal(torch.floor(y * 2**n_bits), levels)
    offset = y.double() * 2**n_bits - levels
    # U[0, 1): mean 1/2 (standard error 0.0013 here), variance 1/12.
    assert abs(offset.mean().item() - 0.5) < 0.006
    assert abs(offset.var().item() - 1 / 12) < 0.003


def test_dequantize_uses_the_generator_and_fresh_noise():
    x = torch.full((2, 3, 4, 4), 17, dtype=torch.uint8)
    first = dequantize(x, generator=torch.Generator().manual_seed(3))
    again = dequantize(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert not torch.equal(dequantize(x), dequantize(x))


def test_dequantize_stays_below_one_when_noise_nearly_one(monkeypatch):
    # In float32, (255 + u) / 256 rounds to 1.0 once u is within 2**-17 of 1.
    monkeypatch.setattr(
        metrics.torch, "rand", lambda shape, **kwargs: torch.full(shape, 1 - 2.0**-24)
    )
    y = dequantize(torch.tensor([255, 0], dtype=torch.uint8))
    assert y[0] < 1 and y[0] > 1 - 2.0**-16
    assert torch.equal(to_image(y), torch.tensor([255, 0], dtype=torch.uint8))


def test_bits_per_dim_of_uniform_density_is_n_bits():
    for n_bits in (1, 5, 8):
        result = bits_per_dim(torch.zeros(4), dims=3 * 32 * 32, n_bits=n_bits)
        assert torch.equal(result, torch.full((4,), float(n_bits)))


def test_bits_per_dim_hand_computed():
    # dims 4, n_bits 5: -(-10) / (4 ln 2) + 5 = 5 + 3.6067376...
    result = bits_per_dim(torch.tensor([0.0, -10.0, 4 * math.log(2)], dtype=torch.float64), 4, 5)
    expected = torch.tensor([5.0, 5 + 10 / (4 * math.log(2)), 4.0], dtype=torch.float64)
    torch.testing.assert_close(result, expected)
    assert abs(10 / (4 * math.log(2)) - 3.6067376) < 1e-7


def test_bits_per_dim_is_exact_for_a_density_constant_on_bins():
    # A histogram density on [0, 1)^2 with 2-bit levels: p(y) = P(k) * 2**(n D), so the bound
    # is tight and bits/dim equals the discrete model's -log2 P(k) / D exactly.
    n_bits, dims = 2, 2
    probs = torch.rand(4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    probs /= probs.sum()
    k = torch.cartesian_prod(torch.arange(4), torch.arange(4))  # all 16 cells
    x = (k * 2 ** (8 - n_bits)).to(torch.uint8)
    y = dequantize(x, n_bits, generator=torch.Generator().manual_seed(2))
    cell = torch.floor(y * 2**n_bits).long()
    log_density = probs[cell[:, 0], cell[:, 1]].log() + n_bits * dims * math.log(2)
    expected = -probs[k[:, 0], k[:, 1]].log2() / dims
    torch.testing.assert_close(bits_per_dim(log_density, dims, n_bits), expected)
    # ... and the model's average over the data drawn from itself is its entropy per dim.
    entropy = -(probs * probs.log2()).sum() / dims
    average = (probs[k[:, 0], k[:, 1]] * bits_per_dim(log_density, dims, n_bits)).sum()
    torch.testing.assert_close(average, entropy)


def test_bits_per_dim_rejects_bad_input():
    for dims in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="dims"):
            bits_per_dim(torch.zeros(2), dims)
    with pytest.raises(ValueError, match="n_bits"):
        bits_per_dim(torch.zeros(2), 10, n_bits=0)
    with pytest.raises(TypeError, match="floating-point"):
        bits_per_dim(torch.zeros(2, dtype=torch.long), 10)
    with pytest.raises(TypeError, match="torch.Tensor"):
        bits_per_dim(-1.0, 10)


@pytest.mark.parametrize("n_bits", [8, 5, 3])
def test_to_image_inverts_dequantize(n_bits):
    x = ALL_BYTES.repeat(10)
    y = dequantize(x, n_bits, generator=torch.Generator().manual_seed(4))
    image = to_image(y, n_bits)
    assert image.dtype == torch.uint8
    assert torch.equal(image, quantize(x, n_bits) * 2 ** (8 - n_bits))


def test_to_image_clamps():
    y = torch.tensor([-0.3, 0.0, 0.49, 0.5, 0.999, 1.0, 1.7, float("nan"), float("inf")])
    assert to_image(y).tolist() == [0, 0, 125, 128, 255, 255, 255, 0, 255]
    assert to_image(y, n_bits=1).tolist() == [0, 0, 0, 128, 128, 128, 128, 0, 128]
    with pytest.raises(TypeError, match="floating-point"):
        to_image(ALL_BYTES)
    with pytest.raises(ValueError, match="n_bits"):
        to_image(y, n_bits=9)
