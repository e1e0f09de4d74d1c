"""ActNorm: Glow's per-channel affine layer with data-dependent initialisation."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import FlowTransform, batch_shape_of


class ActNorm(FlowTransform):
    r"""Per-channel affine map with data-dependent initialisation (Glow's activation norm).

    Generative map (latent :math:`z` to data :math:`x`), per channel :math:`c`:

    .. math:: x_c = z_c \exp(s_c) + b_c,
       \qquad \log|\det J| = N \sum_c s_c,

    with :math:`N = H W` for images and :math:`N = 1` for vectors.

    The first batch that passes through the layer in *either* direction sets :math:`s, b` so
    that the layer's output has zero mean and unit variance per channel: in the normalizing
    direction (a density fitted to data) that is the latent, in the generative direction (a
    variational guide) the data side. A channel whose variance is zero keeps unit scale (no
    NaN). A first call with a single sample gives no statistics: the layer then keeps the
    identity as its initialisation (Pyro's ``AutoNormalizingFlow`` draws one latent at a time,
    and a later batched draw must not overwrite what was trained since); an empty batch leaves
    the layer uninitialised, and a first batch with NaN or Inf values raises ``ValueError``.
    Whether the layer is initialised is a buffer, so a model restored from a ``state_dict``
    never re-initialises.

    The parameters are one tensor, ``affine = stack([s, b])`` of shape ``[2, C, 1, 1]`` (images)
    or ``[2, D]`` (vectors), read through the views ``log_scale`` and ``bias``: one
    ``pyro.param`` site per layer instead of two, which is what a training step pays for
    under SVI (docs/benchmarks.md). ``state_dict`` entries of the earlier two-tensor layout
    (``log_scale``, ``bias``) still load.

    Shapes: ``event_dim=3``: ``[..., C, H, W]``; ``event_dim=1``: ``[..., D]``; any batch shape.

    Example:
        >>> layer = ActNorm(3)
        >>> x = 5 + 3 * torch.randn(64, 3, 8, 8)
        >>> z = layer.inv(x)          # first batch: initialises, z is standardised
        >>> bool(abs(z.mean()) < 1e-4)
        True

    Reference: Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions",
    arXiv:1807.03039, section 3.1.

    Args:
        features: number of channels ``C`` (images) or of coordinates ``D`` (vectors).
        event_dim: 3 for images, 1 for vectors.
        cache_size: 1 (default) keeps the last result for Pyro's log-det query; 0 disables it.
    """

    def __init__(self, features: int, event_dim: int = 3, cache_size: int = 1) -> None:
        super().__init__(event_dim=event_dim, cache_size=cache_size)
        if not isinstance(features, int) or features < 1:
            raise ValueError(f"ActNorm: features must be a positive int; got {features!r}")
        self.features = features
        param_shape = (features, 1, 1) if event_dim == 3 else (features,)
        self.affine = nn.Parameter(torch.zeros(2, *param_shape))
        self.register_buffer("initialized", torch.tensor(False))
        self._known_initialized = False

    def extra_repr(self) -> str:
        return f"features={self.features}, event_dim={self._event_dim}"

    def _check_input(self, x: torch.Tensor, name: str) -> None:
        super()._check_input(x, name)
        self._check_channels(x, name, self.features)

    def _is_initialized(self) -> bool:
        # The Python flag avoids a device sync per call once the buffer says True.
        if not self._known_initialized:
            self._known_initialized = bool(self.initialized)
        return self._known_initialized

    @property
    def log_scale(self) -> torch.Tensor:
        """:math:`s`, per channel (a view of ``affine``)."""
        return self.affine[0]

    @property
    def bias(self) -> torch.Tensor:
        """:math:`b`, per channel (a view of ``affine``)."""
        return self.affine[1]

    @staticmethod
    def upgrade_state_dict(state_dict: dict[str, Any], prefix: str = "") -> None:
        """Convert, in place, the entries of the earlier two-tensor layout under ``prefix``."""
        old_keys = (prefix + "log_scale", prefix + "bias")
        if prefix + "affine" not in state_dict and all(key in state_dict for key in old_keys):
            state_dict[prefix + "affine"] = torch.stack([state_dict.pop(k) for k in old_keys])

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        self.upgrade_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._known_initialized = False

    def _channel_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        channel_dim = x.dim() - 3 if self._event_dim == 3 else x.dim() - 1
        per_channel = x.detach().movedim(channel_dim, 0).reshape(self.features, -1)
        var, mean = torch.var_mean(per_channel, dim=1, unbiased=False)
        std = var.sqrt()
        tiny = torch.finfo(x.dtype).eps * (1.0 + mean.abs())
        std = torch.where(std > tiny, std, torch.ones_like(std))
        shape = self.affine.shape[1:]
        return mean.reshape(shape), std.reshape(shape)

    def _maybe_initialize(self, x: torch.Tensor, generative: bool) -> None:
        if self._is_initialized():
            return
        samples = batch_shape_of(x, self._event_dim).numel()
        if samples == 0:
            return  # an empty batch says nothing: the layer waits for real data
        with torch.no_grad():
            if samples < 2:
                # No statistics from one sample: the identity becomes the initialisation, so
                # a later batched call cannot overwrite parameters trained in the meantime.
                self.initialized.fill_(True)
                self._known_initialized = True
                return
            mean, std = self._channel_stats(x)
            if not bool(torch.isfinite(mean).all() and torch.isfinite(std).all()):
                raise ValueError(
                    f"ActNorm(features={self.features}): the first batch, which sets the "
                    "data-dependent initialisation, contains NaN or Inf values; the layer "
                    "stays uninitialised"
                )
            if generative:
                self.affine.copy_(torch.stack([-std.log(), -mean / std]))
            else:
                self.affine.copy_(torch.stack([std.log(), mean]))
            self.initialized.fill_(True)
        self._known_initialized = True

    def _log_det(self, x: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        pixels = x.shape[-1] * x.shape[-2] if self._event_dim == 3 else 1
        log_det = log_scale.sum() * pixels
        return log_det.expand(batch_shape_of(x, self._event_dim))

    def _forward_and_log_det(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._maybe_initialize(x, generative=True)
        log_scale, bias = self.affine.unbind(0)  # one backward op for both views
        y = torch.addcmul(bias, x, log_scale.exp())
        return y, self._log_det(x, log_scale)

    def _inverse_and_log_det(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._maybe_initialize(y, generative=False)
        log_scale, bias = self.affine.unbind(0)
        x = (y - bias) * torch.exp(-log_scale)
        return x, self._log_det(y, log_scale)
