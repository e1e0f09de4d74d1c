"""Builders of whole models: ``glow()``."""

from __future__ import annotations

from collections.abc import Sequence

from pyro.distributions.torch_transform import ComposeTransformModule
from torch.distributions import Transform

from .flow import Flow
from .memory import memory_saving as with_memory_saving
from .priors import make_prior
from .transforms import ActNorm, AffineCoupling, InvertibleConv1x1, Split, Squeeze, Unsqueeze


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"glow: {name} must be a positive int; got {value!r}")
    return value


def flow_steps(
    features: int,
    steps: int,
    hidden: int,
    event_dim: int,
    additive: bool = False,
    activation: str = "relu",
) -> list[Transform]:
    """``steps`` Glow steps (ActNorm -> InvertibleConv1x1 -> coupling, in the normalizing
    direction) as a list in generative order, couplings alternating their ``parity``
    (``activation``: the coupling networks' nonlinearity, see :class:`AffineCoupling`)."""
    parts: list[Transform] = []
    for step in reversed(range(steps)):
        parts += [
            AffineCoupling(
                features,
                hidden,
                event_dim=event_dim,
                parity=step % 2,
                additive=additive,
                activation=activation,
            ),
            InvertibleConv1x1(features, event_dim=event_dim),
            ActNorm(features, event_dim=event_dim),
        ]
    return parts


def glow_level(
    channels: int,
    levels: int,
    steps: int,
    hidden: int,
    additive: bool = False,
    activation: str = "relu",
) -> ComposeTransformModule:
    """One Glow level and, nested in its Split, every level below it.

    Generative order ``[Squeeze, Split(inner=next level), K steps, Unsqueeze]``: in the
    normalizing direction the input is squeezed to ``4C`` channels, goes through ``steps``
    flow steps, half of it is factored out (the rest goes through the next level), and the
    result is unsqueezed back, so the level maps ``[C, H, W]`` to itself. The last level has
    no Split.
    """
    squeezed = 4 * channels
    parts: list[Transform] = [Squeeze()]
    if levels > 1:
        inner = glow_level(
            squeezed - squeezed // 2, levels - 1, steps, hidden, additive, activation
        )
        parts.append(Split(squeezed, inner))
    parts += flow_steps(squeezed, steps, hidden, 3, additive, activation)
    parts.append(Unsqueeze())
    return ComposeTransformModule(parts)


def glow(
    shape: Sequence[int],
    levels: int = 3,
    steps: int = 16,
    hidden: int = 512,
    prior: str = "normal",
    components: int = 2,
    additive: bool = False,
    memory_saving: bool = False,
) -> Flow:
    """A Glow model over data of ``shape``.

    - ``shape=(D,)``: a vector Glow of ``steps`` flow steps (ActNorm, invertible linear map,
      MLP affine coupling with ``hidden`` units), as in the course's two-moons model.
    - ``shape=(C, H, W)``: the multi-scale Glow with ``levels`` levels of ``steps`` steps and
      ``hidden``-channel coupling networks; H and W must be divisible by ``2**levels``.
      ``glow((3, 32, 32))`` is the CIFAR-10 model of the paper and the course (L=3, K=16,
      512 channels).

    The prior (``"normal"``, learnable ``"diag"``, or a learnable ``"mixture"`` of
    ``components`` diagonal Gaussians) is over the data's own shape: the multi-scale model is
    one bijection (see :class:`~pyro_glow.transforms.Split`). ``additive=True`` uses NICE's
    additive couplings. ``memory_saving=True`` keeps only each flow step's input for backward
    and recomputes the step there (:class:`~pyro_glow.memory.MemorySavingStep`): the same
    model and gradients for a fraction of the training memory and about one more forward pass.

    Example:
        >>> flow = glow((3, 8, 8), levels=2, steps=2, hidden=8)
        >>> flow.sample(4).shape
        torch.Size([4, 3, 8, 8])

    Reference: Kingma & Dhariwal, Glow, arXiv:1807.03039.
    """
    shape = tuple(shape)
    if len(shape) not in (1, 3) or not all(isinstance(n, int) and n >= 1 for n in shape):
        raise ValueError(
            f"glow: shape must be (D,) for vectors or (C, H, W) for images, positive ints; "
            f"got {shape!r}"
        )
    steps = _positive_int("steps", steps)
    hidden = _positive_int("hidden", hidden)
    # Checked whatever the shape and prior, so that a bad value is never silently ignored.
    levels = _positive_int("levels", levels)
    _positive_int("components", components)
    base = make_prior(prior, shape, components)
    if len(shape) == 1:
        if shape[0] < 2:
            raise ValueError(f"glow: a vector Glow needs at least 2 dimensions; got shape {shape}")
        transform = ComposeTransformModule(flow_steps(shape[0], steps, hidden, 1, additive))
    else:
        channels, height, width = shape
        factor = 2**levels
        if height % factor or width % factor:
            raise ValueError(
                f"glow: {levels} levels squeeze H and W by {factor}, so both must be divisible "
                f"by {factor}; got shape {shape}"
            )
        transform = glow_level(channels, levels, steps, hidden, additive)
    if memory_saving:
        transform = with_memory_saving(transform)
    return Flow(base, transform)
