"""One pass through a composition of layers: each pyro-glow layer's fused map, and Glow's
ActNorm + 1x1 convolution pairs as one affine map whose matrices are computed for all pairs of
the composition at once.

``Flow.log_prob``, ``Flow.sample``, ``Split`` (for the levels below it) and
``MemorySavingStep`` evaluate their transforms through :func:`forward_and_log_det` and
:func:`inverse_and_log_det`. Pyro's own path (``TransformedDistribution``, layer by layer
through the caches of :class:`~pyro_glow.transforms.FlowTransform`) computes the same maps.
"""

from __future__ import annotations

import operator
from functools import reduce

import torch
from torch.distributions import ComposeTransform, Transform
from torch.distributions.utils import _sum_rightmost

from .actnorm import ActNorm
from .base import FlowTransform, batch_shape_of, in_dtype
from .conv1x1 import InvertibleConv1x1, lu_matrix


def _event_dims_along(compose: ComposeTransform) -> list[int]:
    """Event dim of the tensor entering each part of ``compose``."""
    dims = [compose.domain.event_dim]
    for part in compose.parts[:-1]:
        dims.append(dims[-1] + part.codomain.event_dim - part.domain.event_dim)
    return dims


class LinearPairs:
    r"""The adjacent ``(InvertibleConv1x1, ActNorm)`` pairs of a composition (generative
    order: the 1x1 convolution, then ActNorm), each evaluated as one affine map.

    With ActNorm's :math:`x = z e^{s} + b` per channel and the convolution's normalizing
    matrix :math:`W` (log-diagonal :math:`\ell`), a pair is

    .. math:: x = \operatorname{diag}(e^{s}) W^{-1} z + b, \qquad
       z = W \operatorname{diag}(e^{-s}) x - W \operatorname{diag}(e^{-s}) b, \qquad
       \log|\det J| = H W \textstyle\sum_c (s_c - \ell_c),

    one ``baddbmm`` over the pixels instead of a product and two element-wise passes (and
    their backward). The matrices of all pairs of the composition come from one batched
    computation over their stacked parameters (:func:`~pyro_glow.transforms.lu_matrix`)
    instead of a dozen small operations per layer: at Glow's sizes those operations, forward
    and backward, cost more than their arithmetic (docs/benchmarks.md).

    A pair is fused only once its ActNorm is initialised (the first batch goes through the
    layers one by one and initialises it) and where neither layer is a subclass.

    Args:
        parts: the composition's parts, in generative order.
        dims: the event dim of the tensor entering each part.
        generative: the direction the pairs will be applied in.
    """

    def __init__(self, parts: list[Transform], dims: list[int], generative: bool) -> None:
        self.generative = generative
        self.starts: dict[int, tuple[int, int]] = {}  # first part's index -> (group, member)
        groups: dict[tuple, list[tuple[InvertibleConv1x1, ActNorm]]] = {}
        group_of: dict[tuple, int] = {}
        for index in range(len(parts) - 1):
            conv, act = parts[index], parts[index + 1]
            if not (
                type(conv) is InvertibleConv1x1
                and type(act) is ActNorm
                and conv.features == act.features
                and conv._event_dim == act._event_dim == dims[index]
                and act._is_initialized()
            ):
                continue
            key = (conv.features, conv._event_dim, conv.lu.dtype, conv.lu.device)
            members = groups.setdefault(key, [])
            self.starts[index] = (group_of.setdefault(key, len(group_of)), len(members))
            members.append((conv, act))
        self.layers = list(groups.values())
        self.maps = [self._maps(members) for members in self.layers]
        # Every part of a composition maps the whole tensor bijectively, so its size is the
        # same throughout, and pairs of the same channel count see the same pixel count.
        self.pixels: dict[int, int] = {}
        self.batch_shape: torch.Size | None = None

    def _maps(
        self, members: list[tuple[InvertibleConv1x1, ActNorm]]
    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...], torch.Tensor]:
        """Matrices, biases and per-pixel log-determinants of a group's pairs."""
        convs, acts = zip(*members, strict=True)
        features = convs[0].features
        lu = torch.stack([conv.lu for conv in convs])
        signs = torch.stack([conv.diag_sign for conv in convs])
        permutations = torch.stack([conv.permutation for conv in convs])
        matrix = lu_matrix(lu, signs, permutations, convs[0].identity, inverse=self.generative)
        affine = torch.stack([act.affine for act in acts]).reshape(len(acts), 2, features)
        log_scale, bias = affine.unbind(1)
        if self.generative:
            matrices = log_scale.exp().unsqueeze(-1) * matrix
        else:
            matrices = matrix * (-log_scale).exp().unsqueeze(-2)
            # -W diag(e^-s) b, so that the product adds it (a beta of -1 would cost a pass
            # over the images' gradient in backward)
            bias = (matrices @ bias.unsqueeze(-1)).squeeze(-1).neg()
        per_pixel = log_scale.sum(-1) - lu.diagonal(dim1=-2, dim2=-1).sum(-1)
        return matrices.unbind(0), bias.unbind(0), per_pixel

    def apply(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """The pair starting at part ``index``, applied to ``x`` (its log-determinant is
        collected for :meth:`log_det`)."""
        group, member = self.starts[index]
        conv, act = self.layers[group][member]
        if self.generative:
            conv._check_input(x, "input")
        else:
            act._check_input(x, "input of the inverse")
        matrices, biases, _ = self.maps[group]
        matrix, bias = matrices[member], biases[member]
        if conv._event_dim == 1:
            flat = x.reshape(-1, x.shape[-1])
            out = torch.addmm(bias, flat, matrix.mT).reshape(x.shape)
            pixels = 1
        else:
            channels, pixels = x.shape[-3], x.shape[-2] * x.shape[-1]
            flat = x.reshape(-1, channels, pixels)
            matrices = matrix.expand(flat.shape[0], channels, channels)
            out = torch.baddbmm(bias.unsqueeze(-1), matrices, flat).reshape(x.shape)
        self.pixels[group] = pixels
        if self.batch_shape is None:
            self.batch_shape = batch_shape_of(x, conv._event_dim)
        return in_dtype(out, x.dtype)

    def log_det(self, terms: list[torch.Tensor]) -> torch.Tensor:
        """The other parts' log-determinant ``terms`` plus those of the applied pairs."""
        if not self.maps:
            return reduce(operator.add, terms)
        pairs = reduce(
            operator.add,
            (maps[2].sum() * self.pixels[group] for group, maps in enumerate(self.maps)),
        )
        if not terms:
            return pairs.expand(self.batch_shape)
        return reduce(operator.add, terms) + pairs


def forward_and_log_det(transform: Transform, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(transform(x), log|det J|)`` for any transform, fused where the parts allow it.

    pyro-glow layers and compositions of them run each network once (and their ActNorm +
    1x1 convolution pairs as one map, :class:`LinearPairs`); any other Transform falls back
    to ``transform(x)`` and ``transform.log_abs_det_jacobian(x, y)``.
    """
    return _walk(transform, x, generative=True)


def inverse_and_log_det(transform: Transform, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(transform.inv(y), log|det J|)`` with J the Jacobian of the forward map at the result
    (fused as :func:`forward_and_log_det`)."""
    return _walk(transform, y, generative=False)


def _walk(
    transform: Transform, x: torch.Tensor, generative: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(transform, FlowTransform):
        if generative:
            return transform.forward_and_log_det(x)
        return transform.inverse_and_log_det(x)
    if isinstance(transform, ComposeTransform) and transform.parts:
        parts, dims = transform.parts, _event_dims_along(transform)
        pairs = LinearPairs(parts, dims, generative)
        order = range(len(parts)) if generative else range(len(parts) - 1, -1, -1)
        terms = []
        position = 0
        while position < len(order):
            index = order[position]
            # A pair starts at its 1x1 convolution, the part met first when generating.
            start = index if generative else index - 1
            if start in pairs.starts:
                x = pairs.apply(start, x)
                position += 2
                continue
            part = parts[index]
            x, log_det = _walk(part, x, generative)
            terms.append(_sum_rightmost(log_det, dims[index] - part.domain.event_dim))
            position += 1
        return x, pairs.log_det(terms)
    if generative:
        y = transform(x)
        return y, transform.log_abs_det_jacobian(x, y)
    z = transform.inv(x)
    return z, transform.log_abs_det_jacobian(z, x)
