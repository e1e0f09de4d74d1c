"""Rescale: NICE's learnable diagonal scaling layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import FlowTransform, batch_shape_of


class Rescale(FlowTransform):
    r"""NICE's diagonal rescaling :math:`x = z \odot e^{s}`, one learnable :math:`s_i` per element.

    .. math:: \log|\det J| = \sum_i s_i.

    Additive couplings preserve volume, so a NICE model of couplings alone has a constant
    density scale; this layer, the last of NICE's generative map (the first of its
    normalizing map), lets the model stretch or shrink each coordinate. The scale
    :math:`S_{ii} = e^{s_i} > 0` is parametrised by its logarithm, so it stays positive
    and the map invertible for any parameters; it starts at ``log_scale`` (default 0: the
    identity). The inverse is :math:`z = x \odot e^{-s}`.

    Unlike :class:`~pyro_glow.transforms.ElementwiseAffine`, it has no shift (the couplings
    provide shifts), following the paper.

    Shapes: ``[..., *shape]`` to itself; ``shape`` is ``(D,)`` or ``(C, H, W)``.

    Example:
        >>> layer = Rescale((2,), log_scale=torch.tensor([0.0, 1.0]))
        >>> [round(v, 4) for v in layer(torch.ones(2)).tolist()]
        [1.0, 2.7183]
        >>> layer.log_abs_det_jacobian(torch.ones(3, 2), layer(torch.ones(3, 2))).tolist()
        [1.0, 1.0, 1.0]

    Reference: Dinh, Krueger & Bengio, NICE, arXiv:1410.8516, section 3.3 (allowing
    rescaling).

    Args:
        shape: event shape, ``(D,)`` for vectors or ``(C, H, W)`` for images.
        log_scale: initial log-scale :math:`s` (a number or a tensor broadcasting to
            ``shape``; default 0).
        cache_size: 1 (default) keeps the last result for Pyro's log-det query; 0 disables it.
    """

    def __init__(
        self,
        shape: Sequence[int],
        log_scale: torch.Tensor | float = 0.0,
        cache_size: int = 1,
    ) -> None:
        shape = tuple(shape)
        if len(shape) not in (1, 3) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape
        ):
            raise ValueError(
                f"Rescale: shape must be (D,) or (C, H, W) of positive ints; got {shape!r}"
            )
        super().__init__(event_dim=len(shape), cache_size=cache_size)
        self.shape = shape
        initial = torch.as_tensor(log_scale, dtype=torch.get_default_dtype())
        try:
            initial = initial.expand(shape).clone()
        except RuntimeError as error:
            raise ValueError(
                f"Rescale: log_scale of shape {list(initial.shape)} does not broadcast to the "
                f"event shape {list(shape)}"
            ) from error
        self.log_scale = nn.Parameter(initial)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"

    def _check_input(self, x: torch.Tensor, name: str) -> None:
        super()._check_input(x, name)
        if tuple(x.shape[x.dim() - len(self.shape) :]) != self.shape:
            raise ValueError(
                f"Rescale(shape={self.shape}): {name} of shape {list(x.shape)} does not end "
                f"with the event shape {list(self.shape)}"
            )

    def _log_det(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_scale.sum().expand(batch_shape_of(x, self._event_dim))

    def _forward_and_log_det(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * self.log_scale.exp(), self._log_det(x)

    def _inverse_and_log_det(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return y * torch.exp(-self.log_scale), self._log_det(y)
