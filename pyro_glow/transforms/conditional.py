"""ConditionalAffineCoupling: a vector affine coupling whose network also reads a context."""

from __future__ import annotations

import torch
from pyro.distributions.conditional import ConditionalTransformModule

from ..nets import coupling_mlp
from .base import FlowTransform, check_tensor, soft_clamp


class ConditionalAffineCoupling(ConditionalTransformModule):
    r"""Affine coupling of vectors conditioned on a context :math:`h` (an amortized guide's
    encoder output, a class embedding, ...).

    ``condition(h)`` returns the bijection (a :class:`~pyro_glow.transforms.FlowTransform`)

    .. math:: y_a = x_a, \qquad y_b = x_b \odot \exp(s(x_a, h)) + t(x_a, h),
       \qquad \log|\det J| = \sum s(x_a, h),

    with :math:`x_a` the first ``D // 2`` coordinates and :math:`x_b` the rest (swapped with
    ``parity=1``), :math:`(t, \tilde s)` from one MLP on the concatenation
    :math:`[x_a, h]` and :math:`s = c \tanh(\tilde s / c)` (``scale_bound``). The MLP's last
    layer is zero-initialised: every conditioned map starts as the identity.

    Shapes: ``x`` is ``[..., D]`` and the context ``[..., context_features]``; their batch
    shapes broadcast (one context per data point serves ``k`` samples of shape ``[k, N, D]``).
    Use it inside ``pyro.distributions.ConditionalTransformedDistribution`` or call
    ``condition`` yourself and build a ``TransformedDistribution``.

    Example:
        >>> layer = ConditionalAffineCoupling(4, context_features=3, hidden=8)
        >>> x, h = torch.randn(5, 4), torch.randn(5, 3)
        >>> torch.equal(layer.condition(h)(x), x)   # the identity at initialisation
        True

    References: Dinh et al., Real NVP, arXiv:1605.08803; conditional flows as amortized
    posteriors: Kingma et al., IAF, arXiv:1606.04934 (the context ``h`` from the encoder).

    Args:
        features: coordinates ``D`` of ``x`` (at least 2).
        context_features: size of the context's last dimension.
        hidden: width of the two hidden layers of the MLP.
        parity: 0 or 1, which half is transformed.
        scale_bound: bound ``c`` of the soft-clamped log-scale.
    """

    def __init__(
        self,
        features: int,
        context_features: int,
        hidden: int = 64,
        parity: int = 0,
        scale_bound: float = 2.0,
    ) -> None:
        super().__init__()
        for name, value, least in (
            ("features", features, 2),
            ("context_features", context_features, 1),
            ("hidden", hidden, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(
                    f"ConditionalAffineCoupling: {name} must be an int >= {least}; got {value!r}"
                )
        if parity not in (0, 1):
            raise ValueError(f"ConditionalAffineCoupling: parity must be 0 or 1; got {parity!r}")
        if not scale_bound > 0:
            raise ValueError(
                f"ConditionalAffineCoupling: scale_bound must be positive; got {scale_bound!r}"
            )
        self.features = features
        self.context_features = context_features
        self.hidden = hidden
        self.parity = parity
        self.scale_bound = scale_bound
        index = torch.arange(features)
        first, second = index[: features // 2], index[features // 2 :]
        cond_index, trans_index = (first, second) if parity == 0 else (second, first)
        self.register_buffer("cond_index", cond_index)
        self.register_buffer("trans_index", trans_index)
        self.register_buffer("merge_index", torch.argsort(torch.cat([cond_index, trans_index])))
        self.net = coupling_mlp(len(cond_index) + context_features, hidden, 2 * len(trans_index))

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, context_features={self.context_features}, "
            f"hidden={self.hidden}, parity={self.parity}, scale_bound={self.scale_bound}"
        )

    def condition(self, context: torch.Tensor) -> ConditionedAffineCoupling:
        """The coupling with ``context`` fixed: a bijection of ``[..., D]``."""
        check_tensor(context, 1, "ConditionalAffineCoupling", "context")
        if context.shape[-1] != self.context_features:
            raise ValueError(
                f"ConditionalAffineCoupling(context_features={self.context_features}): context "
                f"of shape {list(context.shape)} has {context.shape[-1]} features in its last "
                "dimension"
            )
        return ConditionedAffineCoupling(self, context)


class ConditionedAffineCoupling(FlowTransform):
    """A :class:`ConditionalAffineCoupling` with its context fixed (made by ``condition``)."""

    def __init__(self, coupling: ConditionalAffineCoupling, context: torch.Tensor) -> None:
        super().__init__(event_dim=1)
        self.coupling = coupling
        self.context = context

    def _check_input(self, x: torch.Tensor, name: str) -> None:
        super()._check_input(x, name)
        self._check_channels(x, name, self.coupling.features)

    def _couple(self, x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        coupling = self.coupling
        batch_shape = torch.broadcast_shapes(x.shape[:-1], self.context.shape[:-1])
        x = x.expand(batch_shape + x.shape[-1:])
        context = self.context.to(x.dtype).expand(batch_shape + self.context.shape[-1:])
        x_cond, x_trans = x[..., coupling.cond_index], x[..., coupling.trans_index]
        out = coupling.net(torch.cat([x_cond, context], dim=-1))
        shift, raw = out.chunk(2, dim=-1)
        log_scale = soft_clamp(raw, coupling.scale_bound)
        if inverse:
            y_trans = (x_trans - shift) * torch.exp(-log_scale)
        else:
            y_trans = torch.addcmul(shift, x_trans, log_scale.exp())
        y = torch.cat([x_cond, y_trans], dim=-1)[..., coupling.merge_index]
        return y, log_scale.sum(-1)

    def _forward_and_log_det(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._couple(x, inverse=False)

    def _inverse_and_log_det(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._couple(y, inverse=True)
