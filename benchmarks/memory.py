"""Peak memory of one Glow training step: pyro-glow (plain, memory_saving) against normflows.

    python benchmarks/memory.py [--steps-per-level 16] [--hidden 128] [--batch 32] [--json FILE]

Each measurement runs in its own subprocess (a fresh interpreter, so that one side's peak
cannot hide the other's): it builds the model, the optimizer and the batch, records its
resident set size, runs two training steps (``-log_prob(x).mean()``, backward, clipping,
Adam) and reports the peak resident set size (``getrusage`` max RSS) above that starting
point: activations kept for backward, gradients and Adam's state. On a GPU the same is
measured with ``torch.cuda.max_memory_allocated``. Then the step times of the three are
taken alternately in this process (medians), since the memory target goes with a time bound.

Model: L=3 levels, K=16 steps per level (``--steps-per-level``), affine coupling, LU 1x1
convolution, 3x32x32 images. Needs ``pip install normflows``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Sequence

import torch
from harness import (
    alternate,
    check_parameter_counts,
    normflows_glow,
    print_targets,
    target_row,
    write_json,
)

from pyro_glow import glow

SIDES = ("pyro-glow", "pyro-glow memory_saving", "normflows")


def _model(side: str, args: argparse.Namespace) -> torch.nn.Module:
    if side == "normflows":
        return normflows_glow(3, args.steps_per_level, args.hidden)
    saving = side.endswith("memory_saving")
    return glow((3, 32, 32), 3, args.steps_per_level, args.hidden, memory_saving=saving)


def _loss(side: str, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    if side == "normflows":
        return -model.log_prob(x - 0.5, None).mean()
    return -model.log_prob(x).mean()


def _resident_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _child(side: str, device: str, args: argparse.Namespace) -> dict[str, float]:
    """Runs in the subprocess: peak memory above the starting point, in MiB."""
    torch.manual_seed(0)
    model = _model(side, args).to(device)
    x = torch.rand(args.batch, 3, 32, 32, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, foreach=True)
    start = _resident_mib()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        start_cuda = torch.cuda.memory_allocated() / 2**20
    for _ in range(2):
        optimizer.zero_grad()
        _loss(side, model, x).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
        optimizer.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    result = {"start_rss_mib": start, "peak_rss_mib": peak, "step_rss_mib": peak - start}
    if device == "cuda":
        result["step_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20 - start_cuda
    return result


def _measure(side: str, device: str, args: argparse.Namespace) -> dict[str, float]:
    command = [
        sys.executable, __file__, "--child", side, "--device", device,
        "--steps-per-level", str(args.steps_per_level), "--hidden", str(args.hidden),
        "--batch", str(args.batch),
    ]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _step_times(args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32)
    steps = {}
    for side in SIDES:
        model = _model(side, args)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, foreach=True)

        def step(side=side, model=model, optimizer=optimizer) -> None:
            optimizer.zero_grad()
            _loss(side, model, x).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
            optimizer.step()

        steps[side] = step
    return {side: 1e3 * seconds for side, seconds in alternate(steps, args.repeats).items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps-per-level", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps of each side")
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.device, args)))
        return 0
    counts = check_parameter_counts(
        _model("pyro-glow", args), _model("normflows", args), "Glow K=16"
    )
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    memory = {device: {side: _measure(side, device, args) for side in SIDES} for device in devices}
    times = _step_times(args)
    config = f"L=3 K={args.steps_per_level} hidden {args.hidden} batch {args.batch}"
    print(f"Peak memory of a training step (MiB above the starting point), {config}")
    print(f"{'':26s} {'CPU max RSS':>12s} {'CUDA':>8s} {'step (ms)':>10s}")
    for side in SIDES:
        cuda = memory.get("cuda", {}).get(side, {}).get("step_cuda_mib")
        cuda_cell = f"{cuda:8.0f}" if cuda is not None else f"{'-':>8s}"
        cpu = memory["cpu"][side]["step_rss_mib"]
        print(f"{side:26s} {cpu:12.0f} {cuda_cell} {times[side]:10.0f}")
    targets = []
    for device, key in (("cpu", "step_rss_mib"), ("cuda", "step_cuda_mib")):
        if device in memory:
            ratio = memory[device][SIDES[1]][key] / memory[device]["normflows"][key]
            targets.append(
                target_row(f"{device} peak memory, memory_saving / normflows", ratio, 0.35)
            )
    ratio = times[SIDES[1]] / times["normflows"]
    targets.append(target_row("CPU step time, memory_saving / normflows", ratio, 1.4))
    print_targets(targets)
    write_json(
        args.json,
        {"config": config, "memory_mib": memory, "step_ms": times, "targets": targets,
         "parameters": counts},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
