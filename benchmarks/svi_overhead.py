"""SVI's overhead: the same flow, batches and optimizer settings trained by ``SVI.step``
(with :class:`pyro_glow.optim.FlowOptimizer`) with ``Trace_ELBO`` (the trainer's default) and
with ``JitTrace_ELBO`` (``pyro-glow train --jit``), and by a plain PyTorch loop.

    python benchmarks/svi_overhead.py [--repeats 25] [--json FILE]

The two are timed alternately (A B A B ...) after a warm-up; the table gives the median step
time of each and their ratio. The 2-D cases, whose steps take milliseconds and whose
overhead is a small difference of two noisy times, run 8x ``--repeats`` steps each. Pyro's
validation is off for both, as in the trainer (which checks the data once when it loads
them).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable, Sequence

import pyro
import torch
from harness import machine, write_json
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO

from pyro_glow import glow
from pyro_glow.optim import FlowOptimizer
from pyro_glow.training import density_model, empty_guide

VECTOR_REPEATS = 8
CASES = {
    "moons (the trainer's default): glow((2,), K=12, hidden=128), batch 256": (
        (2,),
        dict(steps=12, hidden=128),
        256,
    ),
    "moons: glow((2,), K=8, hidden=64), batch 256": ((2,), dict(steps=8, hidden=64), 256),
    "images: glow((3,32,32), L=3, K=8, hidden=128), batch 32": (
        (3, 32, 32),
        dict(levels=3, steps=8, hidden=128),
        32,
    ),
}


def _svi_step(flow: torch.nn.Module, batch: torch.Tensor, jit: bool = False) -> Callable[[], float]:
    elbo = JitTrace_ELBO(ignore_jit_warnings=True) if jit else Trace_ELBO()
    model = density_model(flow, name="flow_jit" if jit else "flow")
    svi = SVI(model, empty_guide, FlowOptimizer("adam", lr=1e-4, clip_norm=50.0), elbo)
    return lambda: svi.step(batch)


def _plain_step(flow: torch.nn.Module, batch: torch.Tensor) -> Callable[[], float]:
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-4, fused=True)  # as FlowOptimizer

    def step() -> float:
        loss = -flow.log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 50.0)
        optimizer.step()
        return loss.item()

    return step


def measure(shape: tuple[int, ...], kwargs: dict, batch_size: int, repeats: int) -> dict:
    torch.manual_seed(0)
    batch = torch.rand((batch_size, *shape))
    flows = [glow(shape, **kwargs) for _ in range(3)]
    for twin in flows[1:]:
        twin.load_state_dict(flows[0].state_dict())
    pyro.clear_param_store()
    steps = {
        "svi": _svi_step(flows[0], batch),
        "svi_jit": _svi_step(flows[1], batch, jit=True),
        "plain": _plain_step(flows[2], batch),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    with pyro.validation_enabled(False), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.trace. is deprecated")
        for _ in range(3):
            for step in steps.values():
                step()
        for _ in range(repeats):
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    ms = {name: 1e3 * statistics.median(values) for name, values in times.items()}
    return {
        "svi_ms": ms["svi"],
        "svi_jit_ms": ms["svi_jit"],
        "plain_ms": ms["plain"],
        "overhead": ms["svi"] / ms["plain"] - 1,
        "overhead_jit": ms["svi_jit"] / ms["plain"] - 1,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = {}
    host = machine()
    print(
        f"torch {host['torch']}, {host['threads']} threads, freed memory retained: "
        f"{host['freed_memory_retained']}"
    )
    header = ("SVI ms", "jit ms", "plain ms", "overhead", "jit ovh.")
    print(f"{'case':72s}" + "".join(f" {column:>9s}" for column in header))
    for name, (shape, kwargs, batch_size) in CASES.items():
        repeats = args.repeats * (VECTOR_REPEATS if len(shape) == 1 else 1)
        result = measure(shape, kwargs, batch_size, repeats)
        results[name] = result
        times = [result[k] for k in ("svi_ms", "svi_jit_ms", "plain_ms")]
        overheads = [result["overhead"], result["overhead_jit"]]
        print(
            f"{name:72s}"
            + "".join(f" {value:9.2f}" for value in times)
            + "".join(f" {value:9.1%}" for value in overheads)
        )
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
