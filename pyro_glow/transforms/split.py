"""Split: Glow's factor-out with a learned conditional prior, as one bijection."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Transform

from ..nets import zero_init
from .base import FlowTransform, batch_shape_of, flatten_batch, in_dtype, soft_clamp
from .compose import forward_and_log_det, inverse_and_log_det


class Split(FlowTransform):
    r"""Glow's split (factor-out) with a learned prior :math:`p(z_2 \mid z_1)`, as a bijection.

    The channels are halved, :math:`h = (h_1, h_2)` with ``C - C // 2`` kept channels in
    :math:`h_1` and ``C // 2`` factored-out ones in :math:`h_2`. A zero-initialised 3x3
    convolution of :math:`h_1` gives a mean :math:`m` and a log-scale :math:`\ell`
    (soft-clamped to ``(-scale_bound, scale_bound)``); the rest of the model, ``inner``, acts on
    the kept half only. Normalizing direction:

    .. math:: z_1 = \mathrm{inner}^{-1}(h_1), \qquad z_2 = (h_2 - m(h_1)) e^{-\ell(h_1)},

    generative direction :math:`h_1 = \mathrm{inner}(z_1)`,
    :math:`h_2 = z_2 e^{\ell(h_1)} + m(h_1)`, and

    .. math:: \log|\det J| = \log|\det J_{\mathrm{inner}}| + \sum \ell(h_1).

    With a standard normal on :math:`z_2` this is exactly Glow's learned split prior
    :math:`h_2 \sim \mathcal{N}(m(h_1), e^{2\ell(h_1)})`; written as a bijection, the whole
    multi-scale model keeps an image-shaped latent and stays one ``TransformedDistribution``.

    Shapes: ``[..., C, H, W] -> [..., C, H, W]``; ``inner`` maps ``[..., C - C // 2, H, W]``
    to itself.

    Example:
        >>> split = Split(4)
        >>> x = torch.randn(3, 4, 8, 8)
        >>> torch.equal(split(x), x)   # zero-initialised prior: the identity at first
        True

    Reference: Kingma & Dhariwal, Glow, arXiv:1807.03039 (multi-scale architecture, learned
    prior); Dinh et al., Real NVP, arXiv:1605.08803, section 3.6 (factoring out).

    Args:
        features: channels ``C`` of the input (at least 2).
        inner: transform of the kept half (the remaining levels), or ``None`` for the identity.
        scale_bound: bound of the soft-clamped log-scale of the conditional prior.
        cache_size: 1 (default) keeps the last result for Pyro's log-det query; 0 disables it.
    """

    def __init__(
        self,
        features: int,
        inner: Transform | None = None,
        scale_bound: float = 6.0,
        cache_size: int = 1,
    ) -> None:
        super().__init__(event_dim=3, cache_size=cache_size)
        if not isinstance(features, int) or features < 2:
            raise ValueError(f"Split: features must be an int >= 2 to halve; got {features!r}")
        if inner is not None:
            if not isinstance(inner, Transform):
                raise TypeError(f"Split: inner must be a Transform; got {type(inner).__name__}")
            if inner.domain.event_dim != 3 or inner.codomain.event_dim != 3:
                raise ValueError("Split: inner must map images [..., C, H, W] (event_dim 3)")
        if not scale_bound > 0:
            raise ValueError(f"Split: scale_bound must be positive; got {scale_bound!r}")
        self.features = features
        self.kept = features - features // 2
        self.inner = inner
        self.scale_bound = scale_bound
        self.prior_net = zero_init(nn.Conv2d(self.kept, 2 * (features // 2), 3, padding=1))

    def extra_repr(self) -> str:
        return f"features={self.features}, scale_bound={self.scale_bound}"

    def _check_input(self, x: torch.Tensor, name: str) -> None:
        super()._check_input(x, name)
        self._check_channels(x, name, self.features)

    def _conditional_prior(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = in_dtype(self.prior_net(flatten_batch(kept, 3)), kept.dtype)
        if kept.dim() != 4:
            out = out.reshape(batch_shape_of(kept, 3) + out.shape[1:])
        mean, raw = out.chunk(2, dim=-3)
        return mean, soft_clamp(raw, self.scale_bound)

    def _forward_and_log_det(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_kept, z_out = z[..., : self.kept, :, :], z[..., self.kept :, :, :]
        if self.inner is None:
            h_kept, log_det = z_kept, z.new_zeros(batch_shape_of(z, 3))
        else:
            h_kept, log_det = forward_and_log_det(self.inner, z_kept)
        mean, log_scale = self._conditional_prior(h_kept)
        h_out = torch.addcmul(mean, z_out, log_scale.exp())
        return torch.cat([h_kept, h_out], dim=-3), log_det + log_scale.sum(dim=(-3, -2, -1))

    def _inverse_and_log_det(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h_kept, h_out = h[..., : self.kept, :, :], h[..., self.kept :, :, :]
        if self.inner is None:
            z_kept, log_det = h_kept, h.new_zeros(batch_shape_of(h, 3))
        else:
            z_kept, log_det = inverse_and_log_det(self.inner, h_kept)
        mean, log_scale = self._conditional_prior(h_kept)
        z_out = (h_out - mean) * torch.exp(-log_scale)
        return torch.cat([z_kept, z_out], dim=-3), log_det + log_scale.sum(dim=(-3, -2, -1))
