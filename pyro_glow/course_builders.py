"""Builders of the course's other coupling flows: ``nice()`` and ``realnvp()``.

Both return a :class:`~pyro_glow.Flow` like :func:`~pyro_glow.glow` does, built from the
same layers (:class:`~pyro_glow.transforms.AffineCoupling` with its masks,
:class:`~pyro_glow.transforms.Squeeze`, :class:`~pyro_glow.transforms.Split`), so a model
of either family is one bijection of the data's own shape and one
``TransformedDistribution``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions.torch_transform import ComposeTransformModule
from torch.distributions import Transform

from .flow import Flow
from .priors import make_prior
from .transforms import AffineCoupling, Rescale, Split, Squeeze, Unsqueeze

NICE_HIDDEN = {1: 1000, 3: 64}
"""Default conditioner widths of :func:`nice` by event dim: NICE's 1000 units for vectors,
64 channels for images."""


def _check_shape(owner: str, shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(shape)
    if len(shape) not in (1, 3) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape
    ):
        raise ValueError(
            f"{owner}: shape must be (D,) for vectors or (C, H, W) for images, positive ints; "
            f"got {shape!r}"
        )
    if len(shape) == 1 and shape[0] < 2:
        raise ValueError(f"{owner}: a vector flow needs at least 2 dimensions; got {shape}")
    return shape


def _positive_int(owner: str, name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int; got {value!r}")
    return value


def nice(
    shape: Sequence[int],
    couplings: int = 4,
    hidden: int | None = None,
    prior: str = "normal",
    components: int = 2,
) -> Flow:
    r"""A NICE model over data of ``shape``: additive couplings and a diagonal rescaling.

    In the normalizing direction the data goes through ``couplings`` additive coupling
    layers (:math:`y_b = x_b + m(x_a)`, volume preserving), alternating which half is
    transformed, then through :class:`~pyro_glow.transforms.Rescale`
    (:math:`z = x \odot e^{-s}`), the only layer that changes volume:
    :math:`\log p(x) = \log p_Z(z) - \sum_i s_i`.

    - ``shape=(D,)``: NICE's partition of the coordinates into odd and even indices
      (``mask="checkerboard"`` of a vector coupling), alternating; the conditioner is an MLP
      with two hidden layers of ``hidden`` units (default 1000, NICE's width; the paper's
      MNIST networks have 5 hidden layers).
    - ``shape=(C, H, W)``: NICE treats images as flat vectors; here the odd/even partition
      becomes RealNVP's spatial checkerboard, alternating colours, with convolutional
      conditioners of ``hidden`` channels (default 64), so any image size works.

    The prior is ``"normal"`` (default; the paper uses a logistic prior for MNIST and a
    Gaussian for TFD), learnable ``"diag"`` or a ``"mixture"`` of ``components`` Gaussians.

    Example:
        >>> flow = nice((2,), couplings=4, hidden=16)
        >>> flow.log_prob(torch.zeros(3, 2)).shape
        torch.Size([3])
        >>> [type(t).__name__ for t in flow.transform.parts][:2]
        ['Rescale', 'AffineCoupling']

    Reference: Dinh, Krueger & Bengio, NICE, arXiv:1410.8516, sections 3.2-3.3 and 5.1.

    Args:
        shape: ``(D,)`` or ``(C, H, W)``.
        couplings: number of additive coupling layers (NICE uses 4).
        hidden: conditioner width (default: 1000 for vectors, 64 for images).
        prior: ``"normal"``, ``"diag"`` or ``"mixture"``.
        components: mixture components for ``prior="mixture"``.
    """
    shape = _check_shape("nice", shape)
    couplings = _positive_int("nice", "couplings", couplings)
    event_dim = len(shape)
    hidden = _positive_int("nice", "hidden", NICE_HIDDEN[event_dim] if hidden is None else hidden)
    base = make_prior(prior, shape, components)
    normalizing_order = [
        AffineCoupling(
            shape[0], hidden, event_dim, mask="checkerboard", parity=layer % 2, additive=True
        )
        for layer in range(couplings)
    ]
    return Flow(base, ComposeTransformModule([Rescale(shape), *reversed(normalizing_order)]))


def _random_half_masks(features: int, couplings: int, seed: int | None) -> list[torch.Tensor]:
    """The course's NVP masks, one per coupling: a random half of the coordinates for each
    even layer, its complement for the odd layer after it."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    masks = []
    for layer in range(couplings):
        if layer % 2 == 0:
            mask = torch.zeros(features, dtype=torch.bool)
            mask[torch.randperm(features, generator=generator)[: features // 2]] = True
        else:
            mask = ~masks[-1]
        masks.append(mask)
    return masks


def _realnvp_scale(channels: int, scales: int, hidden: int, learned_split: bool) -> list[Transform]:
    """One RealNVP scale and, nested in its factor-out, every scale below it, as a list of
    transforms in generative order that maps ``[C, H, W]`` to itself.

    Normalizing order: 3 checkerboard couplings, squeeze, 3 channel couplings, factor out
    half of the channels (the other half goes through the next scales), unsqueeze. The last
    scale is 4 checkerboard couplings.
    """

    def coupling(features: int, mask: str, layer: int) -> AffineCoupling:
        return AffineCoupling(features, hidden, 3, mask=mask, parity=layer % 2)

    if scales == 1:
        return [coupling(channels, "checkerboard", layer) for layer in reversed(range(4))]
    squeezed = 4 * channels
    inner = _realnvp_scale(squeezed - squeezed // 2, scales - 1, hidden, learned_split)
    split = Split(squeezed, ComposeTransformModule(inner))
    if not learned_split:
        split.prior_net.requires_grad_(False)
    return [
        Squeeze(),
        split,
        *(coupling(squeezed, "channel", layer) for layer in reversed(range(3))),
        Unsqueeze(),
        *(coupling(channels, "checkerboard", layer) for layer in reversed(range(3))),
    ]


def realnvp(
    shape: Sequence[int],
    scales: int = 3,
    couplings: int = 4,
    hidden: int = 64,
    prior: str = "normal",
    components: int = 2,
    learned_split: bool = False,
    seed: int | None = None,
) -> Flow:
    r"""A RealNVP model over data of ``shape``: affine couplings with alternating masks.

    - ``shape=(C, H, W)``: the paper's multi-scale architecture with ``scales`` scales. In
      the normalizing direction each scale but the last is 3 checkerboard couplings
      (alternating colours), a squeeze to ``4C`` channels, 3 channel couplings (alternating
      halves) and a factor-out of half of the channels, the other half going on to the next
      scale; the last scale is 4 checkerboard couplings. As in :func:`~pyro_glow.glow`, the
      factored-out channels stay in place (:class:`~pyro_glow.transforms.Split` with the
      remaining scales nested inside) and each scale is unsqueezed back, so the model is one
      bijection of ``[C, H, W]``. ``H`` and ``W`` must be divisible by ``2**(scales - 1)``.
      Conditioners are Glow's ``conv3x3 - conv1x1 - conv3x3`` with ``hidden`` channels (the
      paper uses residual networks with batch normalization, 64 feature maps on CIFAR-10).
      With ``learned_split=False`` (default) the factor-out is the paper's: the factored
      channels go to the prior unchanged (Split's conditional prior is frozen at zero);
      ``True`` learns Glow's conditional prior :math:`p(z_2 \mid z_1)` instead.
    - ``shape=(D,)``: the course's NVP net: ``couplings`` affine couplings whose conditioning
      set is a random half of the coordinates, drawn afresh for every even layer and
      complemented in the odd layer after it (``seed`` fixes the draw; the masks are
      buffers, saved with the model). Conditioners are MLPs with two hidden layers of
      ``hidden`` units. ``scales`` and ``learned_split`` do not apply to vectors.

    Every coupling starts as the identity (zero-initialised last layer); log-scales are
    soft-clamped (see :class:`~pyro_glow.transforms.AffineCoupling`).

    Example:
        >>> flow = realnvp((1, 8, 8), scales=2, hidden=8)
        >>> flow.sample(2).shape
        torch.Size([2, 1, 8, 8])
        >>> realnvp((2,), couplings=4, hidden=8, seed=0).log_prob(torch.zeros(5, 2)).shape
        torch.Size([5])

    References: Dinh, Sohl-Dickstein & Bengio, Density estimation using Real NVP,
    arXiv:1605.08803, sections 3.4-3.6 and 4.1; F. Fleuret, Deep learning course, lecture
    10.3 (the NVP net with random masks).

    Args:
        shape: ``(D,)`` or ``(C, H, W)``.
        scales: number of scales of the image model (>= 1; the course's model has 3).
        couplings: number of couplings of the vector model.
        hidden: conditioner width.
        prior: ``"normal"``, ``"diag"`` or ``"mixture"``.
        components: mixture components for ``prior="mixture"``.
        learned_split: images: learn the factor-out's conditional prior (Glow) instead of
            the paper's plain factor-out.
        seed: vectors: seed of the random masks (default: torch's global generator, so
            ``torch.manual_seed`` or ``pyro.set_rng_seed`` makes them reproducible).
    """
    shape = _check_shape("realnvp", shape)
    hidden = _positive_int("realnvp", "hidden", hidden)
    base = make_prior(prior, shape, components)
    if len(shape) == 1:
        couplings = _positive_int("realnvp", "couplings", couplings)
        masks = _random_half_masks(shape[0], couplings, seed)
        normalizing_order = [
            AffineCoupling(shape[0], hidden, event_dim=1, mask=mask, parity=0) for mask in masks
        ]
        return Flow(base, ComposeTransformModule(list(reversed(normalizing_order))))
    scales = _positive_int("realnvp", "scales", scales)
    factor = 2 ** (scales - 1)
    if shape[1] % factor or shape[2] % factor:
        raise ValueError(
            f"realnvp: {scales} scales squeeze H and W {scales - 1} times, so both must be "
            f"divisible by {factor}; got shape {shape}"
        )
    transform = ComposeTransformModule(_realnvp_scale(shape[0], scales, hidden, learned_split))
    return Flow(base, transform)
