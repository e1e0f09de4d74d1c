"""check_transform: verify a layer's inverse and log-determinant (the course's FlowModule.check)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import ComposeTransform, Transform


def _clear_caches(transform: Transform) -> None:
    """Empty every cache of ``transform`` and of its parts, so that the next call computes."""
    pending = [transform]
    while pending:
        current = pending.pop()
        if hasattr(current, "clear_cache"):
            current.clear_cache()
        if getattr(current, "_cache_size", 0):
            current._cached_x_y = None, None
        if isinstance(current, ComposeTransform):
            pending.extend(current.parts)
        if isinstance(current, nn.Module):
            pending.extend(m for m in current.children() if isinstance(m, Transform))


def _max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item() if a.numel() else 0.0


def check_transform(transform: Transform, x: torch.Tensor, atol: float = 1e-6) -> dict[str, float]:
    """Check that ``transform`` is a correct bijection with a correct log-determinant at ``x``.

    Checks, each with caches emptied so that nothing is answered from memory:

    1. inverse of forward: ``inv(f(x)) == x``;
    2. forward of inverse: ``f(inv(y')) == y'`` at a point ``y'`` near ``f(x)``;
    3. ``log_abs_det_jacobian(x, f(x))`` has the batch shape of ``x``;
    4. it equals ``log|det|`` of the brute-force Jacobian (``torch.autograd.functional.jacobian``
       of each batch element's flattened event);
    5. the inverse's log-determinant is its negative.

    Use a small float64 ``x`` with a batch of at least two elements (a layer with
    data-dependent initialisation, such as ActNorm, initialises on the first call).

    Returns:
        The measured errors by check name.

    Raises:
        AssertionError: naming the check that failed and by how much.

    Example:
        >>> from pyro_glow.transforms import InvertibleConv1x1
        >>> layer = InvertibleConv1x1(3).double()
        >>> errors = check_transform(layer, torch.randn(2, 3, 4, 4, dtype=torch.float64))
        >>> sorted(errors)
        ['forward_of_inverse', 'inverse_log_det', 'inverse_of_forward', 'log_det']
    """
    event_dim = transform.domain.event_dim
    if x.dim() < event_dim:
        raise ValueError(f"check_transform: x needs at least {event_dim} dims; got {list(x.shape)}")
    batch_shape = x.shape[: x.dim() - event_dim]
    event_shape = x.shape[x.dim() - event_dim :]

    def fresh_forward(value: torch.Tensor) -> torch.Tensor:
        _clear_caches(transform)
        return transform(value)

    def fresh_inverse(value: torch.Tensor) -> torch.Tensor:
        _clear_caches(transform)
        return transform.inv(value)

    def fail(check: str, detail: str) -> None:
        raise AssertionError(
            f"check_transform({type(transform).__name__}): {check} failed: {detail}"
        )

    errors: dict[str, float] = {}
    with torch.no_grad():
        y = fresh_forward(x)
        errors["inverse_of_forward"] = _max_error(fresh_inverse(y), x)
        y_near = y + 0.1 * torch.randn_like(y)
        if not bool(transform.codomain.check(y_near).all()):
            y_near = y
        errors["forward_of_inverse"] = _max_error(fresh_forward(fresh_inverse(y_near)), y_near)
        _clear_caches(transform)
        log_det = transform.log_abs_det_jacobian(x, y)
        # The inverse's own log-det: the one TransformedDistribution.log_prob uses.
        inverse_log_det = transform.inv.log_abs_det_jacobian(y, fresh_inverse(y))
    for name in ("inverse_of_forward", "forward_of_inverse"):
        if not errors[name] <= atol:
            fail(name.replace("_", " "), f"max abs error {errors[name]:.3g} > atol {atol:.3g}")
    if log_det.shape != batch_shape:
        fail(
            "log-det shape",
            f"got {list(log_det.shape)}, expected the batch shape {list(batch_shape)}",
        )

    events = x.reshape((math.prod(batch_shape),) + tuple(event_shape))
    brute = []
    for event in events:
        jac = torch.autograd.functional.jacobian(
            lambda flat: fresh_forward(flat.reshape(event_shape)).reshape(-1), event.reshape(-1)
        )
        if jac.shape[0] != jac.shape[1]:
            fail("Jacobian", f"not square: {list(jac.shape)} (the map changes the dimension)")
        brute.append(torch.linalg.slogdet(jac).logabsdet)
    _clear_caches(transform)
    expected = torch.stack(brute).reshape(batch_shape) if brute else log_det
    scale = 1.0 + expected.abs().max().item() if expected.numel() else 1.0
    errors["log_det"] = _max_error(log_det, expected)
    if not errors["log_det"] <= atol * scale:
        fail(
            "log-det against the brute-force Jacobian",
            f"max abs error {errors['log_det']:.3g} > {atol * scale:.3g}",
        )
    errors["inverse_log_det"] = _max_error(inverse_log_det, -log_det)
    if not errors["inverse_log_det"] <= atol * scale:
        fail("inverse log-det = -log-det", f"max abs error {errors['inverse_log_det']:.3g}")
    return errors
