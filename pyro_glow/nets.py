"""Conditioner networks: the MLP used by vector couplings and Glow's convolutional net."""

from __future__ import annotations

from torch import nn


def zero_init(layer: nn.Linear | nn.Conv2d) -> nn.Linear | nn.Conv2d:
    """Zero a layer's weight and bias, so that the flow layer it ends starts as the identity."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def coupling_mlp(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    """``Linear - ReLU - Linear - ReLU - Linear`` with a zero-initialised last layer."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        zero_init(nn.Linear(hidden, out_features)),
    )


def coupling_convnet(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """Glow's coupling network: ``conv3x3 - ReLU - conv1x1 - ReLU - conv3x3`` (last one zeroed).

    Kingma & Dhariwal, arXiv:1807.03039, section 3.3 (``hidden=512`` in the paper).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, kernel_size=1),
        nn.ReLU(),
        zero_init(nn.Conv2d(hidden, out_channels, kernel_size=3, padding=1)),
    )
