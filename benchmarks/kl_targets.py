"""Exact KL(q || p) of variational guides on 2-D targets with a known normaliser.

    python benchmarks/kl_targets.py [--steps 3000] [--particles 1024] [--lrs 3e-3 1e-2]
        [--layers 16] [--hidden 128] [--jobs 2] [--json FILE] [--figure FILE]

Targets: the energies U1-U4 of Rezende & Mohamed (arXiv:1505.05770, Table 1), p(z) ~ exp(-U(z)),
and Neal's funnel, v ~ N(0, 3^2), x | v ~ N(0, exp(v / 2)^2). U2-U4 do not depend on z1 except
through w(z1), so exp(-U) is not integrable along z1; they are multiplied by a N(z1; 0, 2^2)
envelope (added to U as z1^2 / 8), which keeps the paper's shapes on the plotted square
[-4, 4]^2. log Z of U1-U4 comes from a Riemann sum on an n x n grid over [-10, 10]^2 (the
grid error is the difference between n = 1000 and n = 2000); the funnel is normalised
(log Z = 0).

Each guide is fitted by ``SVI`` with ``Trace_ELBO(num_particles, vectorize_particles=True)``
and ``ClippedAdam`` (learning rate decayed tenfold over the run) for the same number of
steps, once per learning rate of the grid; the learning rate is chosen by a 2*10^4-sample KL
estimate and the table reports an independent estimate KL = log Z - ELBO from ``--eval``
(default 10^5) samples with its standard error. Guides: pyro-glow's vector Glow through
``AutoNormalizingFlow(model, pyro_glow.guides.glow_transform(...))``, ``AutoNormal``,
``AutoMultivariateNormal``, ``AutoIAFNormal`` and ``AutoNormalizingFlow`` with Pyro's
``spline_coupling`` (alternating with a coordinate swap).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import Permute, spline_coupling
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import (
    AutoIAFNormal,
    AutoMultivariateNormal,
    AutoNormal,
    AutoNormalizingFlow,
)
from pyro.infer.autoguide.initialization import init_to_feasible

from pyro_glow.guides import glow_transform

TARGETS = ("U1", "U2", "U3", "U4", "funnel")
GUIDES = ("pyro-glow", "AutoNormal", "AutoMultivariateNormal", "AutoIAFNormal", "spline")
GRID_HALF_WIDTH = 10.0
ENVELOPE_SD = 2.0


def _w1(z1: torch.Tensor) -> torch.Tensor:
    return torch.sin(2 * math.pi * z1 / 4)


def energy(name: str, z: torch.Tensor) -> torch.Tensor:
    """U(z) of target ``name`` for ``z`` of shape ``[..., 2]`` (the funnel's is its exact
    negative log-density)."""
    z1, z2 = z[..., 0], z[..., 1]
    envelope = 0.5 * (z1 / ENVELOPE_SD) ** 2
    if name == "U1":
        ring = 0.5 * ((z.norm(dim=-1) - 2) / 0.4) ** 2
        bumps = torch.stack([-0.5 * ((z1 - 2) / 0.6) ** 2, -0.5 * ((z1 + 2) / 0.6) ** 2])
        return ring - torch.logsumexp(bumps, dim=0)
    if name == "U2":
        return 0.5 * ((z2 - _w1(z1)) / 0.4) ** 2 + envelope
    if name == "U3":
        w2 = 3 * torch.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
        terms = [-0.5 * ((z2 - _w1(z1)) / 0.35) ** 2, -0.5 * ((z2 - _w1(z1) + w2) / 0.35) ** 2]
        return -torch.logsumexp(torch.stack(terms), dim=0) + envelope
    if name == "U4":
        w3 = 3 * torch.sigmoid((z1 - 1) / 0.3)
        terms = [-0.5 * ((z2 - _w1(z1)) / 0.4) ** 2, -0.5 * ((z2 - _w1(z1) + w3) / 0.35) ** 2]
        return -torch.logsumexp(torch.stack(terms), dim=0) + envelope
    if name == "funnel":
        v, x = z1, z2
        return -(dist.Normal(0.0, 3.0).log_prob(v) + dist.Normal(0.0, torch.exp(v / 2)).log_prob(x))
    raise ValueError(f"unknown target {name!r}; choose one of {TARGETS}")


def grid_log_z(name: str, points: int) -> float:
    """log of the Riemann sum of exp(-U) on a ``points`` x ``points`` grid over
    [-10, 10]^2 (float64)."""
    axis = torch.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, points, dtype=torch.float64)
    step = (axis[1] - axis[0]).item()
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1)
    return (torch.logsumexp(-energy(name, grid).flatten(), 0) + 2 * math.log(step)).item()


def log_normaliser(name: str) -> tuple[float, float]:
    """(log Z, its grid error): the funnel is normalised; U1-U4 by quadrature."""
    if name == "funnel":
        return 0.0, 0.0
    fine, coarse = grid_log_z(name, 2000), grid_log_z(name, 1000)
    return fine, abs(fine - coarse)


def make_model(name: str) -> Callable[[], None]:
    def model() -> None:
        # A flat site (its log-density masked to 0) that init_to_feasible can still draw.
        flat = dist.Normal(torch.zeros(2), 1.0).to_event(1).mask(False)
        z = pyro.sample("z", flat)
        pyro.factor("log_density", -energy(name, z))

    return model


def _spline_transform(dim: int, layers: int, hidden: int) -> torch.nn.Module:
    parts = []
    for _ in range(layers):
        parts += [
            spline_coupling(dim, hidden_dims=[hidden, hidden], count_bins=8, bound=5.0),
            Permute(torch.tensor([1, 0])),
        ]
    return pyro.distributions.transforms.ComposeTransformModule(parts)


def make_guide(kind: str, model: Callable, layers: int, hidden: int) -> Callable:
    if kind == "pyro-glow":
        return AutoNormalizingFlow(model, glow_transform(steps=layers, hidden=hidden))
    if kind == "AutoNormal":
        return AutoNormal(model, init_loc_fn=init_to_feasible)
    if kind == "AutoMultivariateNormal":
        return AutoMultivariateNormal(model, init_loc_fn=init_to_feasible)
    if kind == "AutoIAFNormal":
        return AutoIAFNormal(model, hidden_dim=[hidden, hidden], num_transforms=layers // 2)
    if kind == "spline":
        return AutoNormalizingFlow(
            model, partial(_spline_transform, layers=layers // 2, hidden=hidden)
        )
    raise ValueError(f"unknown guide {kind!r}; choose one of {GUIDES}")


def kl_estimate(
    model: Callable, guide: Callable, log_z: float, samples: int, chunk: int = 10_000
) -> tuple[float, float]:
    """(KL = log Z - ELBO, its standard error) from ``samples`` draws of the guide."""
    chunks = max(1, samples // chunk)
    elbo = Trace_ELBO(num_particles=min(chunk, samples), vectorize_particles=True)
    with torch.no_grad():
        values = np.array([log_z + elbo.loss(model, guide) for _ in range(chunks)])
    error = values.std(ddof=1) / math.sqrt(chunks) if chunks > 1 else float("nan")
    return float(values.mean()), float(error)


def guide_samples(guide: Callable, n: int) -> np.ndarray:
    with torch.no_grad(), pyro.plate("draws", n, dim=-1):
        return guide()["z"].numpy()


def fit_one(job: dict) -> dict:
    """Fit one guide to one target at one learning rate; KL estimates and samples."""
    torch.set_num_threads(1)
    logging.getLogger("pyro").setLevel(logging.WARNING)
    pyro.set_rng_seed(job["seed"])
    pyro.clear_param_store()
    pyro.enable_validation(False)
    model = make_model(job["target"])
    guide = make_guide(job["guide"], model, job["layers"], job["hidden"])
    optim = pyro.optim.ClippedAdam({"lr": job["lr"], "lrd": 0.1 ** (1 / job["steps"])})
    svi = SVI(model, guide, optim, Trace_ELBO(job["particles"], vectorize_particles=True))
    start = time.perf_counter()
    diverged_at = None
    for step in range(job["steps"]):
        if not math.isfinite(svi.step()):
            diverged_at = step  # a NaN guide stays NaN: stop here, the cell records inf
            break
    seconds = time.perf_counter() - start
    finite = diverged_at is None
    select = kl_estimate(model, guide, job["log_z"], 20_000) if finite else (math.inf, 0.0)
    parameters = sum(p.numel() for p in pyro.get_param_store().values())
    result = dict(
        job,
        fit_seconds=seconds,
        select_kl=select[0],
        finite=finite,
        diverged_at=diverged_at,
        parameters=parameters,
    )
    if finite and job["eval"]:
        result["kl"], result["kl_se"] = kl_estimate(model, guide, job["log_z"], job["eval"])
        result["samples"] = guide_samples(guide, 20_000).tolist()
    print(
        f"{job['target']} {job['guide']} lr {job['lr']:g}: KL {result.get('kl', math.inf):.4f} "
        f"({seconds:.0f} s)",
        flush=True,
    )
    return result


def best_per_cell(results: Sequence[dict]) -> dict[tuple[str, str], dict]:
    best: dict[tuple[str, str], dict] = {}
    for result in results:
        key = (result["target"], result["guide"])
        if key not in best or result["select_kl"] < best[key]["select_kl"]:
            best[key] = result
    return best


def plot(best: dict, targets: Sequence[str], guides: Sequence[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = np.linspace(-5, 5, 121)
    axis = torch.linspace(-5, 5, 300, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1)
    fig, axes = plt.subplots(
        len(targets), len(guides) + 1, figsize=(2.2 * (len(guides) + 1), 2.2 * len(targets))
    )
    axes = np.atleast_2d(axes)
    for row, target in enumerate(targets):
        density = torch.exp(-energy(target, grid)).numpy()
        axes[row, 0].pcolormesh(
            axis.numpy(), axis.numpy(), density.T, shading="auto", cmap="viridis"
        )
        axes[row, 0].set_ylabel(target)
        for col, guide in enumerate(guides, start=1):
            result = best.get((target, guide))
            if result and "samples" in result:
                samples = np.asarray(result["samples"])
                axes[row, col].hist2d(samples[:, 0], samples[:, 1], bins=bins, cmap="viridis")
                axes[row, col].set_xlabel(f"KL {result['kl']:.3f}", fontsize=8)
        for col in range(len(guides) + 1):
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            axes[row, col].set_xlim(-5, 5)
            axes[row, col].set_ylim(-5, 5)
    for col, title in enumerate(["target exp(-U)", *guides]):
        axes[0, col].set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--guides", nargs="+", default=list(GUIDES), choices=GUIDES)
    parser.add_argument("--steps", type=int, default=3000, help="SVI steps per fit")
    parser.add_argument("--particles", type=int, default=1024, help="ELBO particles per step")
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-3, 1e-2])
    parser.add_argument("--layers", type=int, default=16, help="flow steps / couplings")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units of flow nets")
    parser.add_argument("--eval", type=int, default=100_000, help="samples of the final KL")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--figure", help="write target-vs-samples figure here (PNG)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    normalisers = {target: log_normaliser(target) for target in args.targets}
    for target, (log_z, error) in normalisers.items():
        print(f"{target}: log Z = {log_z:.6f} (grid error {error:.1e})")
    jobs = [
        dict(
            target=target,
            guide=guide,
            lr=lr,
            log_z=normalisers[target][0],
            steps=args.steps,
            particles=args.particles,
            layers=args.layers,
            hidden=args.hidden,
            eval=args.eval,
            seed=args.seed,
        )
        for target in args.targets
        for guide in args.guides
        for lr in args.lrs
    ]
    start = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(fit_one, jobs))
    else:
        results = [fit_one(job) for job in jobs]
    best = best_per_cell(results)
    print(
        f"\nKL(q || p) in nats ({args.eval} samples, +- standard error); {args.steps} steps x "
        f"{args.particles} particles, lr chosen from {args.lrs}; "
        f"{time.perf_counter() - start:.0f} s on {args.jobs} process(es)\n"
    )
    print("| target | log Z (grid err) | " + " | ".join(args.guides) + " |")
    print("|---" * (len(args.guides) + 2) + "|")
    for target in args.targets:
        cells = []
        values = {g: best[(target, g)].get("kl", math.inf) for g in args.guides}
        winner = min(values, key=values.get)
        for guide in args.guides:
            result = best[(target, guide)]
            if "kl" not in result:
                cells.append("diverged")
                continue
            text = f"{result['kl']:.3f} ± {result['kl_se']:.3f} (lr {result['lr']:g})"
            cells.append(f"**{text}**" if guide == winner else text)
        log_z, error = normalisers[target]
        print(f"| {target} | {log_z:.4f} ({error:.0e}) | " + " | ".join(cells) + " |")
    if args.json:
        summary = [{k: v for k, v in r.items() if k != "samples"} for r in results]
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "normalisers": normalisers, "runs": summary}, handle)
    if args.figure:
        plot(best, args.targets, args.guides, args.figure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
