"""Memory saving: keep only each flow step's input and recompute the step during backward."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from pyro.distributions.torch_transform import ComposeTransformModule
from torch.distributions import Transform
from torch.utils.checkpoint import checkpoint

from .transforms import (
    ActNorm,
    AffineCoupling,
    FlowTransform,
    InvertibleConv1x1,
    Split,
    forward_and_log_det,
    inverse_and_log_det,
)

_Fused = Callable[[Transform, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
GLOW_STEP = (AffineCoupling, InvertibleConv1x1, ActNorm)


class MemorySavingStep(FlowTransform):
    r"""A flow step whose intermediate activations are recomputed in backward, not stored.

    Wraps the layers of one step (for Glow: coupling, 1x1 convolution, ActNorm in generative
    order) and computes exactly their composition, :math:`y = f_n \circ \dots \circ f_1(x)`
    with :math:`\log|\det J| = \sum_i \log|\det J_{f_i}|`, in either direction. When autograd
    records (training), only the step's input is kept; backward runs the step once more to
    rebuild what it needs (``torch.utils.checkpoint``, non-reentrant). The coupling networks'
    hidden activations, the bulk of a Glow's training memory, then live for one step at a
    time; the price is one more forward pass of each step in backward. Without autograd the
    step runs as is.

    The recomputation must repeat the first pass exactly. An uninitialised ActNorm runs alone
    (it initialises from its input), an initialised one fused with the 1x1 convolution before
    it (:class:`~pyro_glow.transforms.compose.LinearPairs`), so the step's first batch
    initialises its ActNorm layers in a pass without autograd before the recorded one.

    Shapes: those of the wrapped layers (``[..., C, H, W]`` or ``[..., D]``).

    Example:
        >>> step = MemorySavingStep([AffineCoupling(4, 8), InvertibleConv1x1(4), ActNorm(4)])
        >>> step.inv(torch.randn(2, 4, 8, 8)).shape
        torch.Size([2, 4, 8, 8])

    Reference: Chen et al., "Training Deep Nets with Sublinear Memory Cost",
    arXiv:1604.06174 (gradient checkpointing); Gomez et al., "The Reversible Residual
    Network", arXiv:1707.04585 (recomputing instead of storing activations).

    Args:
        parts: the step's layers in generative order, all of the same ``event_dim``.
        cache_size: 1 (default) keeps the last result for Pyro's log-det query; 0 disables it.
    """

    def __init__(self, parts: Sequence[Transform], cache_size: int = 1) -> None:
        parts = list(parts)
        if not parts or not all(isinstance(part, Transform) for part in parts):
            raise TypeError("MemorySavingStep: parts must be a non-empty list of Transforms")
        dims = {part.domain.event_dim for part in parts} | {p.codomain.event_dim for p in parts}
        if len(dims) != 1:
            raise ValueError(
                f"MemorySavingStep: all parts must share one event_dim; got {sorted(dims)}"
            )
        super().__init__(event_dim=dims.pop(), cache_size=cache_size)
        self.step = ComposeTransformModule(parts)
        self._actnorms = [module for module in self.step.modules() if isinstance(module, ActNorm)]

    def _run(self, fused: _Fused, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not torch.is_grad_enabled():
            return fused(self.step, x)
        if not all(actnorm._is_initialized() for actnorm in self._actnorms):
            with torch.no_grad():
                fused(self.step, x)
        return checkpoint(fused, self.step, x, use_reentrant=False)

    def _forward_and_log_det(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(forward_and_log_det, x)

    def _inverse_and_log_det(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(inverse_and_log_det, y)


def memory_saving(transform: ComposeTransformModule) -> ComposeTransformModule:
    """The same model (the same layer objects and parameters) with every Glow step
    (``AffineCoupling, InvertibleConv1x1, ActNorm`` in generative order, at any level, nested
    splits included) wrapped in a :class:`MemorySavingStep`.

    The maps, densities and gradients are unchanged; the ``state_dict`` keys gain the
    wrapper's ``step.parts.i`` prefix.
    """
    if not isinstance(transform, ComposeTransformModule):
        raise TypeError(
            f"memory_saving: expected a ComposeTransformModule; got {type(transform).__name__}"
        )
    parts: list[Transform] = []
    index = 0
    old = list(transform.parts)
    while index < len(old):
        window = old[index : index + len(GLOW_STEP)]
        if len(window) == len(GLOW_STEP) and all(
            type(part) is kind for part, kind in zip(window, GLOW_STEP, strict=True)
        ):
            parts.append(MemorySavingStep(window))
            index += len(GLOW_STEP)
            continue
        part = old[index]
        if isinstance(part, Split) and isinstance(part.inner, ComposeTransformModule):
            part.inner = memory_saving(part.inner)
        parts.append(part)
        index += 1
    return ComposeTransformModule(parts)
