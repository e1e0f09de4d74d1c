"""AffineCoupling: Glow / RealNVP affine coupling and NICE additive coupling."""

from __future__ import annotations

import torch

from ..nets import channels_last, check_activation, coupling_convnet, coupling_mlp
from .base import FlowTransform, batch_shape_of, flatten_batch, in_dtype, soft_clamp

MASKS = ("channel", "checkerboard")


def _check_custom_mask(mask: torch.Tensor, features: object, event_dim: int) -> None:
    """``ValueError`` unless ``mask`` is a usable vector mask over ``features`` coordinates."""
    if event_dim != 1:
        raise ValueError("AffineCoupling: a tensor mask is for vectors (event_dim=1) only")
    if mask.dtype != torch.bool or tuple(mask.shape) != (features,):
        raise ValueError(
            f"AffineCoupling: a tensor mask must be boolean of shape ({features},); got dtype "
            f"{mask.dtype} and shape {list(mask.shape)}"
        )
    if bool(mask.all()) or not bool(mask.any()):
        raise ValueError("AffineCoupling: a tensor mask needs True and False coordinates")


class AffineCoupling(FlowTransform):
    r"""Affine (or additive) coupling layer with a channel or checkerboard mask.

    The input is split by a binary mask into a conditioning part :math:`x_a` (left unchanged)
    and a transformed part :math:`x_b`. The generative map is

    .. math:: y_a = x_a, \qquad y_b = x_b \odot \exp(s(x_a)) + t(x_a),
       \qquad \log|\det J| = \sum s(x_a),

    where :math:`(t, \tilde s)` come from one network and :math:`s = c \tanh(\tilde s / c)` is
    a soft clamp to :math:`(-c, c)` (``scale_bound``; smooth, so it never kills gradients).
    ``additive=True`` fixes :math:`s = 0`: NICE's additive coupling, volume preserving.
    The last layer of the network is zero-initialised, so the layer starts as the identity.

    Masks (``parity`` picks which part is transformed):

    - ``"channel"``: :math:`x_a` is the first ``C // 2`` channels (coordinates for vectors) and
      :math:`x_b` the rest with ``parity=0``; swapped with ``parity=1``.
    - ``"checkerboard"``: images: pixels with :math:`(i + j)` even condition and odd ones are
      transformed with ``parity=0`` (RealNVP's spatial checkerboard); vectors: even indices
      condition the odd ones. ``parity=1`` swaps the colours.
    - a boolean tensor of shape ``(features,)`` (vectors only): ``True`` marks the
      conditioning coordinates, any subset with at least one coordinate on each side, such as
      the random half masks of the course's NVP net; ``parity=1`` swaps the two sets. The
      index sets are buffers, so a random mask is saved with the model.

    Networks: vectors (``event_dim=1``) use an MLP with two hidden layers of ``hidden`` units;
    images (``event_dim=3``) use Glow's ``conv3x3 - ReLU - conv1x1 - ReLU - conv3x3`` with
    ``hidden`` channels.

    Shapes: ``event_dim=3``: ``[..., C, H, W]``; ``event_dim=1``: ``[..., D]``; any batch shape.

    Example:
        >>> layer = AffineCoupling(4, hidden=16)
        >>> x = torch.randn(2, 4, 8, 8)
        >>> torch.equal(layer(x), x)   # the identity at initialisation
        True

    References: Dinh et al., NICE, arXiv:1410.8516; Dinh et al., Real NVP, arXiv:1605.08803;
    Kingma & Dhariwal, Glow, arXiv:1807.03039.

    Args:
        features: channels ``C`` (images) or coordinates ``D`` (vectors); at least 2, except
            for an image checkerboard, which works on a single channel.
        hidden: width of the conditioner network.
        event_dim: 3 for images, 1 for vectors.
        mask: ``"channel"``, ``"checkerboard"`` or (vectors) a boolean tensor, see above.
        parity: 0 or 1, which part is transformed (see above).
        additive: NICE's additive coupling (no scale).
        scale_bound: bound ``c`` of the soft-clamped log-scale.
        activation: the network's hidden nonlinearity, ``"relu"`` or ``"silu"``.
        cache_size: 1 (default) keeps the last result for Pyro's log-det query; 0 disables it.
    """

    def __init__(
        self,
        features: int,
        hidden: int = 512,
        event_dim: int = 3,
        mask: str | torch.Tensor = "channel",
        parity: int = 0,
        additive: bool = False,
        scale_bound: float = 2.0,
        cache_size: int = 1,
        activation: str = "relu",
    ) -> None:
        super().__init__(event_dim=event_dim, cache_size=cache_size)
        custom = isinstance(mask, torch.Tensor)
        if custom:
            _check_custom_mask(mask, features, event_dim)
        elif mask not in MASKS:
            raise ValueError(f"AffineCoupling: unknown mask {mask!r}; choose one of {MASKS}")
        if parity not in (0, 1):
            raise ValueError(f"AffineCoupling: parity must be 0 or 1; got {parity!r}")
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"AffineCoupling: hidden must be a positive int; got {hidden!r}")
        if not scale_bound > 0:
            raise ValueError(f"AffineCoupling: scale_bound must be positive; got {scale_bound!r}")
        check_activation("AffineCoupling", activation)
        spatial = event_dim == 3 and mask == "checkerboard"
        if not isinstance(features, int) or features < (1 if spatial else 2):
            raise ValueError(
                f"AffineCoupling: a {mask} coupling needs at least 2 features to split; "
                f"got features={features!r}"
            )
        self.features = features
        self.hidden = hidden
        self.mask = "custom" if custom else mask
        self.parity = parity
        self.additive = additive
        self.scale_bound = scale_bound
        self.activation = activation
        outputs_per_unit = 1 if additive else 2
        halves = (features // 2, features - features // 2)
        self._halves: tuple[int, int] | None = None
        if spatial:
            self.net = coupling_convnet(features, hidden, outputs_per_unit * features, activation)
        elif event_dim == 3:
            self._halves = halves
            cond = halves[parity]
            self.net = coupling_convnet(
                cond, hidden, outputs_per_unit * (features - cond), activation
            )
        else:
            index = torch.arange(features)
            if custom:
                first = mask.cpu()
            else:
                first = index < features // 2 if mask == "channel" else index % 2 == 0
            cond_index, trans_index = (index[first], index[~first])
            if parity == 1:
                cond_index, trans_index = trans_index, cond_index
            self.register_buffer("cond_index", cond_index)
            self.register_buffer("trans_index", trans_index)
            self.register_buffer("merge_index", torch.argsort(torch.cat([cond_index, trans_index])))
            if mask == "channel" and not custom:
                # The two parts are ranges: split and cat them (one backward op) instead of
                # gathering by index (a scatter into zeros per part in backward).
                self._halves = halves
            self.net = coupling_mlp(
                len(cond_index), hidden, outputs_per_unit * len(trans_index), activation
            )

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, hidden={self.hidden}, event_dim={self._event_dim}, "
            f"mask={self.mask!r}, parity={self.parity}, additive={self.additive}, "
            f"scale_bound={self.scale_bound}, activation={self.activation!r}"
        )

    def _check_input(self, x: torch.Tensor, name: str) -> None:
        super()._check_input(x, name)
        self._check_channels(x, name, self.features)

    def _shift_and_log_scale(
        self, x_cond: torch.Tensor, negate: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the conditioner once: ``(t, s)``, ``s`` soft-clamped (``-s`` if ``negate``),
        ``None`` when additive."""
        if self._event_dim == 3:
            # The net runs channels-last (fastest on the CPU); its small output goes back to
            # the flow's contiguous layout, so that the halves below are contiguous too.
            out = self.net(channels_last(flatten_batch(x_cond, 3))).contiguous()
            if x_cond.dim() != 4:
                out = out.reshape(batch_shape_of(x_cond, 3) + out.shape[1:])
            channel_dim = -3
        else:
            out = self.net(x_cond)
            channel_dim = -1
        # Under bfloat16 autocast the network runs in bfloat16; scales and log-dets do not.
        out = in_dtype(out, x_cond.dtype)
        if self.additive:
            return out, None
        shift, raw = out.chunk(2, dim=channel_dim)
        return shift, soft_clamp(raw, self.scale_bound, negate)

    def _checkerboard(self, x: torch.Tensor) -> torch.Tensor:
        """1 where a pixel conditions, 0 where it is transformed (shape ``[H, W]``)."""
        rows = torch.arange(x.shape[-2], device=x.device)
        cols = torch.arange(x.shape[-1], device=x.device)
        colour = (rows[:, None] + cols[None, :]) % 2
        return (colour == self.parity).to(x.dtype)

    def _couple(self, x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        batch_shape = batch_shape_of(x, self._event_dim)
        if self._event_dim == 3 and self.mask == "checkerboard":
            keep = self._checkerboard(x)
            shift, log_scale = self._shift_and_log_scale(x * keep)
            free = 1 - keep
            shift = shift * free
            if log_scale is None:
                y = x - shift if inverse else x + shift
                return y, x.new_zeros(batch_shape)
            log_scale = log_scale * free
            y = (x - shift) * torch.exp(-log_scale) if inverse else x * log_scale.exp() + shift
            return y, log_scale.sum(dim=(-3, -2, -1))
        channel_dim = -3 if self._event_dim == 3 else -1
        if self._halves is None:
            x_cond, x_trans = x[..., self.cond_index], x[..., self.trans_index]
        else:
            halves = x.split(self._halves, dim=channel_dim)
            x_cond, x_trans = halves if self.parity == 0 else halves[::-1]
        # In the inverse direction the net's log-scale comes out negated (folded into the
        # soft clamp), so that exp(-s) costs no extra pass over the tensor.
        shift, log_scale = self._shift_and_log_scale(x_cond, negate=inverse)
        if log_scale is None:
            y_trans = x_trans - shift if inverse else x_trans + shift
            log_det = x.new_zeros(batch_shape)
        else:
            event_dims = tuple(range(-self._event_dim, 0))
            if inverse:
                y_trans = (x_trans - shift) * log_scale.exp()
                log_det = log_scale.sum(dim=event_dims).neg()
            else:
                y_trans = torch.addcmul(shift, x_trans, log_scale.exp())
                log_det = log_scale.sum(dim=event_dims)
        if self._halves is None:
            return torch.cat([x_cond, y_trans], dim=-1)[..., self.merge_index], log_det
        parts = (x_cond, y_trans) if self.parity == 0 else (y_trans, x_cond)
        return torch.cat(parts, dim=channel_dim), log_det

    def _forward_and_log_det(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._couple(x, inverse=False)

    def _inverse_and_log_det(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._couple(y, inverse=True)
