"""Flow: a prior and a transform, the model object users train and sample."""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.torch_transform import ComposeTransformModule
from pyro.params.param_store import param_with_module_name
from torch import nn
from torch.distributions import ComposeTransform, Transform, constraints
from torch.nn.modules.module import (
    register_module_module_registration_hook,
    register_module_parameter_registration_hook,
)

from .transforms.actnorm import ActNorm
from .transforms.base import FlowTransform, check_device_and_dtype, check_tensor
from .transforms.compose import forward_and_log_det, inverse_and_log_det


class _ModuleTreeVersion:
    """Counts the parameters and submodules registered on any ``nn.Module`` of the process.

    Part of the key of a :class:`Flow`'s kept list of its parameters and layers: a list
    taken at one count is still the flow's as long as the count has not moved (a parameter or
    submodule replaced anywhere in the flow registers itself and moves it) and the flow's
    tensors have not been converted (``Flow._apply`` drops the list).
    """

    count = 0

    @classmethod
    def bump(cls, module: nn.Module, name: str, value: Any) -> None:
        cls.count += 1


register_module_parameter_registration_hook(_ModuleTreeVersion.bump)
register_module_module_registration_hook(_ModuleTreeVersion.bump)


class FlowLayers(ComposeTransformModule):
    """A flow's layers: Pyro's ``ComposeTransformModule`` (same parts, same ``state_dict``
    keys) whose ``domain`` and ``codomain`` are worked out once.

    ``ComposeTransform`` recomputes both on every query by walking all its parts, and
    ``TransformedDistribution`` queries them about sixteen times for each distribution it
    builds, which is every ``flow()`` call, every SVI step. A flow's layers do not change
    after it is built, so the answers are kept.
    """

    @functools.cached_property
    def domain(self) -> constraints.Constraint:  # type: ignore[override]
        return ComposeTransformModule.domain.fget(self)

    @functools.cached_property
    def codomain(self) -> constraints.Constraint:  # type: ignore[override]
        return ComposeTransformModule.codomain.fget(self)


