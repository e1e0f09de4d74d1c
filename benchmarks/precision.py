"""Numerical precision of a float32 Glow: round trip x -> z -> x and log-det against float64.

    python benchmarks/precision.py [--steps 20] [--hidden 128] [--json FILE]

Model: L=3, K=16 Glow (``--hidden`` channels, affine coupling, LU 1x1 convolution) on
3x32x32 images, ActNorm initialised on a batch, then trained for ``--steps`` Adam steps
(lr 1e-3, clipping at 50) on smooth synthetic images (bilinearly upsampled 4x4 noise plus
pixel noise), which moves every coupling and split prior away from the identity they start
as. On 64 held-out images
it reports, in float32: the round-trip error ``max |f(f^{-1}(x)) - x|``; against a float64
copy of the same model: the latent error ``max |z32 - z64|`` and the log-determinant error
``max |logdet32 - logdet64|`` (absolute and relative) and in bits per dimension.
"""

from __future__ import annotations

import argparse
import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from harness import print_targets, target_row, write_json

from pyro_glow import glow
from pyro_glow.transforms import forward_and_log_det, inverse_and_log_det


def smooth_images(n: int, generator: torch.Generator) -> torch.Tensor:
    coarse = torch.rand(n, 3, 4, 4, generator=generator)
    fine = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    return (0.9 * fine + 0.1 * torch.rand(n, 3, 32, 32, generator=generator)).clamp(0, 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    flow = glow((3, 32, 32), levels=3, steps=16, hidden=args.hidden)
    flow.log_prob(smooth_images(64, generator))  # ActNorm initialisation
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)
    for _ in range(args.steps):
        loss = -flow.log_prob(smooth_images(32, generator)).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 50.0)
        optimizer.step()
    x = smooth_images(64, generator)
    exact = copy.deepcopy(flow).double()
    with torch.no_grad():
        z, log_det = inverse_and_log_det(flow.transform, x)
        x_back, _ = forward_and_log_det(flow.transform, z)
        z64, log_det64 = inverse_and_log_det(exact.transform, x.double())
    dims = x[0].numel()
    log_det_error = (log_det.double() - log_det64).abs()
    result = {
        "model": f"L=3 K=16 hidden {args.hidden}, {args.steps} training steps",
        "final_loss_nats": loss.item(),
        "round_trip_max_abs_error": (x_back - x).abs().max().item(),
        "latent_max_abs_error_vs_float64": (z.double() - z64).abs().max().item(),
        "latent_max_abs_value": z64.abs().max().item(),
        "log_det_max_abs_error_vs_float64": log_det_error.max().item(),
        "log_det_max_relative_error": (log_det_error / log_det64.abs()).max().item(),
        "log_det_mean_abs_value": log_det64.abs().mean().item(),
        "log_det_error_bits_per_dim": log_det_error.max().item() / (dims * math.log(2)),
    }
    print(f"float32 precision, {result['model']}, 64 images")
    for key, value in result.items():
        if key != "model":
            print(f"{key:36s} {value:12.3e}")
    error = result["round_trip_max_abs_error"]
    targets = [target_row("float32 round trip, max |f(f^-1(x)) - x|", error, 1e-4)]
    print_targets(targets)
    write_json(args.json, {"result": result, "targets": targets})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
