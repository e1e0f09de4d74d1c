"""memory_saving: the same model and gradients, with a flow step's activations recomputed."""

import pytest
import torch
from conftest import perturb_
from pyro.distributions.torch_transform import ComposeTransformModule

from pyro_glow import glow
from pyro_glow.memory import MemorySavingStep, memory_saving
from pyro_glow.transforms import (
    ActNorm,
    AffineCoupling,
    InvertibleConv1x1,
    Squeeze,
    forward_and_log_det,
)

IMAGE = (3, 8, 8)


def _pair(shape=IMAGE, **kwargs):
    """A plain Glow and a memory-saving one with the same parameters, perturbed away from the
    identity, float64, ActNorm not yet initialised."""
    torch.manual_seed(0)
    plain = glow(shape, **kwargs).double()
    torch.manual_seed(0)
    saving = glow(shape, memory_saving=True, **kwargs).double()
    torch.manual_seed(1)
    perturb_(plain)
    torch.manual_seed(1)
    perturb_(saving)
    return plain, saving


def _gradients(flow, x):
    flow.zero_grad()
    (-flow.log_prob(x).mean()).backward()
    return [p.grad.clone() for p in flow.parameters()]


def test_every_glow_step_is_wrapped_and_parameters_are_shared():
    plain, saving = _pair(levels=2, steps=3, hidden=8)
    steps = [m for m in saving.modules() if isinstance(m, MemorySavingStep)]
    assert len(steps) == 2 * 3
    assert not any(isinstance(m, MemorySavingStep) for m in plain.modules())
    for a, b in zip(plain.parameters(), saving.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "shape, kwargs", [(IMAGE, dict(levels=2, steps=2, hidden=8)), ((4,), dict(steps=3, hidden=8))]
)
def test_gradients_equal_the_plain_mode(shape, kwargs):
    plain, saving = _pair(shape, **kwargs)
    x = torch.rand((6,) + shape, dtype=torch.float64)
    # The first batch initialises ActNorm on both sides; then a second, different batch.
    for batch in (x, x.flip(0) * 0.5 + 0.2):
        log_p_plain, log_p_saving = plain.log_prob(batch), saving.log_prob(batch)
        torch.testing.assert_close(log_p_saving, log_p_plain, rtol=1e-12, atol=1e-12)
        grads_plain, grads_saving = _gradients(plain, batch), _gradients(saving, batch)
        assert any(g.abs().max() > 0 for g in grads_plain)
        for a, b in zip(grads_plain, grads_saving, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_generative_direction_gradients_equal_the_plain_mode():
    """A guide's direction: gradients of a function of samples, through forward maps."""
    plain, saving = _pair(levels=2, steps=2, hidden=8)
    x = torch.rand((6,) + IMAGE, dtype=torch.float64)
    plain.log_prob(x), saving.log_prob(x)  # ActNorm initialisation
    z = torch.randn((5,) + IMAGE, dtype=torch.float64)
    values = []
    for flow in (plain, saving):
        flow.zero_grad()
        y, log_det = forward_and_log_det(flow.transform, z)
        (y.square().sum() + log_det.sum()).backward()
        values.append([p.grad.clone() for p in flow.parameters()])
    for a, b in zip(*values, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_activations_are_not_kept_for_backward():
    """The bytes autograd saves for backward: memory saving keeps a small fraction."""
    plain, saving = _pair(levels=2, steps=4, hidden=32)
    x = torch.rand((8,) + IMAGE, dtype=torch.float64)
    plain.log_prob(x), saving.log_prob(x)  # ActNorm initialisation
    saved = {}
    for name, flow in (("plain", plain), ("saving", saving)):
        sizes = []

        def pack(tensor, sizes=sizes):
            sizes.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = -flow.log_prob(x).mean()
        loss.backward()
        saved[name] = sum(sizes)
    assert saved["saving"] < 0.25 * saved["plain"]


def test_first_batch_initialises_actnorm_as_the_plain_mode():
    plain, saving = _pair(levels=2, steps=2, hidden=8)
    x = torch.rand((6,) + IMAGE, dtype=torch.float64)
    (-plain.log_prob(x).mean()).backward()
    (-saving.log_prob(x).mean()).backward()
    # Each saving step initialises its ActNorm, then runs fused (LinearPairs): the next
    # step's ActNorm sees its input up to rounding, where the plain mode's first pass (all of
    # it before any initialisation) runs layer by layer.
    for a, b in zip(plain.parameters(), saving.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-10, atol=1e-12)


def test_sampling_and_evaluation_match_without_autograd():
    plain, saving = _pair(levels=2, steps=2, hidden=8)
    x = torch.rand((6,) + IMAGE, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(saving.log_prob(x), plain.log_prob(x))
        torch.manual_seed(3)
        a = plain.sample(4, temperature=0.7)
        torch.manual_seed(3)
        b = saving.sample(4, temperature=0.7)
    torch.testing.assert_close(b, a)


def test_bad_arguments():
    with pytest.raises(TypeError, match="ComposeTransformModule"):
        memory_saving([Squeeze()])
    with pytest.raises(TypeError, match="non-empty list"):
        MemorySavingStep([])
    vector_and_image = [ActNorm(4, event_dim=1), InvertibleConv1x1(4, event_dim=3)]
    with pytest.raises(ValueError, match="event_dim"):
        MemorySavingStep(vector_and_image)


def test_memory_saving_leaves_other_layers_alone():
    parts = [Squeeze(), AffineCoupling(12, 8), InvertibleConv1x1(12), ActNorm(12), Squeeze()]
    wrapped = memory_saving(ComposeTransformModule(parts))
    kinds = [type(part) for part in wrapped.parts]
    assert kinds == [Squeeze, MemorySavingStep, Squeeze]


def test_pyro_transformed_distribution_path_matches_the_plain_mode():
    """SVI's path: ``flow().log_prob`` (layer caches, Pyro's bookkeeping) under memory saving."""
    plain, saving = _pair(levels=2, steps=2, hidden=8)
    x = torch.rand((6,) + IMAGE, dtype=torch.float64)
    grads = []
    for flow in (plain, saving):
        flow.log_prob(x)  # ActNorm initialisation
        flow.zero_grad()
        (-flow().log_prob(x).mean()).backward()
        grads.append([p.grad.clone() for p in flow.parameters()])
    torch.testing.assert_close(saving().log_prob(x), plain().log_prob(x))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
