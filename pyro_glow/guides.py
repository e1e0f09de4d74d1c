"""Glow flows as Pyro variational guides.

Three entry points, from least to most hand-written:

- :func:`glow_transform`: a transform factory for Pyro's own
  ``AutoNormalizingFlow(model, init_transform_fn)``; Pyro calls it with the latent dimension.
- :class:`AutoGlow`: an ``AutoContinuous`` guide (one flow over all latent sites, flattened and
  concatenated in the unconstrained space) that also starts where Pyro's other autoguides
  start: at ``init_loc_fn``'s point with spread ``init_scale``.
- :class:`SiteFlows`: one flow per latent site for hand-written guides, with a multi-scale
  convolutional Glow for image-shaped ``(C, H, W)`` sites. The sites are independent of each
  other (mean field across sites), so ``TraceMeanField_ELBO`` applies as well as
  ``Trace_ELBO``.

ActNorm in a guide. A guide runs its flow only in the generative direction, on samples of the
standard-normal base. ActNorm's data-dependent initialisation would then standardise draws
that are already standard, which only adds sampling noise to the starting point, and it would
happen on whichever call first draws more than one sample. Every guide here therefore
initialises ActNorm as the identity by default (``actnorm_init="identity"``: the layer is
marked initialised when built, and starts at scale 1 and shift 0). ``actnorm_init="data"``
keeps the data-dependent initialisation on the first batch of two or more samples that passes
through the layer, in the generative direction (the layer's *output* is standardised).

Activation. The coupling networks use ReLU unless ``activation="silu"``. SiLU's smooth
conditioners fit a smooth, oscillating posterior better (the exact-KL benchmark's U2:
0.005 nats against ReLU's 0.007) but a posterior with a thin second branch worse (U3: 0.022
against 0.014; ``docs/guides.md``), so neither is better everywhere and ReLU stays the default.

Reference: Rezende & Mohamed, "Variational Inference with Normalizing Flows",
arXiv:1505.05770; Kingma & Dhariwal, Glow, arXiv:1807.03039.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.torch_transform import ComposeTransformModule
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_median
from torch import nn
from torch.distributions import ReshapeTransform, biject_to, constraints
from torch.distributions.constraints import Constraint

from .builders import flow_steps, glow_level
from .nets import check_activation
from .transforms import ActNorm, ElementwiseAffine

ACTNORM_INITS = ("identity", "data")


def _check_options(
    owner: str, steps: int, hidden: int, actnorm_init: str, activation: str = "relu"
) -> None:
    check_activation(owner, activation)
    for name, value in (("steps", steps), ("hidden", hidden)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive int; got {value!r}")
    if actnorm_init not in ACTNORM_INITS:
        raise ValueError(
            f"{owner}: actnorm_init must be one of {ACTNORM_INITS}; got {actnorm_init!r}"
        )


def set_actnorm_identity(transform: nn.Module) -> nn.Module:
    """Mark every ActNorm inside ``transform`` as initialised, so each keeps its current
    parameters (the identity for a new layer) instead of initialising on the first batch.
    Returns ``transform``."""
    for module in transform.modules():
        if isinstance(module, ActNorm):
            module.initialized.fill_(True)
    return transform


def vector_glow(
    dim: int,
    steps: int = 4,
    hidden: int = 32,
    additive: bool = False,
    actnorm_init: str = "identity",
    activation: str = "relu",
) -> ComposeTransformModule:
    """``steps`` vector Glow steps over ``R^dim`` in generative order (see
    :func:`pyro_glow.builders.flow_steps`). A coupling needs two coordinates, so ``dim=1``
    gets a learned affine map instead (a Gaussian guide)."""
    _check_options("vector_glow", steps, hidden, actnorm_init, activation)
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"vector_glow: dim must be a positive int; got {dim!r}")
    if dim == 1:
        return ComposeTransformModule([ElementwiseAffine((1,))])
    transform = ComposeTransformModule(flow_steps(dim, steps, hidden, 1, additive, activation))
    return set_actnorm_identity(transform) if actnorm_init == "identity" else transform


def glow_transform(
    steps: int = 4,
    hidden: int = 32,
    additive: bool = False,
    actnorm_init: str = "identity",
    activation: str = "relu",
) -> Callable[[int], ComposeTransformModule]:
    """A factory ``dim -> transform`` for ``pyro.infer.autoguide.AutoNormalizingFlow``.

    Each call builds a fresh vector Glow of ``steps`` steps (ActNorm, invertible linear map,
    affine coupling with an MLP of ``hidden`` units). ActNorm starts as the identity unless
    ``actnorm_init="data"`` (see the module docstring).

    Example:
        >>> import pyro, pyro.distributions as dist
        >>> from pyro.infer.autoguide import AutoNormalizingFlow
        >>> def model():
        ...     pyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        >>> guide = AutoNormalizingFlow(model, glow_transform(steps=2, hidden=8))
        >>> guide()["z"].shape
        torch.Size([3])
    """
    _check_options("glow_transform", steps, hidden, actnorm_init, activation)

    def make(dim: int) -> ComposeTransformModule:
        return vector_glow(dim, steps, hidden, additive, actnorm_init, activation)

    return make


def _outer_affine(
    shape: Sequence[int], loc: torch.Tensor | float, init_scale: float
) -> ElementwiseAffine:
    return ElementwiseAffine(tuple(shape), loc=loc, log_scale=math.log(init_scale))


class AutoGlow(AutoContinuous):
    r"""An autoguide whose posterior is a vector Glow over all latent sites.

    .. math:: \zeta = \mu + \sigma_0 \odot e^{s} \odot f(\epsilon), \quad
       \epsilon \sim \mathcal N(0, I), \qquad
       \log q(\zeta) = \log \mathcal N(\epsilon) - \log|\det J_f(\epsilon)| - \sum_i
       (\log\sigma_{0,i} + s_i),

    in the unconstrained space (Pyro's ``AutoContinuous``: every site is mapped by
    ``biject_to(support)``, flattened and concatenated). :math:`f` is ``steps`` Glow steps;
    the outer element-wise affine map starts at :math:`\mu` = the point of ``init_loc_fn``
    and :math:`\sigma_0` = ``init_scale`` (with :math:`s = 0`), like ``AutoNormal``.
    Pyro's ``AutoNormalizingFlow`` with :func:`glow_transform` is the same flow started at
    the origin with unit spread.

    Example:
        >>> import pyro, pyro.distributions as dist
        >>> def model():
        ...     scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        ...     pyro.sample("w", dist.Normal(0.0, scale).expand([2]).to_event(1))
        >>> guide = AutoGlow(model, steps=2, hidden=8)
        >>> sample = guide()
        >>> sample["w"].shape, bool(sample["scale"] > 0)
        (torch.Size([2]), True)

    Reference: Rezende & Mohamed, arXiv:1505.05770; Glow, arXiv:1807.03039.

    Args:
        model: the Pyro model.
        steps: Glow steps.
        hidden: hidden units of each coupling's MLP.
        additive: NICE's additive couplings.
        init_loc_fn: per-site initial point (Pyro's ``autoguide.initialization``).
        init_scale: initial spread of the guide around that point (positive).
        actnorm_init: ``"identity"`` (default) or ``"data"`` (see the module docstring).
        activation: the coupling MLPs' nonlinearity (see the module docstring).
    """

    def __init__(
        self,
        model: Callable,
        steps: int = 4,
        hidden: int = 32,
        additive: bool = False,
        init_loc_fn: Callable = init_to_median,
        init_scale: float = 0.1,
        actnorm_init: str = "identity",
        activation: str = "relu",
    ) -> None:
        _check_options("AutoGlow", steps, hidden, actnorm_init, activation)
        if not init_scale > 0:
            raise ValueError(f"AutoGlow: init_scale must be positive; got {init_scale!r}")
        self._steps, self._hidden, self._additive = steps, hidden, additive
        self._init_scale, self._actnorm_init = init_scale, actnorm_init
        self._activation = activation
        self.transform: ComposeTransformModule | None = None
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs) -> None:
        super()._setup_prototype(*args, **kwargs)
        steps = vector_glow(
            self.latent_dim,
            self._steps,
            self._hidden,
            self._additive,
            self._actnorm_init,
            self._activation,
        )
        outer = _outer_affine((self.latent_dim,), self._init_loc(), self._init_scale)
        self.transform = ComposeTransformModule(list(steps) + [outer])

    def get_base_dist(self) -> dist.Distribution:
        prototype = next(self.transform.parameters())
        return dist.Normal(prototype.new_zeros(()), 1.0).expand([self.latent_dim]).to_event(1)

    def get_transform(self, *args, **kwargs) -> ComposeTransformModule:
        return self.transform


class SiteFlows(nn.Module):
    r"""One flow per latent site, for hand-written guides.

    For a scalar site (shape ``()``) the flow is a learned affine map (a Gaussian), for a
    site of shape ``(D,)`` a vector Glow of ``steps`` steps; for an
    image-shaped site ``(C, H, W)`` it is the multi-scale Glow of ``levels`` levels
    (convolutional couplings; H and W divisible by ``2**levels``). Each flow ends with a
    learned element-wise affine map started at shift 0 and scale ``init_scale``, and, for a
    constrained site, ``biject_to(support)``:

    .. math:: q(z_{\text{site}}) = (T_{\text{support}} \circ A \circ f)_\# \mathcal N(0, I).

    The sites are independent of each other: ``Trace_ELBO`` and ``TraceMeanField_ELBO`` both
    apply. For correlations between sites use :class:`AutoGlow` (one flow over all of them).

    Use :meth:`sample` inside a guide (any ``pyro.plate`` around it is the caller's), or
    :meth:`guide` to sample every site:

    .. code-block:: python

        flows = SiteFlows({"w": (5,), "image": (1, 8, 8)}, supports={})

        def guide(data):
            pyro.module("flows", flows)
            flows.sample("w")
            flows.sample("image")

    Example:
        >>> flows = SiteFlows({"w": (3,), "tau": (1,)}, steps=2, hidden=8,
        ...                   supports={"tau": dist.constraints.positive})
        >>> values = flows.guide()
        >>> values["w"].shape, bool((values["tau"] > 0).all())
        (torch.Size([3]), True)

    Args:
        sites: site name -> shape ``()``, ``(D,)`` or ``(C, H, W)``.
        steps: flow steps (per level for image sites).
        hidden: units (vector sites) or channels (image sites) of each coupling network.
        levels: levels of the multi-scale Glow of image sites.
        supports: site name -> constraint, for sites that are not real-valued.
        init_scale: initial spread of every site's guide (positive).
        actnorm_init: ``"identity"`` (default) or ``"data"`` (see the module docstring).
        activation: the coupling networks' nonlinearity (see the module docstring).
        name: the name :meth:`guide` registers the module under with ``pyro.module``.
    """

    def __init__(
        self,
        sites: Mapping[str, Sequence[int]],
        steps: int = 4,
        hidden: int = 32,
        levels: int = 1,
        supports: Mapping[str, Constraint] | None = None,
        init_scale: float = 1.0,
        actnorm_init: str = "identity",
        activation: str = "relu",
        name: str = "site_flows",
    ) -> None:
        super().__init__()
        _check_options("SiteFlows", steps, hidden, actnorm_init, activation)
        if not isinstance(sites, Mapping) or not sites:
            raise ValueError("SiteFlows: sites must be a non-empty mapping name -> shape")
        supports = dict(supports or {})
        unknown = sorted(set(supports) - set(sites))
        if unknown:
            raise ValueError(f"SiteFlows: supports names unknown sites {unknown}")
        if not init_scale > 0:
            raise ValueError(f"SiteFlows: init_scale must be positive; got {init_scale!r}")
        self.name = name
        self.shapes = {
            site: self._check_shape(site, shape, levels) for site, shape in sites.items()
        }
        self.supports = {site: supports.get(site, constraints.real) for site in sites}
        self.flows = nn.ModuleDict()
        for site, shape in self.shapes.items():
            if len(shape) <= 1:
                dim = shape[0] if shape else 1
                parts = list(
                    vector_glow(
                        dim, steps, hidden, actnorm_init=actnorm_init, activation=activation
                    )
                )
            else:
                level = glow_level(shape[0], levels, steps, hidden, activation=activation)
                if actnorm_init == "identity":
                    set_actnorm_identity(level)
                parts = [level]
            parts.append(_outer_affine(shape or (1,), 0.0, init_scale))
            self.flows[site] = ComposeTransformModule(parts)

    @staticmethod
    def _check_shape(site: str, shape: Sequence[int], levels: int) -> tuple[int, ...]:
        shape = tuple(shape)
        if len(shape) not in (0, 1, 3) or not all(isinstance(n, int) and n >= 1 for n in shape):
            raise ValueError(
                f"SiteFlows: site {site!r} must have shape (), (D,) or (C, H, W) of positive "
                "ints; "
                f"got {shape!r} (flatten other shapes, or use AutoGlow)"
            )
        if len(shape) == 3:
            factor = 2**levels
            if shape[1] % factor or shape[2] % factor:
                raise ValueError(
                    f"SiteFlows: site {site!r} of shape {shape}: {levels} level(s) need H and W "
                    f"divisible by {factor}"
                )
        return shape

    def distribution(self, site: str) -> dist.TransformedDistribution:
        """The guide distribution of ``site`` (event shape = the site's shape)."""
        if site not in self.flows:
            raise KeyError(f"SiteFlows: unknown site {site!r}; sites are {list(self.flows)}")
        shape = self.shapes[site]
        prototype = next(self.flows[site].parameters())
        base = dist.Normal(prototype.new_zeros(shape or (1,)), 1.0).to_event(len(shape or (1,)))
        transforms = [self.flows[site]]
        if not shape:
            transforms.append(ReshapeTransform((1,), ()))
        if self.supports[site] is not constraints.real:
            transforms.append(biject_to(self.supports[site]))
        return dist.TransformedDistribution(base, transforms)

    def sample(self, site: str) -> torch.Tensor:
        """``pyro.sample(site, self.distribution(site))``."""
        return pyro.sample(site, self.distribution(site))

    def guide(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """A guide for any model whose latent sites are exactly these: registers the module
        with ``pyro.module`` and samples every site (the model's arguments are ignored)."""
        pyro.module(self.name, self)
        return {site: self.sample(site) for site in self.flows}
