"""InvertibleConv1x1: Glow's LU-parametrised channel mixing."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import FlowTransform, _OptimizerStepCounter, batch_shape_of, in_dtype


class InvertibleConv1x1(FlowTransform):
    r"""Invertible 1x1 convolution with an LU-parametrised weight (Glow).

    The weight is :math:`W = P L (U + \operatorname{diag}(\sigma \odot e^{\ell}))` with a fixed
    permutation :math:`P` and fixed signs :math:`\sigma` (buffers), :math:`L` unit lower
    triangular, :math:`U` strictly upper triangular and :math:`\ell = \log|\operatorname{diag}|`
    learned. As in Glow, :math:`W` acts in the normalizing direction, the same matrix on every
    pixel:

    .. math:: z_{:,i,j} = W x_{:,i,j}, \qquad
       \log|\det J_{x \to z}| = H W \sum_c \ell_c,

    so the generative map :math:`x = W^{-1} z` has log-determinant :math:`-H W \sum_c \ell_c`.
    :math:`|\det W| = e^{\sum \ell} > 0` whatever the parameters, so the layer can never become
    singular (Pyro's ``GeneralizedChannelPermute`` can). :math:`W^{-1}` is obtained from two
    triangular solves of a ``C x C`` matrix once per call, never a generic ``inverse()``
    (without autograd, once per parameter update: the matrices are kept between calls).
    Both directions are one batched matrix product over the pixels. For ``event_dim=1`` the
    layer is the invertible linear map ``z = W x`` on vectors.

    The three learned factors are stored as one ``C x C`` parameter ``lu`` in LAPACK's packed
    layout: :math:`L` strictly below the diagonal, :math:`\ell` on it, :math:`U` above it (one
    ``pyro.param`` site per layer instead of three; ``state_dict`` entries of the earlier
    ``lower``/``upper``/``log_diag`` layout still load). ``log_diag`` is a view of the diagonal.

    Initialisation: a random rotation (QR of a Gaussian matrix), factorised by ``lu_factor``.

    Shapes: ``event_dim=3``: ``[..., C, H, W]``; ``event_dim=1``: ``[..., D]``; any batch shape.

    Example:
        >>> layer = InvertibleConv1x1(4)
        >>> x = torch.randn(2, 4, 8, 8)
        >>> z = layer.inv(x)
        >>> torch.allclose(layer(z), x, atol=1e-5)
        True

    Reference: Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions",
    arXiv:1807.03039, section 3.2.

    Args:
        features: number of channels ``C`` (images) or of coordinates ``D`` (vectors).
        event_dim: 3 for images, 1 for vectors.
        cache_size: 1 (default) keeps the last result for Pyro's log-det query; 0 disables it.
    """

    def __init__(self, features: int, event_dim: int = 3, cache_size: int = 1) -> None:
        super().__init__(event_dim=event_dim, cache_size=cache_size)
        if not isinstance(features, int) or features < 1:
            raise ValueError(
                f"InvertibleConv1x1: features must be a positive int; got {features!r}"
            )
        self.features = features
        rotation, _ = torch.linalg.qr(torch.randn(features, features))
        lu, pivots = torch.linalg.lu_factor(rotation)
        permutation, lower, upper = torch.lu_unpack(lu, pivots)
        diagonal = upper.diagonal()
        self.register_buffer("permutation", permutation)
        self.register_buffer("diag_sign", torch.sign(diagonal))
        self.register_buffer("identity", torch.eye(features))
        self.lu = nn.Parameter(lower.tril(-1) + upper.triu(1) + torch.diag(diagonal.abs().log()))
        self._kept_matrices: dict[bool, tuple[tuple, torch.Tensor]] = {}

    def extra_repr(self) -> str:
        return f"features={self.features}, event_dim={self._event_dim}"

    def _check_input(self, x: torch.Tensor, name: str) -> None:
        super()._check_input(x, name)
        self._check_channels(x, name, self.features)

    @property
    def log_diag(self) -> torch.Tensor:
        r""":math:`\ell = \log|\operatorname{diag}|` (a view of the diagonal of ``lu``)."""
        return self.lu.diagonal()

    @staticmethod
    def upgrade_state_dict(state_dict: dict[str, Any], prefix: str = "") -> None:
        """Convert, in place, the entries of the earlier ``lower``/``upper``/``log_diag``
        layout under ``prefix`` (only the triangles the layer used are kept)."""
        old_keys = [prefix + name for name in ("lower", "upper", "log_diag")]
        if prefix + "lu" not in state_dict and all(key in state_dict for key in old_keys):
            lower, upper, log_diag = (state_dict.pop(key) for key in old_keys)
            state_dict[prefix + "lu"] = lower.tril(-1) + upper.triu(1) + torch.diag(log_diag)
            state_dict.pop(prefix + "lower_mask", None)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        self.upgrade_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def weight(self) -> torch.Tensor:
        """``W = P L U``, the normalizing-direction matrix (``C x C``)."""
        return lu_matrix(self.lu, self.diag_sign, self.permutation, self.identity)

    def inverse_weight(self) -> torch.Tensor:
        """``W^{-1} = U^{-1} L^{-1} P^T`` by two triangular solves."""
        return lu_matrix(self.lu, self.diag_sign, self.permutation, self.identity, inverse=True)

    def clear_cache(self) -> None:
        """Forget the cached ``(x, y, log_det)`` and the matrices kept without autograd (after
        an edit through ``.data``, which bumps no version counter, this is what refreshes them)."""
        super().clear_cache()
        self._kept_matrices.clear()

    def _matrix(self, inverse: bool) -> torch.Tensor:
        """``W^{-1}`` (``inverse``) or ``W``. Without autograd (sampling, evaluation) the
        matrix is kept until a parameter or buffer changes (keyed on the tensors' identities
        and version counters and on the count of optimizer steps), so that repeated calls
        cost one matrix product each."""
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return self.inverse_weight() if inverse else self.weight()
        tensors = (self.lu, self.permutation, self.diag_sign)
        key = (_OptimizerStepCounter.count, *((id(t), t._version) for t in tensors))
        kept = self._kept_matrices.get(inverse)
        if kept is None or kept[0] != key:
            kept = (key, self.inverse_weight() if inverse else self.weight())
            self._kept_matrices[inverse] = kept
        return kept[1]

    def _mix(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        # Under autocast the product may run in bfloat16; the flow's stream stays in x's dtype.
        if self._event_dim == 1:
            return in_dtype(x @ matrix.T, x.dtype)
        # One batched matrix product over [N, C, H*W]: the same map as a 1x1 conv2d, and
        # 5-10x faster on the CPU at Glow's shapes (benchmarks/ops.py). The matrix is expanded
        # over the batch (a view) so that neither direction of autograd copies the images, as
        # a broadcast ``matrix @ pixels`` would (1.3-2.6x slower with its backward).
        channels = x.shape[-3]
        pixels = x.reshape(-1, channels, x.shape[-2] * x.shape[-1])
        matrices = matrix.expand(pixels.shape[0], channels, channels)
        return in_dtype(torch.bmm(matrices, pixels).reshape(x.shape), x.dtype)

    def _log_det(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x.shape[-1] * x.shape[-2] if self._event_dim == 3 else 1
        return (-pixels * self.lu.diagonal().sum()).expand(batch_shape_of(x, self._event_dim))

    def _forward_and_log_det(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._mix(x, self._matrix(inverse=True)), self._log_det(x)

    def _inverse_and_log_det(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._mix(y, self._matrix(inverse=False)), self._log_det(y)


def lu_matrix(
    lu: torch.Tensor,
    diag_sign: torch.Tensor,
    permutation: torch.Tensor,
    identity: torch.Tensor,
    inverse: bool = False,
) -> torch.Tensor:
    """``W = P L U`` (or ``W^{-1}`` if ``inverse``) from the packed factors ``lu`` of
    :class:`InvertibleConv1x1`, the signs of ``U``'s diagonal and the permutation matrix
    ``P``; any leading batch dimensions (``[..., C, C]``), so that the matrices of several
    layers come from one batched computation (:class:`~pyro_glow.transforms.compose.LinearPairs`).
    ``W^{-1} = U^{-1} L^{-1} P^T`` comes from two triangular solves, never ``inverse()``."""
    lower = lu.tril(-1) + identity
    upper = lu.triu(1) + torch.diag_embed(diag_sign * lu.diagonal(dim1=-2, dim2=-1).exp())
    if inverse:
        lower_inv_pt = torch.linalg.solve_triangular(
            lower, permutation.mT, upper=False, unitriangular=True
        )
        return torch.linalg.solve_triangular(upper, lower_inv_pt, upper=True)
    return permutation @ (lower @ upper)
