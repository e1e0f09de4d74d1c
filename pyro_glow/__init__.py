"""pyro-glow: Glow-style normalizing flows as Pyro TransformModules."""

from . import guides, priors, transforms
from .builders import glow
from .checks import check_transform
from .course_builders import nice, realnvp
from .flow import Flow
from .priors import DiagNormal, GaussianMixture, StandardNormal
from .training import load_checkpoint
from .transforms import (
    ActNorm,
    AffineCoupling,
    ElementwiseAffine,
    InvertibleConv1x1,
    PiecewiseLinear,
    Rescale,
    Split,
    Squeeze,
    Unsqueeze,
)

__version__ = "0.1.0"

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "DiagNormal",
    "ElementwiseAffine",
    "Flow",
    "GaussianMixture",
    "InvertibleConv1x1",
    "PiecewiseLinear",
    "Rescale",
    "Split",
    "Squeeze",
    "StandardNormal",
    "Unsqueeze",
    "check_transform",
    "glow",
    "guides",
    "load_checkpoint",
    "nice",
    "priors",
    "realnvp",
    "transforms",
]
