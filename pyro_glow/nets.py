"""Conditioner networks: the MLP used by vector couplings and Glow's convolutional net."""

from __future__ import annotations

import torch
from torch import nn


def zero_init(layer: nn.Linear | nn.Conv2d) -> nn.Linear | nn.Conv2d:
    """Zero a layer's weight and bias, so that the flow layer it ends starts as the identity."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


ACTIVATIONS = ("relu", "silu")


def check_activation(owner: str, activation: object) -> None:
    """``ValueError`` unless ``activation`` names one of :data:`ACTIVATIONS`."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"{owner}: activation must be one of {ACTIVATIONS}; got {activation!r}")


def _activation(name: str, inplace: bool = False) -> nn.Module:
    return nn.ReLU(inplace=inplace) if name == "relu" else nn.SiLU()


def coupling_mlp(
    in_features: int, hidden: int, out_features: int, activation: str = "relu"
) -> nn.Sequential:
    """``Linear - act - Linear - act - Linear`` with a zero-initialised last layer; ``act`` is
    ReLU or SiLU (``x * sigmoid(x)``, Ramachandran et al., arXiv:1710.05941; smooth, and
    measured against ReLU on the guide benchmark in :mod:`pyro_glow.guides`)."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        _activation(activation),
        nn.Linear(hidden, hidden),
        _activation(activation),
        zero_init(nn.Linear(hidden, out_features)),
    )


def coupling_convnet(
    in_channels: int, hidden: int, out_channels: int, activation: str = "relu"
) -> nn.Sequential:
    """Glow's coupling network: ``conv3x3 - ReLU - conv1x1 - ReLU - conv3x3`` (last one zeroed;
    ``activation="silu"`` puts SiLU in place of the ReLUs).

    Callers feed channels-last inputs (:func:`channels_last`): on the CPU oneDNN's
    convolutions, forward and backward, run up to 1.35x as fast in that layout at Glow's
    shapes (most at 16x16, little at 4x4), and they take that layout from the input alone.
    The weights stay contiguous: Pyro's param store keeps a ``.contiguous()`` copy of any
    other parameter, and SVI would then train the copy, never the network's own weight
    (``tests/test_svi.py`` checks that every parameter moves). The ReLUs work in place (a
    convolution's backward needs its input, never its output), which spares one hidden-size
    allocation each.

    Kingma & Dhariwal, arXiv:1807.03039, section 3.3 (``hidden=512`` in the paper).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1),
        _activation(activation, inplace=True),
        nn.Conv2d(hidden, hidden, kernel_size=1),
        _activation(activation, inplace=True),
        zero_init(nn.Conv2d(hidden, out_channels, kernel_size=3, padding=1)),
    )


def channels_last(images: torch.Tensor) -> torch.Tensor:
    """``images`` (``[N, C, H, W]``) in the channels-last layout the conv nets are fastest on
    (a no-op when already so; the values and the logical shape are unchanged)."""
    return images.contiguous(memory_format=torch.channels_last)
