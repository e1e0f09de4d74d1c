"""Train a vector Glow on two-moons as a Pyro density (SVI) and plot what it learned.

    python examples/moons.py --out runs/moons [--steps 2000] [--prior normal|mixture]

Writes ``density.png`` (the learned density in the data's units), ``samples.png`` (samples
beside the test data), ``layers.png`` (the data after each flow step, the course's figure)
and ``metrics.json``; prints the test negative log-likelihood in nats per point.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from pyro.infer import SVI, Trace_ELBO  # noqa: E402
from sklearn.datasets import make_moons  # noqa: E402

from pyro_glow import Flow, glow  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/moons"))
    parser.add_argument("--steps", type=int, default=2000, help="SVI steps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--flow-steps", type=int, default=8, help="Glow steps (K)")
    parser.add_argument("--hidden", type=int, default=64, help="coupling MLP width")
    parser.add_argument("--prior", choices=("normal", "diag", "mixture"), default="normal")
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--test-size", type=int, default=5000)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def moons(size: int, noise: float, seed: int) -> torch.Tensor:
    points, _ = make_moons(n_samples=size, noise=noise, random_state=seed)
    return torch.as_tensor(points, dtype=torch.float32)


def train(flow: Flow, data: torch.Tensor, steps: int, batch_size: int, lr: float) -> list[float]:
    """Fit ``flow`` to ``data`` by SVI with an empty guide (maximum likelihood)."""

    def model(batch: torch.Tensor) -> None:
        pyro.module("flow", flow)
        with pyro.plate("data", len(batch)):
            pyro.sample("x", flow(), obs=batch)

    def guide(batch: torch.Tensor) -> None:
        pass

    optimizer = pyro.optim.ClippedAdam({"lr": lr, "clip_norm": 10.0})
    svi = SVI(model, guide, optimizer, Trace_ELBO())
    losses = []
    for _ in range(steps):
        batch = data[torch.randint(len(data), (batch_size,))]
        losses.append(svi.step(batch) / batch_size)
    return losses


def plot_density(
    flow: Flow, mean: torch.Tensor, std: torch.Tensor, test: torch.Tensor, path: Path
) -> None:
    xs = torch.linspace(-1.5, 2.5, 300)
    ys = torch.linspace(-1.0, 1.5, 200)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    with torch.no_grad():
        log_density = flow.log_prob((grid - mean) / std) - std.log().sum()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    mesh = ax.pcolormesh(
        xs.numpy(), ys.numpy(), log_density.exp().numpy(), shading="auto", cmap="magma"
    )
    fig.colorbar(mesh, ax=ax, label="learned density p(x)")
    ax.scatter(
        test[:300, 0].numpy(), test[:300, 1].numpy(), s=1, c="cyan", alpha=0.5, label="test data"
    )
    ax.set(title="Glow on two-moons: learned density", xlabel="$x_1$", ylabel="$x_2$")
    ax.legend(loc="upper right", markerscale=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_samples(samples: torch.Tensor, test: torch.Tensor, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharex=True, sharey=True)
    for ax, points, title in ((axes[0], test, "test data"), (axes[1], samples, "flow samples")):
        ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=1, alpha=0.4)
        ax.set(title=title, xlim=(-1.5, 2.5), ylim=(-1.0, 1.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_layers(flow: Flow, standardised: torch.Tensor, path: Path) -> None:
    """The data after each flow step in the normalizing direction (the course's figure 3)."""
    parts = list(reversed(flow.transform.parts))
    per_step = 3  # ActNorm, InvertibleConv1x1, AffineCoupling
    stages = [("data (standardised)", standardised)]
    h = standardised
    with torch.no_grad():
        for index, part in enumerate(parts, start=1):
            h = part.inv(h)
            if index % per_step == 0:
                stages.append((f"after step {index // per_step}", h))
    columns = min(5, len(stages))
    rows = math.ceil(len(stages) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax, (title, points) in zip(axes.flat, stages, strict=False):
        colour = standardised[:, 0].numpy()
        ax.scatter(
            points[:, 0].numpy(), points[:, 1].numpy(), s=1, alpha=0.3, c=colour, cmap="coolwarm"
        )
        ax.set_title(title, fontsize=9)
    for ax in list(axes.flat)[len(stages) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.steps < 0 or args.batch_size < 1 or args.train_size < 2 or args.test_size < 1:
        raise SystemExit(
            "--steps must be >= 0, --batch-size >= 1, --train-size >= 2, --test-size >= 1"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    train_data = moons(args.train_size, args.noise, args.seed)
    test_data = moons(args.test_size, args.noise, args.seed + 1)
    mean, std = train_data.mean(0), train_data.std(0)
    flow = glow((2,), steps=args.flow_steps, hidden=args.hidden, prior=args.prior)

    start = time.perf_counter()
    losses = train(flow, (train_data - mean) / std, args.steps, args.batch_size, args.lr)
    wall = time.perf_counter() - start

    with torch.no_grad():
        # log p(x) = log p_flow((x - mean) / std) - sum(log std): the data's own units.
        test_nll = -(flow.log_prob((test_data - mean) / std).mean() - std.log().sum()).item()
        samples = flow.sample(len(test_data)) * std + mean
    plot_density(flow, mean, std, test_data, args.out / "density.png")
    plot_samples(samples, test_data, args.out / "samples.png")
    plot_layers(flow, (test_data[:2000] - mean) / std, args.out / "layers.png")
    metrics = {
        "test_nll_nats": test_nll,
        "final_train_loss": sum(losses[-50:]) / len(losses[-50:]) if losses else None,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "flow_steps": args.flow_steps,
        "hidden": args.hidden,
        "prior": args.prior,
        "parameters": sum(p.numel() for p in flow.parameters()),
        "train_seconds": wall,
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"test NLL: {test_nll:.4f} nats per point ({args.steps} SVI steps, {wall:.1f} s)")
    print(f"plots and metrics written to {args.out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
