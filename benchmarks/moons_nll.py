"""Two-moons density estimation against the true density: pyro-glow beside Pyro's own
affine-coupling stack and normflows' RealNVP, same data, steps, batch and schedule.

    python benchmarks/moons_nll.py [--steps 3000] [--seeds 3] [--lr 2e-3] [--clip-norm 2]
                                   [--train-size N] [--json FILE]

Data: sklearn two-moons, noise 0.05, the trainer's default training-set size (each of the
3000 x 256 draws a fresh point) and 5,000 test points. Every model gets the same Adam
schedule and global gradient-norm clip (the trainer's moons default of 2 unless
``--clip-norm`` says otherwise). Seed ``s`` draws the data (seeds
``s`` and ``s + 1``), initialises every model and orders its batches; the table gives each
seed's gap and the mean over the seeds whose loss stayed finite (a NaN loss stops that fit
and is reported with its step), since one seed's gap varies by a few thousandths of a nat.
The true test NLL comes from ``pyro_glow.data.moons_log_density`` (quadrature); ``gap`` is
each model's test NLL minus it, in nats per point. Needs ``pip install normflows``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import Permute, affine_coupling

from pyro_glow.data import make_moons_data, moons_log_density
from pyro_glow.training import VECTOR_DEFAULTS, TrainConfig, Trainer

BATCH, HIDDEN, LAYERS, WARMUP = 256, 128, 12, 300


@dataclass(frozen=True)
class Fit:
    """What every model's fit shares: steps, peak learning rate, gradient-norm clip, seed."""

    steps: int
    lr: float
    clip_norm: float
    seed: int


def _fit(
    log_prob: Callable[[torch.Tensor], torch.Tensor],
    params: list[torch.nn.Parameter],
    train: torch.Tensor,
    fit: Fit,
) -> tuple[float, int | None]:
    """Adam with warm-up, cosine decay and clipping, as pyro-glow's trainer.

    Returns the seconds taken and the step at which the loss first was not finite (the fit
    stops there), or ``None``.
    """
    steps = fit.steps
    optimizer = torch.optim.Adam(params, lr=fit.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda t: (
            min(1.0, (t + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps))
        ),
    )
    generator = torch.Generator().manual_seed(fit.seed)
    start = time.perf_counter()
    for step in range(steps):
        batch = train[torch.randint(len(train), (BATCH,), generator=generator)]
        loss = -log_prob(batch).mean()
        if not torch.isfinite(loss):
            return time.perf_counter() - start, step
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, fit.clip_norm)
        optimizer.step()
        schedule.step()
    return time.perf_counter() - start, None


def _fit_standardised(
    flow: Callable[[torch.Tensor], torch.Tensor],
    params: list[torch.nn.Parameter],
    train: torch.Tensor,
    test: torch.Tensor,
    fit: Fit,
) -> dict[str, float]:
    """Fit a peer's ``log_prob`` on standardised data; its test NLL in the data's units."""
    mean, std = train.mean(0), train.std(0)
    seconds, diverged_at = _fit(lambda x: flow((x - mean) / std), params, train, fit)
    nll = math.nan
    if diverged_at is None:
        with torch.no_grad():
            nll = -(flow((test - mean) / std) - std.log().sum()).mean().item()
    return {
        "test_nll": nll,
        "seconds": seconds,
        "parameters": sum(p.numel() for p in params),
        "diverged_at": diverged_at,
    }


def pyro_stack(train: torch.Tensor, test: torch.Tensor, fit: Fit) -> dict[str, float]:
    """Pyro's ``affine_coupling`` x LAYERS with swaps, on standardised data."""
    parts = []
    for _ in range(LAYERS):
        parts += [affine_coupling(2, hidden_dims=[HIDDEN, HIDDEN]), Permute(torch.tensor([1, 0]))]
    modules = torch.nn.ModuleList([p for p in parts if isinstance(p, torch.nn.Module)])
    base = dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1)
    flow = dist.TransformedDistribution(base, parts)
    return _fit_standardised(flow.log_prob, list(modules.parameters()), train, test, fit)


