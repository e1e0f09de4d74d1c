"""Numerical stability, fast versions of benchmarks/stability.py (full figures in
docs/reliability.md): a high learning rate, deep flows' float32 round trips after training,
a constant input channel, sampling at temperature 1.0, and float64 end to end."""

import math

import pyro
import pytest
import torch
from conftest import perturb_
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_glow import ActNorm, glow
from pyro_glow.checks import check_transform
from pyro_glow.metrics import dequantize
from pyro_glow.training import TrainConfig, Trainer, density_model, empty_guide
from pyro_glow.transforms import forward_and_log_det, inverse_and_log_det


def round_trip(transform, x):
    """``(max |f(f^-1(x)) - x|, max |f^-1(x) - x|)``: the error and how far from the identity
    the flow is (a round trip of the identity would prove nothing)."""
    with torch.no_grad():
        z, _ = inverse_and_log_det(transform, x)
        x_again, _ = forward_and_log_det(transform, z)
    return (x_again - x).abs().max().item(), (z - x).abs().max().item()


def svi_losses(flow, data, steps, lr=1e-2, batch_size=64):
    pyro.clear_param_store()
    svi = SVI(density_model(flow), empty_guide, Adam({"lr": lr}), Trace_ELBO())
    generator = torch.Generator().manual_seed(0)
    return [
        svi.step(data[torch.randint(len(data), (batch_size,), generator=generator)])
        for _ in range(steps)
    ]


def moons(n=512):
    from pyro_glow.data import make_moons_data

    train, _ = make_moons_data(n, 1, 0.05, seed=0)
    return (train - train.mean(0)) / train.std(0)


def images(n, shape=(3, 8, 8), constant_channel=None):
    """uint8 test images (a colour gradient plus noise), dequantized to [0, 1) and centred."""
    generator = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, shape[-1])
    colour = torch.rand(n, shape[0], 1, 1, generator=generator)
    noise = torch.rand(n, *shape, generator=generator)
    pixels = ((colour * ramp[:, None] * ramp[None, :] + noise) * 127).to(torch.uint8)
    if constant_channel is not None:
        pixels[:, constant_channel] = 128
    return dequantize(pixels, generator=generator) - 0.5


def test_default_moons_flow_at_lr_1e2_stays_finite_and_samples_finite(tmp_path):
    """The default moons flow (12 steps, 128 units) at lr 1e-2 after 20 warm-up steps (the
    benchmark runs the full 1000 steps of ``pyro-glow train moons --lr 1e-2``): no skipped
    step, a test NLL better than a Gaussian's, finite samples at temperature 1.0."""
    config = TrainConfig(
        data="moons",
        lr=1e-2,
        steps=120,
        warmup_steps=20,
        train_size=2000,
        test_size=200,
        checkpoint_every=120,
        out=str(tmp_path),
    )
    trainer = Trainer(config)
    metrics = trainer.run()
    assert trainer.nonfinite == 0 and metrics["nonfinite_steps"] == 0
    # A Gaussian fit of the standardised moons scores about 2.0 nats; the truth 0.30.
    assert math.isfinite(metrics["test_nll"]) and metrics["test_nll"] < 1.8
    torch.manual_seed(0)
    samples = trainer.flow.sample(20000, temperature=1.0)
    assert torch.isfinite(samples).all() and samples.abs().max() < 20


def test_32_step_vector_glow_round_trip_in_float32_after_training():
    torch.manual_seed(0)
    flow = glow((2,), steps=32, hidden=16)
    data = moons()
    losses = svi_losses(flow, data, steps=10)
    assert all(math.isfinite(loss) for loss in losses)
    perturb_(flow, 0.05)
    error, distance = round_trip(flow.transform, data)
    assert distance > 0.1  # a real map, far from the identity
    assert error < 1e-4


def test_l3_k16_image_glow_round_trip_in_float32_after_training():
    torch.manual_seed(0)
    # 16x16 so that the deepest level (2x2, 48 channels) initialises its ActNorms from 64
    # values per channel: at 8x8 (1x1, 8 values) the start is degenerate (docs/reliability.md).
    flow = glow((3, 16, 16), levels=3, steps=16, hidden=4)
    data = images(32, shape=(3, 16, 16))
    losses = svi_losses(flow, data, steps=3, lr=1e-3, batch_size=16)
    assert all(math.isfinite(loss) for loss in losses)
    # Three Adam steps barely move the zero-initialised coupling nets: perturb them too (0.01:
    # noise of 0.05 on every parameter of 48 steps compounds to latents of 1e17).
    perturb_(flow, 0.01)
    error, distance = round_trip(flow.transform, data)
    assert distance > 0.1
    assert error < 1e-4
    torch.manual_seed(0)
    assert torch.isfinite(flow.sample(8, temperature=1.0)).all()


def test_a_constant_channel_gives_finite_initialisation_and_training():
    torch.manual_seed(0)
    flow = glow((3, 8, 8), levels=2, steps=2, hidden=8)
    data = images(32, constant_channel=1)  # dequantized: uniform inside one pixel bin
    losses = svi_losses(flow, data, steps=20, lr=1e-3, batch_size=16)
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]
    assert all(torch.isfinite(p).all() for p in flow.parameters())
    assert torch.isfinite(flow.log_prob(data)).all()


def test_an_exactly_constant_channel_keeps_actnorm_finite():
    """Zero variance (no dequantization noise): ActNorm keeps unit scale on that channel."""
    x = torch.randn(16, 3, 4, 4)
    x[:, 2] = 0.25
    layer = ActNorm(3)
    z = layer.inv(x)
    assert torch.isfinite(z).all() and torch.isfinite(layer.log_scale).all()
    assert layer.log_scale[2].item() == 0.0 and torch.allclose(z[:, 2], torch.zeros(16, 4, 4))
    flow = glow((3, 4, 4), levels=1, steps=2, hidden=4)
    assert torch.isfinite(flow.log_prob(x)).all()


def test_float64_end_to_end():
    torch.manual_seed(0)
    flow = glow((2,), steps=4, hidden=16).double()
    data = moons().double()
    losses = svi_losses(flow, data, steps=20)
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0]
    assert all(p.dtype == torch.float64 for p in flow.parameters())
    assert flow.log_prob(data[:5]).dtype == torch.float64
    assert flow.sample(5).dtype == torch.float64
    flow.log_prob(data[:5]).sum().backward()
    assert all(p.grad is None or p.grad.dtype == torch.float64 for p in flow.parameters())
    error, distance = round_trip(flow.transform, data)
    assert distance > 0.1 and error < 1e-12

    image_flow = glow((3, 8, 8), levels=3, steps=2, hidden=4).double()
    x = images(4).double()
    image_flow.log_prob(x)  # data-dependent initialisation
    perturb_(image_flow, 0.05)
    error, distance = round_trip(image_flow.transform, x)
    assert distance > 0.1 and error < 1e-12


@pytest.mark.parametrize("levels", [1, 2])
def test_whole_multiscale_log_det_matches_the_brute_force_jacobian_in_float64(levels):
    torch.manual_seed(0)
    flow = glow((2, 4, 4), levels=levels, steps=1, hidden=4).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    flow.log_prob(x)
    perturb_(flow, 0.1)
    errors = check_transform(flow.transform, x, atol=1e-9)
    assert errors["log_det"] < 1e-9
