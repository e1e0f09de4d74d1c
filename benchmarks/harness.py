"""Shared timing and reporting for the benchmarks: alternating runs, medians, targets, JSON.

Every comparison runs its candidates alternately in one process (A B C A B C ... after
warm-up), so that a change in machine load hits every side alike, and reports medians.

Importing this module makes glibc keep freed memory for the rest of the process
(:func:`pyro_glow.allocator.retain_freed_memory`, as ``pyro-glow train`` does). With the
default allocator the sides of a comparison share one heap whose blocks go back to the
system and fault in again, so that one side's step pays page faults that the other's frees
cause: in one process pyro-glow's Glow step came out at 0.81-0.84 of normflows' against
0.83-0.95 with each library alone in its own process (docs/benchmarks.md).
``PYRO_GLOW_DEFAULT_ALLOCATOR=1`` in the environment keeps glibc's default instead: the
setting of the figures taken before 2026-12-03 (``step_alone.py --default-allocator`` sets it
for its subprocesses).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from pyro_glow.allocator import retain_freed_memory

FREED_MEMORY_RETAINED = os.environ.get("PYRO_GLOW_DEFAULT_ALLOCATOR") != "1" and (
    retain_freed_memory()
)


def alternate(
    candidates: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int = 2,
    inner: int = 1,
) -> dict[str, float]:
    """Median seconds per call of each candidate, timed A B A B ... after ``warmup`` rounds.

    Each timing covers ``inner`` back-to-back calls (for fast ops, where one call is too short
    for the clock) and is divided by ``inner``.
    """
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for round_index in range(warmup + repeats):
        for name, call in candidates.items():
            start = time.perf_counter()
            for _ in range(inner):
                call()
            elapsed = (time.perf_counter() - start) / inner
            if round_index >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def normflows_glow(levels: int = 3, steps: int = 8, hidden: int = 128) -> torch.nn.Module:
    """normflows' multi-scale Glow for 3x32x32 images (its documented example: affine
    coupling, LU 1x1 convolution, a learnable diagonal Gaussian base per level), unconditional.
    """
    import normflows as nf

    channels, size = 3, 32
    bases, flows, merges = [], [], []
    for level in range(levels):
        width = channels * 2 ** (levels + 1 - level)
        blocks = [
            nf.flows.GlowBlock(width, hidden, split_mode="channel", scale=True)
            for _ in range(steps)
        ]
        flows.append([*blocks, nf.flows.Squeeze()])
        scale = 2 ** (levels - level)
        if level > 0:
            merges.append(nf.flows.Merge())
            latent = (channels * scale, size // scale, size // scale)
        else:
            latent = (channels * scale * 2, size // scale, size // scale)
        bases.append(nf.distributions.DiagGaussian(latent))
    return nf.MultiscaleFlow(bases, flows, merges, class_cond=False)


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_parameter_counts(ours: torch.nn.Module, peer: torch.nn.Module, what: str) -> dict:
    """Both counts and whether they agree within 2%; a mismatch is printed, not hidden."""
    mine, theirs = parameter_count(ours), parameter_count(peer)
    within = abs(mine - theirs) <= 0.02 * max(mine, theirs)
    if not within:
        print(f"WARNING {what}: parameter counts differ by more than 2%: {mine} vs {theirs}")
    return {"ours": mine, "peer": theirs, "within_2_percent": within}


def target_row(
    name: str, ratio: float, target: float | None, at_most: bool = True
) -> dict[str, Any]:
    """One ratio against its target (``ratio <= target`` when ``at_most``, else ``>=``);
    ``target=None``: a figure shown for reference, with no target."""
    if target is None:
        return {"name": name, "ratio": ratio, "target": None, "at_most": at_most, "met": None}
    met = ratio <= target if at_most else ratio >= target
    return {"name": name, "ratio": ratio, "target": target, "at_most": at_most, "met": met}


def print_targets(rows: list[dict[str, Any]]) -> None:
    """The ratio table: each ratio, its target and whether this run met it, headed by the
    host's vector instruction set and thread count (the CPU ratios depend on both)."""
    host = machine()
    allocator = "freed memory retained" if host["freed_memory_retained"] else "default allocator"
    print(
        f"host: {host['cpu_capability']}, {host['threads']} threads, torch {host['torch']}, "
        f"{allocator}"
    )
    print(f"{'ratio':58s} {'value':>7s} {'target':>9s}  met")
    for row in rows:
        if row["target"] is None:
            print(f"{row['name']:58s} {row['ratio']:7.3g} {'-':>9s}  -")
            continue
        bound = ("<= " if row["at_most"] else ">= ") + f"{row['target']:g}"
        print(f"{row['name']:58s} {row['ratio']:7.3g} {bound:>9s}  {'yes' if row['met'] else 'NO'}")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        # The vector ISA that torch and oneDNN dispatch to (AVX2, AVX512, ...): oneDNN's
        # channels-last convolutions gain more over NCHW on some than on others.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "freed_memory_retained": FREED_MEMORY_RETAINED,
    }


def write_json(path: str | None, payload: Mapping[str, Any]) -> None:
    if path:
        with open(path, "w") as handle:
            json.dump({"machine": machine(), **payload}, handle, indent=2)
