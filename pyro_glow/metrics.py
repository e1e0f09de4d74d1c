r"""Dequantization of images and bits per dimension.

Images are integers: with ``n_bits`` bits per channel, a pixel value is a level
:math:`k \in \{0, \dots, 2^n - 1\}` (:func:`quantize` reduces 8-bit data to ``n_bits``).
A flow is a density on the continuous :math:`y \in [0, 1)^D`, so the levels are first
*dequantized* (:func:`dequantize`), uniformly inside their bins:

.. math::

    y = (k + u) / 2^n, \qquad u \sim \mathcal{U}[0, 1)^D.

A density :math:`p` on :math:`[0, 1)^D` defines a discrete model of the levels, the mass of
each level's bin :math:`B_k = \prod_i [k_i 2^{-n}, (k_i + 1) 2^{-n})`, of volume
:math:`2^{-nD}`:

.. math::

    P(k) = \int_{B_k} p(y)\, dy = 2^{-nD}\, \mathbb{E}_u\, p\big((k + u) / 2^n\big)
    \quad\Rightarrow\quad
    \log P(k) \ge \mathbb{E}_u \log p\big((k + u) / 2^n\big) - nD \log 2

(substituting :math:`y = (k + u) / 2^n`, whose Jacobian is :math:`2^{-nD}`, then Jensen's
inequality). The bits per dimension :math:`-\log_2 P(k) / D` of the discrete model are
therefore bounded above, in expectation over the noise :math:`u`, by what
:func:`bits_per_dim` reports,

.. math::

    \text{bits/dim} = -\frac{\log p(y) - nD \log 2}{D \log 2}
                    = -\frac{\log p(y)}{D \log 2} + n,

the figure published for Glow and other flows (3.35 bits/dim on CIFAR-10 at 8 bits).
``log p(y)`` must be the density of ``y`` in :math:`[0, 1)^D` itself: if the model sees a
transformed ``y`` (centred, scaled, through a logit), add that map's log-determinant first.
"""

from __future__ import annotations

import math
import numbers

import torch


def _check_n_bits(owner: str, n_bits: object) -> int:
    if (
        not isinstance(n_bits, numbers.Integral)
        or isinstance(n_bits, bool)
        or not (1 <= n_bits <= 8)
    ):
        raise ValueError(f"{owner}: n_bits must be an int from 1 to 8; got {n_bits!r}")
    return int(n_bits)


def quantize(x: torch.Tensor, n_bits: int = 8) -> torch.Tensor:
    """The ``n_bits``-bit levels of 8-bit pixel values: ``x // 2**(8 - n_bits)``.

    Args:
        x: 8-bit pixel values, a ``uint8`` tensor (any other integer dtype is accepted when
            its values lie in ``[0, 255]``).
        n_bits: bits per value kept, 1 to 8 (8 keeps ``x`` as it is).

    Returns:
        Integer levels in ``[0, 2**n_bits)``, same shape and dtype as ``x``.

    Raises:
        TypeError: if ``x`` is not a tensor of an integer dtype (floating or bool).
        ValueError: if ``n_bits`` is not 1..8 or an integer ``x`` has values outside
            ``[0, 255]``.

    Example:
        >>> quantize(torch.tensor([0, 7, 8, 255], dtype=torch.uint8), n_bits=5)
        tensor([ 0,  0,  1, 31], dtype=torch.uint8)
    """
    n_bits = _check_n_bits("quantize", n_bits)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"quantize: x must be a torch.Tensor; got {type(x).__name__}")
    if x.dtype != torch.uint8:
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise TypeError(
                f"quantize: x must hold 8-bit pixel values as uint8 (or another integer "
                f"dtype); got dtype {x.dtype} (convert with (x * 255).round().to(torch.uint8) "
                "if it holds values in [0, 1])"
            )
        if x.numel() and (x.min() < 0 or x.max() > 255):
            raise ValueError(
                f"quantize: integer x must hold 8-bit values in [0, 255]; got values in "
                f"[{x.min().item()}, {x.max().item()}]"
            )
    return x // 2 ** (8 - n_bits)


