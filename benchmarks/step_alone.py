"""The Glow training step of each library alone in its own process, processes interleaved.

    python benchmarks/step_alone.py [--rounds 3] [--steps 10] [--default-allocator] [--json FILE]

The check on ``glow_step.py``'s one-process comparison: sides that share a process share its
heap, and with glibc's default allocator one side's step can pay the page faults the other's
frees cause (docs/benchmarks.md). Here each round starts one fresh interpreter per side (A B,
A B, ...); each builds the model of ``glow_step.py`` (L=3, K=8, hidden 128, batch 32,
3x32x32, float32, and its step: global clipping, multi-tensor Adam), takes three
warm-up steps and reports the median of ``--steps`` steps. The table gives each side's median
over the rounds and the ratio. ``--default-allocator`` runs the processes with glibc's default
(``PYRO_GLOW_DEFAULT_ALLOCATOR=1``) instead of retaining freed memory. Needs
``pip install normflows``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Sequence

import torch
from glow_step import timed_step
from harness import machine, normflows_glow, write_json

from pyro_glow import glow

SIDES = ("pyro-glow", "normflows")


def _child(side: str, steps: int) -> dict[str, float]:
    """Runs in the subprocess: the median step time (ms) and minor page faults per step."""
    torch.manual_seed(0)
    x = torch.rand(32, 3, 32, 32)
    if side == "normflows":
        model = normflows_glow(3, 8, 128)

        def loss() -> torch.Tensor:
            return -model.log_prob(x - 0.5, None).mean()
    else:
        model = glow((3, 32, 32), levels=3, steps=8, hidden=128)

        def loss() -> torch.Tensor:
            return -model.log_prob(x).mean()

    with torch.no_grad():
        loss()  # data-dependent ActNorm initialisation
    step = timed_step(list(model.parameters()), loss, sync=False)
    for _ in range(3):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = [sum(step()) for _ in range(steps)]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"ms": 1e3 * statistics.median(times), "faults_per_step": faults / steps}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--default-allocator", action="store_true")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.steps)))
        return 0
    env = dict(os.environ)
    if args.default_allocator:
        env["PYRO_GLOW_DEFAULT_ALLOCATOR"] = "1"
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for _ in range(args.rounds):
        for side in SIDES:
            command = [sys.executable, __file__, "--child", side, "--steps", str(args.steps)]
            output = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
            runs[side].append(json.loads(output.stdout.strip().splitlines()[-1]))
    allocator = "glibc default" if args.default_allocator else "freed memory retained"
    print(
        f"Glow step alone per process, L=3 K=8 hidden 128 batch 32, {args.rounds} rounds, "
        f"{machine()['threads']} threads, {allocator}"
    )
    medians = {}
    for side, rows in runs.items():
        medians[side] = statistics.median(row["ms"] for row in rows)
        each = ", ".join(f"{row['ms']:.1f}" for row in rows)
        faults = statistics.median(row["faults_per_step"] for row in rows)
        print(f"{side:10s} median {medians[side]:7.1f} ms  ({each}); {faults:.0f} faults/step")
    ratio = medians["pyro-glow"] / medians["normflows"]
    print(f"ratio pyro-glow / normflows: {ratio:.3f}")
    write_json(args.json, {"allocator": allocator, "runs": runs, "ratio": ratio})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
