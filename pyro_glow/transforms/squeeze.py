"""Squeeze and Unsqueeze: the space-to-depth reshaping of multi-scale flows."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .base import FlowTransform, batch_shape_of


def _check_image(x: torch.Tensor, owner: str, name: str, even: bool) -> None:
    if even and (x.shape[-1] % 2 or x.shape[-2] % 2):
        raise ValueError(
            f"{owner}: {name} of shape {list(x.shape)} has odd height or width "
            f"({x.shape[-2]}x{x.shape[-1]}); squeezing needs both even"
        )


def _squeezed_shape(shape: Sequence[int]) -> torch.Size:
    *batch, channels, height, width = shape
    return torch.Size((*batch, channels * 4, height // 2, width // 2))


def _unsqueezed_shape(shape: Sequence[int]) -> torch.Size:
    *batch, channels, height, width = shape
    return torch.Size((*batch, channels // 4, height * 2, width * 2))


class Squeeze(FlowTransform):
    r"""Space-to-depth: ``[..., C, H, W] -> [..., 4C, H/2, W/2]`` (its generative direction).

    Each 2x2 block of a channel becomes four channels. Channel order (locked by a known-value
    test, and the same as ``torch.nn.functional.pixel_unshuffle``): output channel
    ``4 c + 2 i + j`` holds input channel ``c`` at offset ``(i, j)`` of the block, i.e.
    ``y[4c + 2i + j, h, w] = x[c, 2h + i, 2w + j]``.

    A permutation of coordinates: :math:`\log|\det J| = 0`. ``forward_shape`` and
    ``inverse_shape`` give the shape change, so ``TransformedDistribution`` knows it.

    Example:
        >>> Squeeze()(torch.arange(4.0).reshape(1, 2, 2)).flatten().tolist()
        [0.0, 1.0, 2.0, 3.0]

    Reference: Dinh et al., Real NVP, arXiv:1605.08803, section 3.6.
    """

    def __init__(self, cache_size: int = 1) -> None:
        super().__init__(event_dim=3, cache_size=cache_size)

    def _check_input(self, x: torch.Tensor, name: str) -> None:
        super()._check_input(x, name)
        _check_image(x, type(self).__name__, name, even=name == "input")
        if name != "input" and x.shape[-3] % 4:
            raise ValueError(
                f"Squeeze: {name} of shape {list(x.shape)} has {x.shape[-3]} channels; "
                "unsqueezing needs a multiple of 4"
            )

    def forward_shape(self, shape: Sequence[int]) -> torch.Size:
        return _squeezed_shape(shape)

    def inverse_shape(self, shape: Sequence[int]) -> torch.Size:
        return _unsqueezed_shape(shape)

    def _forward_and_log_det(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.pixel_unshuffle(x, 2), x.new_zeros(batch_shape_of(x, 3))

    def _inverse_and_log_det(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.pixel_shuffle(y, 2), y.new_zeros(batch_shape_of(y, 3))


class Unsqueeze(FlowTransform):
    r"""Depth-to-space, the inverse of :class:`Squeeze`: ``[..., 4C, H, W] -> [..., C, 2H, 2W]``.

    A multi-scale level ends with it so that every level maps its input shape to itself.
    :math:`\log|\det J| = 0`.

    Example:
        >>> Unsqueeze()(torch.zeros(2, 8, 4, 4)).shape
        torch.Size([2, 2, 8, 8])

    Reference: Dinh et al., Real NVP, arXiv:1605.08803, section 3.6.
    """

    def __init__(self, cache_size: int = 1) -> None:
        super().__init__(event_dim=3, cache_size=cache_size)

    def _check_input(self, x: torch.Tensor, name: str) -> None:
        super()._check_input(x, name)
        _check_image(x, type(self).__name__, name, even=name != "input")
        if name == "input" and x.shape[-3] % 4:
            raise ValueError(
                f"Unsqueeze: {name} of shape {list(x.shape)} has {x.shape[-3]} channels; "
                "unsqueezing needs a multiple of 4"
            )

    def forward_shape(self, shape: Sequence[int]) -> torch.Size:
        return _unsqueezed_shape(shape)

    def inverse_shape(self, shape: Sequence[int]) -> torch.Size:
        return _squeezed_shape(shape)

    def _forward_and_log_det(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.pixel_shuffle(x, 2), x.new_zeros(batch_shape_of(x, 3))

    def _inverse_and_log_det(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.pixel_unshuffle(y, 2), y.new_zeros(batch_shape_of(y, 3))
