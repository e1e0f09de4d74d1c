"""The course's warm-up: a learnable element-wise affine flow learns N(mu, sigma) from N(0, 1).

    python examples/warmup_affine.py [--mu 2.0] [--sigma 0.5] [--steps 1000] [--json PATH]

The flow is ``x = z * exp(s) + b`` with ``z ~ N(0, 1)``
(:class:`pyro_glow.ElementwiseAffine`), so its density is exactly ``N(b, exp(s))``: maximum
likelihood drives ``b`` to the sample mean and ``exp(s)`` to the sample standard deviation
(the ``1/n`` one). Training is Pyro SVI with the data observed under a plate and an empty
guide. The script prints the learned values beside the true ones and the sample's maximum
likelihood estimates.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO

from pyro_glow import ElementwiseAffine, Flow, StandardNormal


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mu", type=float, default=2.0, help="true mean")
    parser.add_argument("--sigma", type=float, default=0.5, help="true standard deviation")
    parser.add_argument("--samples", type=int, default=2000, help="training points")
    parser.add_argument("--steps", type=int, default=1000, help="SVI steps (full batch)")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the values here")
    args = parser.parse_args(argv)
    if args.sigma <= 0 or args.samples < 2 or args.steps < 0:
        parser.error("--sigma must be > 0, --samples >= 2 and --steps >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    data = args.mu + args.sigma * torch.randn(args.samples, 1)
    flow = Flow(StandardNormal((1,)), ElementwiseAffine((1,)))

    def model(x: torch.Tensor) -> None:
        pyro.module("flow", flow)
        with pyro.plate("data", len(x)):
            pyro.sample("x", flow(), obs=x)

    def guide(x: torch.Tensor) -> None:
        pass

    svi = SVI(model, guide, pyro.optim.Adam({"lr": args.lr}), Trace_ELBO())
    for _ in range(args.steps):
        svi.step(data)

    affine = flow.transform.parts[0]
    values = {
        "true_mu": args.mu,
        "true_sigma": args.sigma,
        "sample_mean": data.mean().item(),
        "sample_std": data.std(correction=0).item(),
        "learned_mu": affine.loc.item(),
        "learned_sigma": affine.log_scale.exp().item(),
        "steps": args.steps,
    }
    print(f"{'':8}{'true':>10}{'sample MLE':>12}{'learned':>10}")
    print(
        f"{'mu':8}{values['true_mu']:10.4f}{values['sample_mean']:12.4f}"
        f"{values['learned_mu']:10.4f}"
    )
    print(
        f"{'sigma':8}{values['true_sigma']:10.4f}{values['sample_std']:12.4f}"
        f"{values['learned_sigma']:10.4f}"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(values, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
