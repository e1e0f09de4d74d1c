"""pyro-glow's layers: each a ``pyro.distributions.TransformModule``."""

from .actnorm import ActNorm
from .affine import ElementwiseAffine
from .base import FlowTransform
from .compose import forward_and_log_det, inverse_and_log_det
from .conv1x1 import InvertibleConv1x1, lu_matrix
from .coupling import AffineCoupling
from .piecewise import PiecewiseLinear
from .rescale import Rescale
from .split import Split
from .squeeze import Squeeze, Unsqueeze

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "ElementwiseAffine",
    "FlowTransform",
    "InvertibleConv1x1",
    "PiecewiseLinear",
    "Rescale",
    "Split",
    "Squeeze",
    "Unsqueeze",
    "forward_and_log_det",
    "inverse_and_log_det",
    "lu_matrix",
]
