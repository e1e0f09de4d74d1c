"""Shared helpers of the test suite."""

import pyro
import pytest
import torch


def perturb_(module: torch.nn.Module, scale: float = 0.05) -> None:
    """Add Gaussian noise to every parameter, so zero-initialised networks stop being the
    identity and a wrong formula cannot hide behind a zero."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn_like(parameter))


@pytest.fixture(autouse=True)
def _seed_and_clean():
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    yield