def dequantize(
    x: torch.Tensor, n_bits: int = 8, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Uniformly dequantized 8-bit pixel values: ``y = (k + u) / 2**n_bits`` in ``[0, 1)``.

    ``k = quantize(x, n_bits)`` and ``u ~ U[0, 1)`` elementwise (fresh noise on every call, from
    ``generator`` if given), so ``y`` is uniform on the bin of ``k`` and
    ``floor(y * 2**n_bits) == k``. Evaluate a density of ``y`` with :func:`bits_per_dim`.

    Args:
        x: 8-bit pixel values (see :func:`quantize`), e.g. an image ``uint8 [..., C, H, W]``.
        n_bits: bits per value, 1 to 8.
        generator: the random generator of ``u`` (on ``x``'s device); the global one if None.

    Returns:
        A float32 tensor of ``x``'s shape with values in ``[0, 1)``.

    Example:
        >>> x = torch.tensor([0, 128, 255], dtype=torch.uint8)
        >>> y = dequantize(x, generator=torch.Generator().manual_seed(0))
        >>> y.dtype, bool(((y >= 0) & (y < 1)).all()), (y * 256).floor().tolist()
        (torch.float32, True, [0.0, 128.0, 255.0])
    """
    levels = quantize(x, n_bits)
    u = torch.rand(levels.shape, generator=generator, device=levels.device)
    y = (levels.to(torch.float32) + u) / 2**n_bits
    # (255 + u) / 256 rounds up to exactly 1.0 in float32 when u is within 2^-17 of 1.
    return y.clamp_(max=1.0 - 2.0**-24)


def bits_per_dim(log_prob: torch.Tensor, dims: int, n_bits: int = 8) -> torch.Tensor:
    r"""Bits per dimension of ``n_bits``-bit data from the log-density of its dequantization.

    For a density ``p`` on ``y = (k + u) / 2**n_bits`` in :math:`[0, 1)^D`, the discrete
    model's log-likelihood of the levels ``k`` is bounded below by
    :math:`\log p(y) - D n \log 2` (the bin of each level has volume :math:`2^{-nD}`; see the
    module's docstring), so

    .. math::

        \text{bits/dim} = -\frac{\log p(y) - D n \log 2}{D \log 2}
                        = -\frac{\log p(y)}{D \log 2} + n,

    an upper bound, in expectation over the dequantization noise, on the discrete model's
    :math:`-\log_2 P(k) / D`. A density uniform on :math:`[0, 1)^D` (``log_prob == 0``) gives
    exactly ``n_bits``.

    Args:
        log_prob: :math:`\log p(y)` in nats, any shape (one value per example); ``y`` must be
            the data in :math:`[0, 1)^D` itself (add the log-determinant of any further
            preprocessing first).
        dims: :math:`D`, the number of values per example (e.g. ``3 * 32 * 32``).
        n_bits: bits per value of the data, 1 to 8.

    Returns:
        Bits per dimension, ``log_prob``'s shape and floating dtype.

    Example:
        >>> bits_per_dim(torch.tensor([0.0, -3072 * math.log(2)]), dims=3072)
        tensor([8., 9.])
    """
    n_bits = _check_n_bits("bits_per_dim", n_bits)
    if not isinstance(dims, numbers.Integral) or isinstance(dims, bool) or dims < 1:
        raise ValueError(f"bits_per_dim: dims must be an int >= 1; got {dims!r}")
    if not isinstance(log_prob, torch.Tensor):
        raise TypeError(
            f"bits_per_dim: log_prob must be a torch.Tensor; got {type(log_prob).__name__}"
        )
    if not log_prob.is_floating_point():
        raise TypeError(
            f"bits_per_dim: log_prob must be a floating-point tensor; got dtype {log_prob.dtype}"
        )
    return -log_prob / (int(dims) * math.log(2)) + n_bits


def to_image(y: torch.Tensor, n_bits: int = 8) -> torch.Tensor:
    """Pixel values of ``y`` in ``[0, 1)`` for display, the inverse of :func:`dequantize`.

    ``y`` is clamped to ``[0, 1)`` (a model's samples may leave it; NaN becomes 0), reduced to
    its ``n_bits`` level ``floor(y * 2**n_bits)`` and scaled back to 8 bits,
    ``level * 2**(8 - n_bits)``, so ``to_image(dequantize(x, n), n)`` is ``x`` with its
    low ``8 - n`` bits cleared.

    Args:
        y: a floating tensor, e.g. samples ``[..., C, H, W]``.
        n_bits: bits per value, 1 to 8.

    Returns:
        A ``uint8`` tensor of ``y``'s shape.

    Example:
        >>> to_image(torch.tensor([-0.2, 0.0, 0.5, 0.99, 1.0, 3.0]), n_bits=5)
        tensor([  0,   0, 128, 248, 248, 248], dtype=torch.uint8)
    """
    n_bits = _check_n_bits("to_image", n_bits)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"to_image: y must be a torch.Tensor; got {type(y).__name__}")
    if not y.is_floating_point():
        raise TypeError(f"to_image: y must be a floating-point tensor; got dtype {y.dtype}")
    levels = torch.floor(torch.nan_to_num(y, nan=0.0) * 2**n_bits).clamp(0, 2**n_bits - 1)
    return (levels * 2 ** (8 - n_bits)).to(torch.uint8)
