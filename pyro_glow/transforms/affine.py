"""ElementwiseAffine: a fixed or learned element-wise affine map."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import FlowTransform, batch_shape_of


class ElementwiseAffine(FlowTransform):
    r"""Element-wise affine map :math:`x = z \odot e^{s} + b` over an event of ``shape``.

    .. math:: \log|\det J| = \sum_i s_i.

    With ``learnable=False`` the parameters are buffers: the layer then carries a fixed
    change of units inside a flow, for example the standardisation of two-moons data or the
    pixel scaling of dequantized images, so that the flow's ``log_prob`` and ``sample`` are in
    the data's own units and the scaling is saved with the model. With ``learnable=True``
    it is the course's warm-up model that learns :math:`\mathcal{N}(\mu, \sigma)` from
    :math:`\mathcal{N}(0, 1)`.

    Shapes: ``[..., *shape]``; ``loc`` and ``log_scale`` broadcast to ``shape``.

    Example:
        >>> layer = ElementwiseAffine((2,), loc=torch.tensor([1.0, -1.0]),
        ...                           log_scale=torch.tensor([0.0, 1.0]))
        >>> layer(torch.zeros(2)).tolist()
        [1.0, -1.0]

    Reference: Dinh et al., NICE, arXiv:1410.8516 (the diagonal scaling layer).

    Args:
        shape: event shape (``(D,)`` or ``(C, H, W)``).
        loc: initial shift ``b`` (default 0).
        log_scale: initial log-scale ``s`` (default 0).
        learnable: parameters (True) or fixed buffers (False).
        cache_size: 1 (default) keeps the last result for Pyro's log-det query; 0 disables it.
    """

    def __init__(
        self,
        shape: Sequence[int],
        loc: torch.Tensor | float = 0.0,
        log_scale: torch.Tensor | float = 0.0,
        learnable: bool = True,
        cache_size: int = 1,
    ) -> None:
        shape = tuple(shape)
        super().__init__(event_dim=len(shape), cache_size=cache_size)
        self.shape = shape
        self.learnable = learnable
        loc = torch.as_tensor(loc, dtype=torch.get_default_dtype()).expand(shape).clone()
        log_scale = torch.as_tensor(log_scale, dtype=torch.get_default_dtype())
        log_scale = log_scale.expand(shape).clone()
        if learnable:
            self.loc = nn.Parameter(loc)
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("loc", loc)
            self.register_buffer("log_scale", log_scale)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, learnable={self.learnable}"

    def _check_input(self, x: torch.Tensor, name: str) -> None:
        super()._check_input(x, name)
        if tuple(x.shape[x.dim() - len(self.shape) :]) != self.shape:
            raise ValueError(
                f"ElementwiseAffine(shape={self.shape}): {name} of shape {list(x.shape)} does "
                f"not end with the event shape {list(self.shape)}"
            )

    def _log_det(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_scale.sum().expand(batch_shape_of(x, self._event_dim))

    def _forward_and_log_det(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.addcmul(self.loc, x, self.log_scale.exp()), self._log_det(x)

    def _inverse_and_log_det(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (y - self.loc) * torch.exp(-self.log_scale), self._log_det(y)
