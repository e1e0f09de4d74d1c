"""Shared helpers of the test suite."""

import importlib.util
from pathlib import Path
from types import ModuleType

import pyro
import pytest
import torch

# Test tensors are small: one thread per xdist worker is much faster than oversubscribed cores.
torch.set_num_threads(1)


ROOT = Path(__file__).resolve().parents[1]


def load_script(folder: str, name: str) -> ModuleType:
    """Import ``ROOT/folder/name.py`` (an example or a benchmark, not a package module)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
