"""The base class of every pyro-glow layer: one fused call that returns the output and its
log-determinant, and a cache that hands that log-determinant back to Pyro without running the
layer a second time.

Directions follow Pyro: ``_call`` is the generative map (latent -> data) and ``_inverse`` the
normalizing map (data -> latent). ``log_abs_det_jacobian(x, y)`` is always the log-determinant
of the generative map at ``x`` and has exactly the batch shape.
"""

from __future__ import annotations

import copy
import math
from typing import Any, NamedTuple

import torch
from pyro.distributions.torch_transform import TransformModule
from torch import nn
from torch.distributions import constraints
from torch.optim.optimizer import register_optimizer_step_post_hook


class _OptimizerStepCounter:
    """Counts ``optimizer.step()`` calls of every torch optimizer (Pyro's wrap them).

    Part of every cache key, so that a cached result never outlives a parameter update, even
    for fused optimizers, which update parameters without bumping their version counters.
    """

    count = 0

    @classmethod
    def bump(cls, optimizer: Any, args: Any, kwargs: Any) -> None:
        cls.count += 1


register_optimizer_step_post_hook(_OptimizerStepCounter.bump)


class _CacheEntry(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor
    log_det: torch.Tensor
    key: tuple[int, int]


class FlowTransform(TransformModule):
    """Base class of pyro-glow's layers.

    Subclasses implement two fused maps, both returning the log-determinant of the
    *generative* map (a tensor of the batch shape):

    - ``_forward_and_log_det(x) -> (y, log|det dy/dx|)``
    - ``_inverse_and_log_det(y) -> (x, log|det dy/dx|)``

    and ``_check_input(x, name)``, which raises ``ValueError``/``TypeError`` on a tensor
    of the wrong shape or dtype.

    Caching. With ``cache_size=1`` (the default, as for Pyro's own TransformModules) the last
    ``(x, y, log_det)`` is kept: ``TransformedDistribution.log_prob`` inverts each layer, then
    asks for ``log_abs_det_jacobian(x, y)`` of the same tensors and gets the stored value, so
    every network runs once per evaluation. An entry is used only while the parameters are
    unchanged (keyed on the parameters' version counters and on a count of optimizer steps),
    and is dropped once its log-determinant has been handed out, so a stale value cannot be
    returned and the autograd graph of the last step is not kept alive.
    """

    bijective = True

    def __init__(self, event_dim: int, cache_size: int = 1) -> None:
        if event_dim not in (1, 3):
            raise ValueError(
                f"{type(self).__name__}: event_dim must be 1 (vectors [..., D]) or 3 "
                f"(images [..., C, H, W]); got {event_dim!r}"
            )
        super().__init__(cache_size=cache_size)
        self._event_dim = event_dim
        self._entry: _CacheEntry | None = None
        self._tracked: tuple[torch.Tensor, ...] | None = None
        # Plain attributes, not properties: ComposeTransform and TransformedDistribution
        # query them many times per step.
        self.domain = constraints.independent(constraints.real, event_dim)
        self.codomain = constraints.independent(constraints.real, event_dim)

    def _forward_and_log_det(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _inverse_and_log_det(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _check_input(self, x: torch.Tensor, name: str) -> None:
        check_tensor(x, self._event_dim, type(self).__name__, name)
        if self._tracked is None:
            self._tracked = tuple(self.parameters())
        if self._tracked:
            check_device_and_dtype(x, self._tracked[0], type(self).__name__, name)

    def _check_channels(self, x: torch.Tensor, name: str, features: int) -> None:
        """``ValueError`` unless ``x`` has ``features`` channels (coordinates for vectors)."""
        channel_dim = -3 if self._event_dim == 3 else -1
        if x.shape[channel_dim] != features:
            layout = "[..., C, H, W]" if self._event_dim == 3 else "[..., D]"
            raise ValueError(
                f"{type(self).__name__}(features={features}): {name} of shape {list(x.shape)} "
                f"has {x.shape[channel_dim]} channels in {layout}; expected {features}"
            )

    def forward_and_log_det(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Generative map and its log-determinant in one pass (no caching)."""
        self._check_input(x, "input")
        return self._forward_and_log_det(x)

    def inverse_and_log_det(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalizing map and the generative log-determinant at its output (no caching)."""
        self._check_input(y, "input of the inverse")
        return self._inverse_and_log_det(y)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_and_log_det(x)[0]

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.inverse_and_log_det(y)[0]

    def _cache_key(self) -> tuple[int, int]:
        if self._tracked is None:
            self._tracked = tuple(self.parameters())
        return _OptimizerStepCounter.count, sum(p._version for p in self._tracked)

    def _apply(self, fn: Any, recurse: bool = True) -> FlowTransform:
        self._tracked = None  # .to() / .double() may replace tensors
        return super()._apply(fn, recurse)

    def _cached(self) -> _CacheEntry | None:
        entry = self._entry
        if entry is None or self._cache_size == 0:
            return None
        if entry.key != self._cache_key():
            self._entry = None
            return None
        return entry

    def _store(self, x: torch.Tensor, y: torch.Tensor, log_det: torch.Tensor) -> None:
        if self._cache_size and not torch.compiler.is_compiling():
            self._entry = _CacheEntry(x, y, log_det, self._cache_key())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        entry = self._cached()
        if entry is not None and entry.x is x:
            return entry.y
        y, log_det = self.forward_and_log_det(x)
        self._store(x, y, log_det)
        return y

    def _inv_call(self, y: torch.Tensor) -> torch.Tensor:
        entry = self._cached()
        if entry is not None and entry.y is y:
            return entry.x
        x, log_det = self.inverse_and_log_det(y)
        self._store(x, y, log_det)
        return x

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        entry = self._cached()
        if entry is not None and entry.x is x and entry.y is y:
            self._entry = None
            return entry.log_det
        return self.forward_and_log_det(x)[1]

    def clear_cache(self) -> None:
        """Forget the cached ``(x, y, log_det)``."""
        self._entry = None

    def with_cache(self, cache_size: int = 1) -> FlowTransform:
        """The same layer (constructor arguments and parameters shared), another cache size."""
        if cache_size == self._cache_size:
            return self
        if cache_size not in (0, 1):
            raise ValueError(f"cache_size must be 0 or 1; got {cache_size!r}")
        twin = copy.copy(self)
        twin._cache_size = cache_size
        twin._entry = None
        twin._tracked = None
        twin._inv = None
        return twin

    __repr__ = nn.Module.__repr__

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_entry"] = None
        return state


def check_tensor(x: Any, event_dim: int, owner: str, name: str = "input") -> None:
    """Raise a ``TypeError``/``ValueError`` naming the problem unless ``x`` is a floating
    tensor with at least ``event_dim`` dimensions."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{owner}: {name} must be a floating-point tensor; got dtype {x.dtype} "
            "(convert images with x.float() / 255 or a dequantization step first)"
        )
    if x.dim() < event_dim:
        layout = "[..., C, H, W]" if event_dim == 3 else "[..., D]"
        raise ValueError(
            f"{owner}: {name} must have shape {layout} ({event_dim} event dim(s)); "
            f"got shape {list(x.shape)}"
        )


def check_device_and_dtype(
    x: torch.Tensor, reference: torch.Tensor, owner: str, name: str = "input"
) -> None:
    """``ValueError`` unless ``x`` is on ``reference``'s device, ``TypeError`` unless it has
    its dtype (``reference``: a parameter or buffer of the model that receives ``x``)."""
    if x.device != reference.device:
        raise ValueError(
            f"{owner}: {name} is on device {x.device} but the model is on {reference.device}; "
            f"move one of them (x.to({str(reference.device)!r}) or model.to({str(x.device)!r}))"
        )
    if x.dtype != reference.dtype:
        raise TypeError(
            f"{owner}: {name} has dtype {x.dtype} but the model's parameters are "
            f"{reference.dtype}; convert one of them (x.to({reference.dtype}) or "
            f"model.to({x.dtype}))"
        )


def batch_shape_of(x: torch.Tensor, event_dim: int) -> torch.Size:
    return x.shape[: x.dim() - event_dim]


def flatten_batch(x: torch.Tensor, event_dim: int) -> torch.Tensor:
    """``[*batch, *event] -> [prod(batch), *event]`` (works for an empty or scalar batch;
    ``x`` itself when it already has one batch dimension)."""
    if x.dim() == event_dim + 1:
        return x
    event_shape = x.shape[x.dim() - event_dim :]
    return x.reshape((math.prod(batch_shape_of(x, event_dim)),) + tuple(event_shape))


def in_dtype(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` in ``dtype`` (``x`` itself, without a call into torch, when it already is): under
    bfloat16 autocast products and networks return bfloat16, and the flow's stream keeps the
    data's dtype."""
    return x if x.dtype == dtype else x.to(dtype)


def soft_clamp(raw: torch.Tensor, bound: float, negate: bool = False) -> torch.Tensor:
    """``bound * tanh(raw / bound)``: the identity near 0, smooth, within ``(-bound, bound)``;
    with ``negate``, its negative at no extra cost (one element-wise pass fewer than ``-s``)."""
    return (-bound if negate else bound) * torch.tanh(raw * (1.0 / bound))
