"""The course's comparison of flow families, measured: each family trained on two moons with
the same budget.

    python examples/flow_families.py --out runs/flow-families [--steps 1500]

Families: pyro-glow's vector Glow, NICE and RealNVP (the course's NVP net) and Pyro's own
transforms: planar, radial, MAF and IAF (``AffineAutoregressive``, two directions), SOS
(``Polynomial``) and neural spline couplings (``SplineCoupling``). Every family gets the same
data, standard normal prior, fixed standardisation layer, optimizer (Adam, gradient norm
clipped), learning rate, batch size and number of steps. Direction matters for the Pyro
families, whose generative map is their ``forward``:

- planar, radial and SOS have no analytic inverse, so a density model must use them in the
  normalizing direction (``transform.inv`` in the generative list): fast density, but no
  sampling;
- ``AffineAutoregressive`` as the normalizing map (``.inv``) is MAF: density in one pass,
  sampling one coordinate at a time; as the generative map it is IAF: one-pass sampling,
  density (hence maximum-likelihood training) one coordinate at a time. With two coordinates
  the sequential direction costs two network passes.

Writes ``flow_families.md`` (the table) and ``flow_families.json`` to ``--out``: test NLL
(nats, with the true density's NLL as the floor), the median time of a training step
(forward, backward, optimizer step), and the best of ``--repeats`` times to score and to
sample ``--test-size`` points.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn
from torch.distributions import Transform

from pyro_glow import ElementwiseAffine, glow, nice, realnvp
from pyro_glow.data import make_moons_data, moons_log_density

NOISE = 0.05


class Family(NamedTuple):
    """A flow family: how to build its generative transforms, and what it can do."""

    name: str
    build: Callable[[int], list[Transform]]
    samples: bool
    note: str


def _swap() -> T.Permute:
    return T.Permute(torch.tensor([1, 0]))


def _stack(make: Callable[[], Transform], layers: int, permute: bool) -> list[Transform]:
    parts: list[Transform] = []
    for _ in range(layers):
        parts.append(make())
        if permute:
            parts.append(_swap())
    return parts


def families(hidden: int) -> list[Family]:
    """The compared families at the sizes used for the table (``hidden`` units per layer)."""
    net = [hidden, hidden]
    return [
        Family(
            "Glow (pyro-glow)",
            lambda seed: list(glow((2,), steps=8, hidden=hidden).transform.parts),
            True,
            "8 steps: ActNorm, invertible linear map, affine coupling",
        ),
        Family(
            "NICE (pyro-glow)",
            lambda seed: list(nice((2,), couplings=8, hidden=hidden).transform.parts),
            True,
            "8 additive couplings + Rescale",
        ),
        Family(
            "RealNVP (pyro-glow)",
            lambda seed: list(realnvp((2,), couplings=8, hidden=hidden, seed=seed).transform.parts),
            True,
            "8 affine couplings, random half masks",
        ),
        Family(
            "Planar (Pyro)",
            lambda seed: _stack(lambda: T.Planar(2).inv, 32, permute=False),
            False,
            "32 layers, normalizing direction (no inverse: no sampling)",
        ),
        Family(
            "Radial (Pyro)",
            lambda seed: _stack(lambda: T.Radial(2).inv, 32, permute=False),
            False,
            "32 layers, normalizing direction (no inverse: no sampling)",
        ),
        Family(
            "MAF (Pyro AffineAutoregressive.inv)",
            lambda seed: _stack(lambda: T.affine_autoregressive(2, net).inv, 8, permute=True),
            True,
            "8 layers; density in one pass, sampling sequential",
        ),
        Family(
            "IAF (Pyro AffineAutoregressive)",
            lambda seed: _stack(lambda: T.affine_autoregressive(2, net), 8, permute=True),
            True,
            "8 layers; sampling in one pass, density sequential",
        ),
        Family(
            "SOS (Pyro Polynomial.inv)",
            lambda seed: _stack(lambda: T.polynomial(2, net).inv, 2, permute=True),
            False,
            "2 layers, degree-9 polynomials; no inverse: no sampling",
        ),
        Family(
            "Spline coupling (Pyro)",
            lambda seed: _stack(lambda: T.spline_coupling(2, hidden_dims=net), 4, permute=True),
            True,
            "4 rational-quadratic spline couplings, 8 bins",
        ),
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/flow-families"))
    parser.add_argument("--steps", type=int, default=1500, help="training steps per family")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--clip", type=float, default=10.0, help="gradient-norm clipping")
    parser.add_argument("--hidden", type=int, default=64, help="conditioner width")
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--test-size", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=7, help="timing repeats (best of)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--only", nargs="*", default=None, help="names (prefixes) to run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--steps, --batch-size, --repeats and --threads must be >= 1")
    return args


def _modules(transforms: Sequence[Transform]) -> nn.ModuleList:
    """The modules holding the parameters (an inverse wrapper's module is its ``.inv``)."""
    modules = nn.ModuleList()
    for transform in transforms:
        owner = transform if isinstance(transform, nn.Module) else transform.inv
        if isinstance(owner, nn.Module):
            modules.append(owner)
    return modules


def _best_seconds(run: Callable[[], object], repeats: int) -> float:
    """The shortest of ``repeats`` runs: the least disturbed by other load on the machine."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(family: Family, train: torch.Tensor, test: torch.Tensor, args: argparse.Namespace):
    """Train ``family`` and return its row of the table."""
    pyro.set_rng_seed(args.seed)
    units = ElementwiseAffine(
        (2,), loc=train.mean(0), log_scale=train.std(0).log(), learnable=False
    )
    transforms = [*family.build(args.seed), units]
    modules = _modules(transforms)
    base = dist.Normal(torch.zeros(2), 1.0).to_event(1)

    def distribution() -> dist.TransformedDistribution:
        for module in modules.modules():
            if hasattr(module, "clear_cache"):
                module.clear_cache()
        return dist.TransformedDistribution(base, transforms)

    optimizer = torch.optim.Adam(modules.parameters(), lr=args.lr)
    diverged = False
    step_times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        batch = train[torch.randint(len(train), (args.batch_size,))]
        loss = -distribution().log_prob(batch).mean()
        if not torch.isfinite(loss):
            diverged = True
            break
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(modules.parameters(), args.clip)
        optimizer.step()
        step_times.append(time.perf_counter() - start)
    step_seconds = statistics.median(step_times) if step_times else math.nan
    with torch.no_grad():
        test_nll = -distribution().log_prob(test).mean().item()
        log_prob_seconds = _best_seconds(lambda: distribution().log_prob(test), args.repeats)
        sample_seconds = (
            _best_seconds(lambda: distribution().sample((len(test),)), args.repeats)
            if family.samples
            else None
        )
    return {
        "family": family.name,
        "note": family.note,
        "parameters": sum(p.numel() for p in modules.parameters()),
        "test_nll": test_nll if not diverged else None,
        "diverged": diverged,
        "train_step_ms": 1e3 * step_seconds,
        "log_prob_ms": 1e3 * log_prob_seconds,
        "sample_ms": None if sample_seconds is None else 1e3 * sample_seconds,
    }


def _cell(value: float | None, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def markdown_table(rows: list[dict], true_nll: float, test_size: int) -> str:
    lines = [
        f"| family | parameters | test NLL (nats) | train step (ms) | log_prob of {test_size} "
        f"(ms) | sample {test_size} (ms) | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        nll = "diverged" if row["diverged"] else _cell(row["test_nll"], 3)
        lines.append(
            f"| {row['family']} | {row['parameters']} | {nll} | {_cell(row['train_step_ms'], 1)} "
            f"| {_cell(row['log_prob_ms'], 1)} | {_cell(row['sample_ms'], 1)} | {row['note']} |"
        )
    lines.append(f"| true density | | {true_nll:.3f} | | | | the floor |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    train, test = make_moons_data(args.train_size, args.test_size, noise=NOISE, seed=args.seed)
    true_nll = -moons_log_density(test, noise=NOISE).mean().item()
    chosen = [
        family
        for family in families(args.hidden)
        if args.only is None or any(family.name.lower().startswith(p.lower()) for p in args.only)
    ]
    if not chosen:
        raise SystemExit(f"flow_families: no family matches --only {args.only}")
    rows = []
    for family in chosen:
        # Unstable families may produce non-finite values: report them, do not raise.
        with pyro.validation_enabled(False):
            row = measure(family, train, test, args)
        rows.append(row)
        print(
            f"{family.name:40} NLL {_cell(row['test_nll'], 3):>8}  "
            f"step {row['train_step_ms']:.1f} ms",
            flush=True,
        )
    table = markdown_table(rows, true_nll, args.test_size)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    (args.out / "flow_families.md").write_text(table)
    (args.out / "flow_families.json").write_text(
        json.dumps({"config": config, "true_nll": true_nll, "rows": rows}, indent=2) + "\n"
    )
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
