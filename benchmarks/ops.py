"""Op-level timings at Glow's shapes: 1x1 convolution, ActNorm and coupling, against peers.

    python benchmarks/ops.py [--repeats 30] [--quick] [--json FILE]

Glow's shapes for 3x32x32 images with L=3 (batch 32): 12 channels at 16x16, 24 at 8x8 and
48 at 4x4. Each row times "forward + inverse" (the generative map and the normalizing map,
each with its log-determinant, no gradients) of one layer, the candidates alternating
A B C A B C after warm-up, medians of ``--repeats`` timings of ``--inner`` calls each:

- ``InvertibleConv1x1`` against Pyro's ``GeneralizedChannelPermute`` (same LU weight), against
  normflows' ``Invertible1x1Conv(use_lu=True)``, and against the floor: two plain ``conv2d``
  calls with both weights computed beforehand;
- ``ActNorm`` against normflows' ``ActNorm`` and the floor (one ``addcmul`` each way);
- ``AffineCoupling`` (hidden 128) against normflows' ``AffineCouplingBlock`` with the same
  network, without gradients and as a training step (normalizing map, backward).

Needs ``pip install normflows``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from harness import alternate, check_parameter_counts, print_targets, target_row, write_json

from pyro_glow.transforms import ActNorm, AffineCoupling, InvertibleConv1x1

SHAPES = ((12, 16), (24, 8), (48, 4))
BATCH, HIDDEN = 32, 128


def _conv1x1_candidates(
    channels: int, x: torch.Tensor, counts: dict
) -> dict[str, Callable[[], object]]:
    import normflows as nf

    ours = InvertibleConv1x1(channels)
    pyro_gcp = dist.transforms.GeneralizedChannelPermute(channels)
    peer = nf.flows.Invertible1x1Conv(channels, use_lu=True)
    shape = f"{channels}x{x.shape[-2]}x{x.shape[-1]}"
    # pyro-glow and Pyro pack L, log|s| and U into one C x C tensor; normflows stores L and U
    # as full C x C tensors (masked): compare its free parameters, C^2 as on every side.
    counts[f"1x1 conv {shape} vs Pyro"] = check_parameter_counts(ours, pyro_gcp, "1x1 conv")
    peer_stored = sum(p.numel() for p in peer.parameters())
    counts[f"1x1 conv {shape} vs normflows (free parameters)"] = {
        "ours": sum(p.numel() for p in ours.parameters()),
        "peer": channels * channels,
        "peer_stored": peer_stored,
        "within_2_percent": sum(p.numel() for p in ours.parameters()) == channels * channels,
    }
    with torch.no_grad():
        weight = ours.weight()[:, :, None, None].clone()
        inverse = ours.inverse_weight()[:, :, None, None].clone()

    def ours_call() -> None:
        z, _ = ours.inverse_and_log_det(x)
        ours.forward_and_log_det(z)

    def pyro_call() -> None:
        z = pyro_gcp._inverse(x)
        pyro_gcp.log_abs_det_jacobian(z, x)
        y = pyro_gcp._call(z)
        pyro_gcp.log_abs_det_jacobian(z, y)

    def normflows_call() -> None:
        z, _ = peer.forward(x)
        peer.inverse(z)

    def floor_call() -> None:
        F.conv2d(F.conv2d(x, weight), inverse)

    pixels = x.reshape(x.shape[0], channels, -1)

    def matmul_floor_call() -> None:
        weight[:, :, 0, 0] @ (inverse[:, :, 0, 0] @ pixels)

    return {
        "pyro-glow": ours_call,
        "Pyro GCP": pyro_call,
        "normflows": normflows_call,
        "floor": floor_call,
        "matmul floor": matmul_floor_call,
    }


def _actnorm_candidates(
    channels: int, x: torch.Tensor, counts: dict
) -> dict[str, Callable[[], object]]:
    import normflows as nf

    ours, peer = ActNorm(channels), nf.flows.ActNorm((channels, 1, 1))
    counts[f"ActNorm {channels}"] = check_parameter_counts(ours, peer, "ActNorm")
    ours.inverse_and_log_det(x)  # data-dependent initialisation on both sides
    peer.inverse(x)
    scale, bias = ours.log_scale.detach().exp(), ours.bias.detach()

    def ours_call() -> None:
        z, _ = ours.inverse_and_log_det(x)
        ours.forward_and_log_det(z)

    def normflows_call() -> None:
        z, _ = peer.inverse(x)
        peer.forward(z)

    def floor_call() -> None:
        torch.addcmul(bias, (x - bias) / scale, scale)

    return {"pyro-glow": ours_call, "normflows": normflows_call, "floor": floor_call}


def _couplings(channels: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    import normflows as nf

    ours = AffineCoupling(channels, HIDDEN)
    sizes = (channels - channels // 2, HIDDEN, HIDDEN, 2 * (channels // 2))
    net = nf.nets.ConvNet2d(sizes, (3, 1, 3), 0.0, True)
    peer = nf.flows.AffineCouplingBlock(net, True, "sigmoid", "channel")
    for module in (ours, peer):  # away from the zero-initialised identity
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.add_(0.01 * torch.randn_like(parameter))
    return ours, peer


def _coupling_candidates(
    channels: int, x: torch.Tensor, train: bool
) -> dict[str, Callable[[], object]]:
    ours, peer = _couplings(channels)
    if train:
        source = x.clone().requires_grad_()

        def ours_call() -> None:
            z, log_det = ours.inverse_and_log_det(source)
            (z.square().sum() - log_det.sum()).backward()

        def normflows_call() -> None:
            z, log_det = peer.inverse(source)
            (z.square().sum() - log_det.sum()).backward()

        return {"pyro-glow": ours_call, "normflows": normflows_call}

    def ours_no_grad() -> None:
        z, _ = ours.inverse_and_log_det(x)
        ours.forward_and_log_det(z)

    def normflows_no_grad() -> None:
        z, _ = peer.inverse(x)
        peer.forward(z)

    return {"pyro-glow": ours_no_grad, "normflows": normflows_no_grad}


def _time(candidates: dict[str, Callable[[], object]], grad: bool, args) -> dict[str, float]:
    with torch.set_grad_enabled(grad):
        seconds = alternate(candidates, args.repeats, warmup=3, inner=args.inner)
    return {name: 1e6 * value for name, value in seconds.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--inner", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="10 repeats of 5 calls")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.inner = 10, 5
    torch.manual_seed(0)
    rows, targets, counts = [], [], {}
    for channels, size in SHAPES:
        x = torch.randn(BATCH, channels, size, size)
        shape = f"{channels}x{size}x{size}"
        conv = _time(_conv1x1_candidates(channels, x, counts), False, args)
        rows.append({"op": "1x1 conv fwd+inv", "shape": shape, "us": conv})
        for label, ratio, target, at_most in (
            ("Pyro GCP / pyro-glow", conv["Pyro GCP"] / conv["pyro-glow"], 4.0, False),
            ("pyro-glow / floor (2 conv2d)", conv["pyro-glow"] / conv["floor"], 1.5, True),
            ("pyro-glow / 2 matmuls", conv["pyro-glow"] / conv["matmul floor"], None, True),
        ):
            targets.append(target_row(f"1x1 conv {shape}: {label}", ratio, target, at_most))
        norm = _time(_actnorm_candidates(channels, x, counts), False, args)
        rows.append({"op": "ActNorm fwd+inv", "shape": shape, "us": norm})
        ours, peer = _couplings(channels)
        counts[f"coupling {shape}"] = check_parameter_counts(ours, peer, f"coupling {shape}")
        for train in (False, True):
            coupling = _time(_coupling_candidates(channels, x, train), train, args)
            label = "coupling inv+backward" if train else "coupling fwd+inv"
            rows.append({"op": label, "shape": shape, "us": coupling})
    print(f"Op timings, batch {BATCH}, {torch.get_num_threads()} threads (microseconds, medians)")
    names = ("pyro-glow", "Pyro GCP", "normflows", "floor", "matmul floor")
    print(f"{'op':24s} {'shape':>9s}" + "".join(f"{name:>13s}" for name in names) + "  ours/nf")
    for row in rows:
        cells = "".join(f"{row['us'][n]:13.0f}" if n in row["us"] else f"{'':13s}" for n in names)
        ratio = row["us"]["pyro-glow"] / row["us"]["normflows"]
        print(f"{row['op']:24s} {row['shape']:>9s}{cells}  {ratio:7.2f}")
    print_targets(targets)
    write_json(args.json, {"rows": rows, "targets": targets, "parameters": counts})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
