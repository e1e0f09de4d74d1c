"""One Glow training step, pyro-glow against normflows, timed alternately in one process.

    python benchmarks/glow_step.py [--repeats 10] [--json FILE]

Same architecture as ``cifar_cpu.py`` (L=3, K=8, hidden 128, affine coupling, LU 1x1
convolution), batch 32 of 3x32x32, float32, a plain PyTorch loop on both sides (forward,
backward, global clipping, multi-tensor Adam); the two sides alternate A B A B after two
warm-up steps each, and the table gives the median time of each phase. Needs
``pip install normflows``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from cifar_cpu import normflows_glow

from pyro_glow import glow

PHASES = ("forward", "backward", "clip", "optimizer")


def _stepper(
    model: torch.nn.Module, log_prob: Callable[[], torch.Tensor]
) -> Callable[[], list[float]]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, foreach=True)

    def step() -> list[float]:
        marks = [time.perf_counter()]
        loss = -log_prob().mean()
        marks.append(time.perf_counter())
        optimizer.zero_grad()
        loss.backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        return [b - a for a, b in zip(marks, marks[1:], strict=False)]

    return step


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    x = torch.rand(32, 3, 32, 32)
    ours, peer = glow((3, 32, 32), levels=3, steps=8, hidden=128), normflows_glow()
    steps = {
        "pyro-glow": _stepper(ours, lambda: ours.log_prob(x)),
        "normflows": _stepper(peer, lambda: peer.log_prob(x - 0.5, None)),
    }
    times: dict[str, list[list[float]]] = {name: [] for name in steps}
    for repeat in range(args.repeats + 2):
        for name, step in steps.items():
            phases = step()
            if repeat >= 2:
                times[name].append(phases)
    results = {}
    for name, rows in times.items():
        medians = [1e3 * statistics.median(column) for column in zip(*rows, strict=True)]
        total = 1e3 * statistics.median(sum(row) for row in rows)
        results[name] = {**dict(zip(PHASES, medians, strict=True)), "total": total}
    print(f"Glow step, L=3 K=8 hidden 128, batch 32, {torch.get_num_threads()} threads (ms)")
    print(f"{'':10s}" + "".join(f"{phase:>10s}" for phase in (*PHASES, "total")))
    for name, result in results.items():
        print(f"{name:10s}" + "".join(f"{result[k]:10.1f}" for k in (*PHASES, "total")))
    ratio = results["pyro-glow"]["total"] / results["normflows"]["total"]
    print(f"time ratio pyro-glow / normflows: {ratio:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
