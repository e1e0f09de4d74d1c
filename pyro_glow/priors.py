"""Base distributions of a flow: nn.Modules whose call returns a Pyro distribution.

Each prior has ``event_shape == shape`` (the data's own shape: the multi-scale Glow keeps an
image-shaped latent) and a ``sample(sample_shape, temperature)`` that scales the spread by
``temperature`` (Glow's sampling temperature; 0 gives the mode of each component).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import Distribution

PRIORS = ("normal", "diag", "mixture")


def _as_shape(shape: Sequence[int] | int, owner: str) -> torch.Size:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not shape or not all(isinstance(n, int) and n >= 1 for n in shape):
        raise ValueError(
            f"{owner}: shape must be a non-empty sequence of positive ints; got {shape!r}"
        )
    return torch.Size(shape)


def _check_temperature(temperature: float) -> None:
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0; got {temperature!r}")


class StandardNormal(nn.Module):
    r"""The fixed prior :math:`\mathcal{N}(0, I)` over ``shape``.

    Example:
        >>> StandardNormal((3, 8, 8))().event_shape
        torch.Size([3, 8, 8])
    """

    def __init__(self, shape: Sequence[int] | int) -> None:
        super().__init__()
        self.shape = _as_shape(shape, "StandardNormal")
        self.register_buffer("zeros", torch.zeros(self.shape))

    def forward(self) -> Distribution:
        return dist.Normal(self.zeros, torch.ones_like(self.zeros)).to_event(len(self.shape))

    def sample(self, sample_shape: Sequence[int] = (), temperature: float = 1.0) -> torch.Tensor:
        _check_temperature(temperature)
        return temperature * torch.randn(
            tuple(sample_shape) + self.shape, device=self.zeros.device, dtype=self.zeros.dtype
        )


class DiagNormal(nn.Module):
    r"""A learnable diagonal normal :math:`\mathcal{N}(\mu, \operatorname{diag}(e^{2\rho}))` over
    ``shape`` (Glow's learned top prior); starts as :math:`\mathcal{N}(0, I)`.

    Example:
        >>> DiagNormal(2)().event_shape
        torch.Size([2])
    """

    def __init__(self, shape: Sequence[int] | int) -> None:
        super().__init__()
        self.shape = _as_shape(shape, "DiagNormal")
        self.loc = nn.Parameter(torch.zeros(self.shape))
        self.log_scale = nn.Parameter(torch.zeros(self.shape))

    def forward(self) -> Distribution:
        return dist.Normal(self.loc, self.log_scale.exp()).to_event(len(self.shape))

    def sample(self, sample_shape: Sequence[int] = (), temperature: float = 1.0) -> torch.Tensor:
        _check_temperature(temperature)
        noise = torch.randn(
            tuple(sample_shape) + self.shape, device=self.loc.device, dtype=self.loc.dtype
        )
        return self.loc + temperature * self.log_scale.exp() * noise


class GaussianMixture(nn.Module):
    r"""A learnable mixture of ``components`` diagonal normals over ``shape``:

    .. math:: p(z) = \sum_k \pi_k \, \mathcal{N}(z; \mu_k, \operatorname{diag}(e^{2\rho_k})),
       \qquad \pi = \operatorname{softmax}(\text{logits}).

    The distribution is Pyro's ``MixtureOfDiagNormals`` over the flattened shape (it has
    ``rsample``, which ``MixtureSameFamily`` lacks), reshaped to ``shape``. Means start as
    standard normal draws, scales at 1, weights equal. The course's two-moons figure uses
    ``components=2``.

    Example:
        >>> GaussianMixture((2,), components=2)().event_shape
        torch.Size([2])
    """

    def __init__(self, shape: Sequence[int] | int, components: int = 2) -> None:
        super().__init__()
        self.shape = _as_shape(shape, "GaussianMixture")
        if not isinstance(components, int) or components < 1:
            raise ValueError(
                f"GaussianMixture: components must be a positive int; got {components!r}"
            )
        self.components = components
        size = math.prod(self.shape)
        self.logits = nn.Parameter(torch.zeros(components))
        self.locs = nn.Parameter(torch.randn(components, size))
        self.log_scales = nn.Parameter(torch.zeros(components, size))

    def forward(self) -> Distribution:
        flat = dist.MixtureOfDiagNormals(self.locs, self.log_scales.exp(), self.logits)
        if len(self.shape) == 1:
            return flat
        reshape = dist.transforms.ReshapeTransform(flat.event_shape, self.shape)
        return dist.TransformedDistribution(flat, [reshape])

    def sample(self, sample_shape: Sequence[int] = (), temperature: float = 1.0) -> torch.Tensor:
        _check_temperature(temperature)
        sample_shape = tuple(sample_shape)
        which = torch.distributions.Categorical(logits=self.logits.detach()).sample(sample_shape)
        noise = torch.randn(
            sample_shape + self.locs.shape[1:], device=self.locs.device, dtype=self.locs.dtype
        )
        flat = self.locs[which] + temperature * self.log_scales[which].exp() * noise
        return flat.reshape(sample_shape + self.shape)


def make_prior(name: str, shape: Sequence[int] | int, components: int = 2) -> nn.Module:
    """The prior called ``name`` (``"normal"``, ``"diag"`` or ``"mixture"``) over ``shape``."""
    if name == "normal":
        return StandardNormal(shape)
    if name == "diag":
        return DiagNormal(shape)
    if name == "mixture":
        return GaussianMixture(shape, components)
    raise ValueError(f"unknown prior {name!r}; choose one of {PRIORS}")
