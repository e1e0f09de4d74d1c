"""Sampling 64 images at temperature 0.7: pyro-glow against normflows' Glow, alternately.

    python benchmarks/sampling.py [--repeats 30] [--json FILE]

Both models: L=3, K=8, hidden 128, affine coupling, LU 1x1 convolution, 3x32x32 (the
architecture of ``glow_step.py`` and ``cifar_cpu.py``), ActNorm initialised on one batch, then
``flow.sample(64, temperature=0.7)`` against ``MultiscaleFlow.sample(64, temperature=0.7)``,
both without autograd (normflows' sampler also returns the samples' log-density; that is part
of its API and of its time). Medians of ``--repeats`` alternating calls after warm-up.
Alongside, pyro-glow's coupling networks alone on the inputs they get while sampling (the same
tensors, captured once): divided by normflows' time, the lowest ratio a sampler built on
these networks could reach. Needs ``pip install normflows``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch
from glow_step import coupling_networks, network_inputs
from harness import (
    alternate,
    check_parameter_counts,
    normflows_glow,
    print_targets,
    target_row,
    write_json,
)

from pyro_glow import glow

SAMPLES, TEMPERATURE = 64, 0.7


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    ours, peer = glow((3, 32, 32), levels=3, steps=8, hidden=128), normflows_glow(3, 8, 128)
    counts = check_parameter_counts(ours, peer, "Glow")
    x = torch.rand(32, 3, 32, 32)
    with torch.no_grad():
        ours.log_prob(x), peer.log_prob(x - 0.5, None)  # ActNorm initialisation
        networks = coupling_networks(ours)
        inputs = network_inputs(networks, lambda: ours.sample(SAMPLES, temperature=TEMPERATURE))

        def networks_alone() -> None:
            for net, net_input in zip(networks, inputs, strict=True):
                net(net_input)

        seconds = alternate(
            {
                "pyro-glow": lambda: ours.sample(SAMPLES, temperature=TEMPERATURE),
                "normflows": lambda: peer.sample(SAMPLES, temperature=TEMPERATURE),
                "pyro-glow nets only": networks_alone,
            },
            args.repeats,
        )
    ms = {name: 1e3 * value for name, value in seconds.items()}
    print(
        f"Sampling {SAMPLES} images at T={TEMPERATURE}, L=3 K=8 hidden 128, "
        f"{torch.get_num_threads()} threads (ms, medians)"
    )
    for name, value in ms.items():
        print(f"{name:20s} {value:8.1f}")
    targets = [
        target_row("sampling pyro-glow / normflows", ms["pyro-glow"] / ms["normflows"], 0.6),
        target_row(
            "floor, pyro-glow nets only / normflows",
            ms["pyro-glow nets only"] / ms["normflows"],
            None,
        ),
    ]
    print_targets(targets)
    write_json(args.json, {"ms": ms, "targets": targets, "parameters": counts})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
