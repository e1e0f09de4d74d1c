"""Conditioner networks: the MLP of the vector couplings and Glow's convolutional net."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
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


class CouplingMLP(nn.Module):
    """``Linear - act - Linear - act - Linear`` whose six weights and biases live in one
    parameter, ``weights`` (flat; each layer's weight and bias are views of it); ``act`` is
    ReLU or SiLU (``x * sigmoid(x)``, Ramachandran et al., arXiv:1710.05941; smooth, and
    measured against ReLU on the guide benchmark in :mod:`pyro_glow.guides`).

    The map is ``nn.Sequential(nn.Linear(...), act, nn.Linear(...), act, nn.Linear(...))``'s,
    with the same initialisation (uniform in ``+-1/sqrt(fan_in)``, as ``nn.Linear``) except
    the last layer, which starts at zero so that the coupling it conditions starts as the
    identity. One tensor instead of six matters under Pyro: ``pyro.module`` sends every
    parameter tensor through the effect handlers as a ``pyro.param`` site on every SVI step,
    and in a 2-D flow these networks held most of the tensors (72 of the 96 of the trainer's
    moons flow, which now has 36). Shapes: ``[..., in_features] -> [..., out_features]``.

    Example:
        >>> net = CouplingMLP(1, 64, 2)
        >>> net(torch.randn(5, 1)).shape, [tuple(p.shape) for p in net.parameters()]
        (torch.Size([5, 2]), [(4418,)])

    State dicts of the earlier ``nn.Sequential`` layout (``0.weight``, ``0.bias``, ``2.weight``,
    ...) load through :meth:`upgrade_state_dict`.
    """

    def __init__(
        self, in_features: int, hidden: int, out_features: int, activation: str = "relu"
    ) -> None:
        super().__init__()
        check_activation("CouplingMLP", activation)
        sizes = {"in_features": in_features, "hidden": hidden, "out_features": out_features}
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CouplingMLP: {name} must be a positive int; got {value!r}")
        self.in_features = in_features
        self.hidden = hidden
        self.out_features = out_features
        self.activation = activation
        self.shapes = [
            (hidden, in_features),
            (hidden,),
            (hidden, hidden),
            (hidden,),
            (out_features, hidden),
            (out_features,),
        ]
        self.sizes = [math.prod(shape) for shape in self.shapes]
        self.weights = nn.Parameter(torch.zeros(sum(self.sizes)))
        with torch.no_grad():
            parts = self.weights.split(self.sizes)
            for weight, bias, fan_in in ((0, 1, in_features), (2, 3, hidden)):
                bound = 1.0 / math.sqrt(fan_in)
                parts[weight].uniform_(-bound, bound)
                parts[bias].uniform_(-bound, bound)
        self._act = F.relu if activation == "relu" else F.silu

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(weight, bias)]`` of the three layers, views of ``weights``."""
        pieces = zip(self.weights.split(self.sizes), self.shapes, strict=True)
        parts = [piece.view(shape) for piece, shape in pieces]
        return [(parts[0], parts[1]), (parts[2], parts[3]), (parts[4], parts[5])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (w1, b1), (w2, b2), (w3, b3) = self.layers()
        hidden = self._act(F.linear(x, w1, b1))
        hidden = self._act(F.linear(hidden, w2, b2))
        return F.linear(hidden, w3, b3)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, hidden={self.hidden}, "
            f"out_features={self.out_features}, activation={self.activation!r}"
        )

    @staticmethod
    def upgrade_state_dict(state_dict: dict[str, Any], prefix: str = "") -> None:
        """Convert, in place, the entries of the earlier ``nn.Sequential`` layout under
        ``prefix`` (``0.weight``, ``0.bias``, ``2.weight``, ..., ``4.bias``) to ``weights``."""
        old_keys = [f"{prefix}{index}.{kind}" for index in (0, 2, 4) for kind in ("weight", "bias")]
        if prefix + "weights" not in state_dict and all(key in state_dict for key in old_keys):
            state_dict[prefix + "weights"] = torch.cat(
                [state_dict.pop(key).reshape(-1) for key in old_keys]
            )

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        self.upgrade_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def coupling_mlp(
    in_features: int, hidden: int, out_features: int, activation: str = "relu"
) -> CouplingMLP:
    """The vector couplings' conditioner: a :class:`CouplingMLP` (three layers, the last one
    zero-initialised, one parameter tensor)."""
    return CouplingMLP(in_features, hidden, out_features, activation)


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