def normflows_realnvp(train: torch.Tensor, test: torch.Tensor, fit: Fit) -> dict[str, float]:
    """normflows' RealNVP: LAYERS affine coupling blocks with swaps, on standardised data."""
    import normflows as nf

    flows = []
    for _ in range(LAYERS):
        net = nf.nets.MLP([1, HIDDEN, HIDDEN, 2], init_zeros=True)
        flows += [nf.flows.AffineCouplingBlock(net), nf.flows.Permute(2, mode="swap")]
    model = nf.NormalizingFlow(nf.distributions.DiagGaussian(2, trainable=False), flows)
    return _fit_standardised(model.log_prob, list(model.parameters()), train, test, fit)


def pyro_glow_svi(train: torch.Tensor, test: torch.Tensor, fit: Fit) -> dict[str, float]:
    """pyro-glow's vector Glow (its moons defaults: K=12, hidden 128) trained by its trainer,
    which draws the same data (same size and seed) itself."""
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            data="moons",
            steps=fit.steps,
            lr=fit.lr,
            clip_norm=fit.clip_norm,
            seed=fit.seed,
            train_size=len(train),
            test_size=len(test),
            out=out,
            checkpoint_every=fit.steps,
        )
        trainer = Trainer(config)
        metrics = trainer.run()
    parameters = sum(p.numel() for p in trainer.flow.parameters())
    return {
        "test_nll": metrics["test_nll"],
        "seconds": metrics["wall_time_s"],
        "parameters": parameters,
        "diverged_at": None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate, all models")
    parser.add_argument(
        "--clip-norm",
        type=float,
        default=VECTOR_DEFAULTS["clip_norm"],
        help="global gradient-norm clip, all models",
    )
    parser.add_argument("--train-size", type=int, default=VECTOR_DEFAULTS["train_size"])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    # A diverging peer's NaN is recorded as its divergence step, not raised by validation.
    pyro.enable_validation(False)
    models = {
        "pyro-glow glow((2,), K=12) via SVI": pyro_glow_svi,
        "Pyro affine_coupling x12": pyro_stack,
        "normflows RealNVP x12": normflows_realnvp,
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    print(
        f"two-moons, noise 0.05, {args.train_size} training points, {args.steps} steps of "
        f"batch {BATCH} at lr {args.lr:g}, clip {args.clip_norm:g}, seeds 0..{args.seeds - 1}"
    )
    print(f"{'model':34s} {'seed':>4s} {'params':>7s} {'test NLL':>9s} {'gap':>8s} {'seconds':>8s}")
    for seed in range(args.seeds):
        train, test = make_moons_data(args.train_size, 5000, 0.05, seed=seed)
        true_nll = -moons_log_density(test.double(), 0.05).mean().item()
        for name, run in models.items():
            torch.manual_seed(seed)
            result = run(train, test, Fit(args.steps, args.lr, args.clip_norm, seed))
            result.update(seed=seed, true_nll=true_nll, gap=result["test_nll"] - true_nll)
            results[name].append(result)
            diverged = result["diverged_at"]
            note = "" if diverged is None else f"  NaN loss at step {diverged}"
            print(
                f"{name:34s} {seed:4d} {result['parameters']:7d} {result['test_nll']:9.4f} "
                f"{result['gap']:8.4f} {result['seconds']:8.1f}{note}",
                flush=True,
            )
    print(f"{'model':34s} {'mean gap':>9s} {'max gap':>8s} {'diverged':>9s} {'mean s':>7s}")
    for name, runs in results.items():
        gaps = [r["gap"] for r in runs if r["diverged_at"] is None]
        mean_gap = statistics.mean(gaps) if gaps else math.nan
        max_gap = max(gaps) if gaps else math.nan
        diverged = sum(r["diverged_at"] is not None for r in runs)
        seconds = statistics.mean(r["seconds"] for r in runs)
        print(
            f"{name:34s} {mean_gap:9.4f} {max_gap:8.4f} {diverged:5d} of {len(runs)} {seconds:7.1f}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "steps": args.steps,
                    "lr": args.lr,
                    "clip_norm": args.clip_norm,
                    "train_size": args.train_size,
                    "results": results,
                },
                handle,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