class FlowDistribution(dist.TransformedDistribution):
    """The distribution a :class:`Flow` returns: Pyro's ``TransformedDistribution``, whose
    ``log_prob`` of a value it did not draw itself takes one fused normalizing pass.

    ``TransformedDistribution.log_prob`` inverts the layers one by one and then asks each
    for its log-determinant; pyro-glow's layers hand that back from a cache, but the
    bookkeeping per layer is Python work that shows on small models (docs/benchmarks.md,
    SVI's overhead). Here each layer computes its inverse and log-determinant together
    (:func:`~pyro_glow.transforms.compose.inverse_and_log_det`), the same value with less
    Python. A value this distribution drew itself (``sample``/``rsample``, as a guide's
    draw is scored) keeps the cached path, which needs no inverse at all. ``density``, if
    given, computes the log-density of other values instead while gradients are enabled
    (:meth:`Flow.compile_density` passes its compiled graph); ``expand`` keeps it.
    """

    def __init__(
        self,
        base_distribution: dist.Distribution,
        transforms: Transform | list[Transform],
        validate_args: bool | None = None,
        *,
        density: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(base_distribution, transforms, validate_args=validate_args)
        self._density = density

    def expand(
        self, batch_shape: torch.Size | tuple[int, ...], _instance: FlowDistribution | None = None
    ) -> FlowDistribution:
        new = self._get_checked_instance(FlowDistribution, _instance)
        new = super().expand(batch_shape, _instance=new)
        new._density = self._density
        return new

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        self._drawn = super().rsample(sample_shape)
        return self._drawn

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        self._drawn = super().sample(sample_shape)
        return self._drawn

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if value is getattr(self, "_drawn", None):
            return super().log_prob(value)
        if self._validate_args:
            self._validate_sample(value)
        if self._density is not None and torch.is_grad_enabled():
            return self._density(value)
        transform = (
            self.transforms[0] if len(self.transforms) == 1 else ComposeTransform(self.transforms)
        )
        z, log_det = inverse_and_log_det(transform, value)
        return self.base_dist.log_prob(z) - log_det


class Flow(nn.Module):
    r"""A normalizing flow: ``x = transform(z)`` with ``z ~ prior()``.

    Calling the module returns a fresh ``pyro.distributions.TransformedDistribution`` (the
    layers' caches are cleared first), so it goes straight into Pyro:

    .. code-block:: python

        def model(x):
            flow.pyro_module("flow")   # pyro.module("flow", flow), faster
            with pyro.plate("data", len(x)):
                pyro.sample("x", flow(), obs=x)

    Density: :math:`\log p(x) = \log p_Z(f^{-1}(x)) - \log|\det J_f(f^{-1}(x))|`.

    Args:
        prior: an ``nn.Module`` whose call returns a distribution with ``event_shape`` equal to
            the latent shape (see :mod:`pyro_glow.priors`).
        transform: the generative map, a ``ComposeTransformModule`` or a list of transforms
            (wrapped into one).
        data_range: ``(low, high)`` if the data are known to lie in that interval (a model of
            images dequantized to ``[0, 1)`` has ``(0.0, 1.0)``): :meth:`log_prob` then
            refuses values outside it, the usual sign of data in other units (pixels
            ``0..255``). ``None`` (default): any finite value.

    Example:
        >>> from pyro_glow import glow
        >>> flow = glow((2,), steps=2, hidden=8)
        >>> flow.log_prob(torch.zeros(5, 2)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        prior: nn.Module,
        transform: Transform | Sequence[Transform],
        data_range: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if data_range is not None and not data_range[0] < data_range[1]:
            raise ValueError(f"Flow: data_range must be (low, high), low < high; got {data_range}")
        self.data_range = data_range
        if type(transform) is ComposeTransformModule:
            transform = FlowLayers(transform.parts)
        elif not isinstance(transform, ComposeTransformModule):
            parts = [transform] if isinstance(transform, Transform) else list(transform)
            if not all(isinstance(part, Transform) for part in parts):
                raise TypeError("Flow: transform must be a Transform or a list of Transforms")
            transform = FlowLayers(parts)
        self.prior = prior
        self.transform = transform
        latent_shape = prior().event_shape
        self.event_shape = torch.Size(transform.forward_shape(latent_shape))
        self._kept_tree: tuple[int, tuple, tuple] | None = None
        self._compiled_density: Callable[[torch.Tensor], torch.Tensor] | None = None

    def _tree(self) -> tuple[tuple[tuple[str, nn.Parameter], ...], tuple[FlowTransform, ...]]:
        """``(named parameters, pyro-glow layers)``, kept between calls while no parameter
        or submodule has been registered anywhere (see :class:`_ModuleTreeVersion`): walking
        the module tree costs about 0.8 ms per SVI step for a 12-step moons flow."""
        kept = self._kept_tree
        if kept is None or kept[0] != _ModuleTreeVersion.count:
            layers = (m for m in self.transform.modules() if isinstance(m, FlowTransform))
            kept = (_ModuleTreeVersion.count, tuple(self.named_parameters()), tuple(layers))
            self._kept_tree = kept
        return kept[1], kept[2]

    def _apply(self, fn: Any, recurse: bool = True) -> Flow:
        self._kept_tree = None  # .to() / .double() may replace the parameters
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_kept_tree"] = None
        # A compiled density is bound to this flow's parameters: copies and pickles run
        # eagerly until compile_density is called on them.
        state["_compiled_density"] = None
        return state

    def pyro_module(self, name: str = "flow") -> Flow:
        """``pyro.module(name, self)`` for a model's hot path: the same ``pyro.param`` site,
        under the same name (``name$$$transform.0.net.weights``, ...), for every
        parameter that requires a gradient, without walking the module tree on every call.

        Unlike ``pyro.module``, it refuses to go on when Pyro's param store holds another
        tensor than the flow's own parameter under a name (an entry left by an earlier
        model under the same name, or a copy the store made of a non-contiguous
        parameter): SVI optimizes the store's tensors, so this flow would silently never
        train. ``pyro.clear_param_store()`` before building a new model avoids the first.

        Raises:
            ValueError: a parameter is not the tensor the param store holds for it.

        Example:
            >>> import pyro
            >>> from pyro import poutine
            >>> from pyro_glow import glow
            >>> pyro.clear_param_store()
            >>> flow = glow((2,), steps=1, hidden=4)
            >>> trace = poutine.trace(lambda: flow.pyro_module("flow")).get_trace()
            >>> sites = [site for site in trace.nodes.values() if site["type"] == "param"]
            >>> len(sites) == len(list(flow.parameters()))
            True
        """
        for param_name, parameter in self._tree()[0]:
            if parameter.requires_grad:
                full_name = param_with_module_name(name, param_name)
                stored = pyro.param(full_name, parameter)
                # Under poutine.lift the site returns a draw, not a stored tensor.
                if stored is not parameter and hasattr(stored, "unconstrained"):
                    raise ValueError(
                        f"Flow.pyro_module: Pyro's param store holds another tensor than this "
                        f"flow's parameter {param_name!r} under {full_name!r} (an entry of an "
                        "earlier model: call pyro.clear_param_store(); or a copy of a "
                        "non-contiguous parameter): SVI would train that tensor, not the flow"
                    )
            elif self.training:
                warnings.warn(
                    f"{param_name} was not registered in the param store because "
                    "requires_grad=False (as pyro.module). Call flow.train(False) to silence this",
                    stacklevel=2,
                )
        return self

    def clear_cache(self) -> None:
        """Forget every layer's cached ``(x, y, log_det)``."""
        for layer in self._tree()[1]:
            layer.clear_cache()

    def forward(self) -> FlowDistribution:
        """The flow as a Pyro distribution (built fresh, with empty layer caches)."""
        self.clear_cache()
        return FlowDistribution(self.prior(), self.transform, density=self._compiled_density)

    def check_data(self, x: torch.Tensor) -> None:
        """Raise ``TypeError``/``ValueError`` naming the problem unless ``x`` is a non-empty
        batch of shape ``[..., *event_shape]`` of finite values, on the model's device and of
        its dtype, inside ``data_range`` if the flow has one."""
        check_tensor(x, len(self.event_shape), "Flow", "data")
        if x.shape[x.dim() - len(self.event_shape) :] != self.event_shape:
            raise ValueError(
                f"Flow: data must have shape [..., {', '.join(map(str, self.event_shape))}]; "
                f"got {list(x.shape)}"
            )
        if x.numel() == 0:
            raise ValueError(f"Flow: data is an empty batch (shape {list(x.shape)})")
        reference = next(itertools.chain(self.parameters(), self.buffers()), None)
        if reference is not None:
            check_device_and_dtype(x, reference, "Flow", "data")
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            raise ValueError(
                f"Flow: data contains {int((~finite).sum())} NaN or Inf value(s) "
                f"(shape {list(x.shape)})"
            )
        if self.data_range is not None:
            low, high = self.data_range
            smallest, largest = x.min().item(), x.max().item()
            if smallest < low or largest > high:
                raise ValueError(
                    f"Flow: data values lie in [{smallest:.4g}, {largest:.4g}], outside the "
                    f"range [{low:.4g}, {high:.4g}] of the data this flow models (for 8-bit "
                    "images: dequantize the uint8 pixels with pyro_glow.metrics.dequantize)"
                )

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density of ``x`` (shape ``[..., *event_shape]``), one value per batch element.

        The same value as ``self().log_prob(x)``, computed in one fused normalizing pass
        (each network once, no layer caches, no Pyro bookkeeping): the fast path for plain
        PyTorch training loops, and one that ``torch.compile`` traces without graph breaks
        (the data checks, which need the values, are skipped while compiling).
        """
        if not torch.compiler.is_compiling():
            self.check_data(x)
        if self._compiled_density is not None and torch.is_grad_enabled():
            return self._compiled_density(x)
        return self._density(x)

    def _density(self, x: torch.Tensor) -> torch.Tensor:
        z, log_det = inverse_and_log_det(self.transform, x)
        return self.prior().log_prob(z) - log_det

    def compile_density(self, **options: Any) -> None:
        """Run the log-density of data through ``torch.compile(**options)`` from now on:
        :meth:`log_prob` and the ``log_prob`` of the distributions the flow returns (for
        values they did not draw themselves, as ``pyro.sample(..., obs=x)`` scores them) call
        one compiled graph, forward and backward (AOTAutograd), with the element-wise work
        of the layers fused. It is used where gradients are taken (training steps): under
        ``torch.no_grad`` (evaluation, plots over grids of other sizes, sampling) the eager
        path runs, which would otherwise compile an inference graph per new batch shape.
        The first call compiles (seconds to minutes); a new batch shape or dtype recompiles.
        Copies and pickles of the flow run eagerly until they are compiled themselves.

        ActNorm's data-dependent initialisation must have run (one :meth:`log_prob` of a
        batch), so that the compiled graph holds no initialisation branch; the trainer's
        ``--compile`` does that on its first batch.
        """
        pending = [
            name
            for name, module in self.named_modules()
            if isinstance(module, ActNorm) and not bool(module.initialized)
        ]
        if pending:
            raise ValueError(
                "Flow.compile_density: ActNorm layers are not initialised yet "
                f"({', '.join(pending[:3])}{', ...' if len(pending) > 3 else ''}); "
                "call flow.log_prob on a batch of data first"
            )
        self._compiled_density = torch.compile(self._density, **options)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """``n`` samples, the latent drawn at ``temperature`` (Glow's reduced-temperature
        sampling: 1.0 is the model itself, 0 the image of the prior's mode(s))."""
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"Flow.sample: n must be a non-negative int; got {n!r}")
        z = self.prior.sample((n,), temperature=temperature)
        return forward_and_log_det(self.transform, z)[0]
