"""Bayesian logistic regression on the breast-cancer data: a Glow guide against Pyro's
Gaussian guides.

    python examples/bayes_logreg.py [--steps 2000] [--lr 1e-2] [--json FILE]

Model: 30 standardised features and an intercept, w ~ N(0, I_31), y_n ~ Bernoulli(sigmoid(x_n.w)).
The data (569 tumours, sklearn's ``load_breast_cancer``) are split 70/30 at random
(``--seed``); the features are standardised with the training set's statistics. Each guide
(:class:`pyro_glow.guides.AutoGlow`, ``AutoNormal``, ``AutoMultivariateNormal``) is fitted
by SVI with the same steps, particles and learning rate; the table gives the ELBO on the
training set (``--eval-particles`` draws) and the held-out log predictive density per test
point, log (1/S) sum_s p(y_n | w_s), from S posterior draws taken with ``Predictive``, and
the accuracy of the posterior predictive mean.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

from pyro_glow.guides import AutoGlow

GUIDES = ("pyro-glow", "AutoNormal", "AutoMultivariateNormal")


def load_data(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Standardised features with a leading column of ones, and labels (train, test)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=seed, stratify=y
    )
    mean, std = x_train.mean(0), x_train.std(0)

    def prepare(features):
        standard = torch.as_tensor((features - mean) / std, dtype=torch.float32)
        return torch.cat([torch.ones(len(standard), 1), standard], dim=1)

    as_labels = lambda labels: torch.as_tensor(labels, dtype=torch.float32)  # noqa: E731
    return prepare(x_train), as_labels(y_train), prepare(x_test), as_labels(y_test)


def model(x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """w ~ N(0, I), y ~ Bernoulli(logits = x w).

    Vectorised particles give w the shape ``[P, 1, D]`` (the particle plate left of the data
    plate); ``(w * x).sum(-1)`` then has the plates' shape ``[P, N]``.
    """
    w = pyro.sample("w", dist.Normal(torch.zeros(x.shape[1]), 1.0).to_event(1))
    logits = (w * x).sum(-1)
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


def make_guide(kind: str, steps: int, hidden: int) -> Callable:
    if kind == "pyro-glow":
        return AutoGlow(model, steps=steps, hidden=hidden)
    if kind == "AutoNormal":
        return AutoNormal(model)
    if kind == "AutoMultivariateNormal":
        return AutoMultivariateNormal(model)
    raise ValueError(f"unknown guide {kind!r}; choose one of {GUIDES}")


def held_out_scores(
    guide: Callable, x: torch.Tensor, y: torch.Tensor, draws: int
) -> tuple[float, float]:
    """(mean log predictive density per test point, accuracy of the predictive mean)."""
    predictive = Predictive(model, guide=guide, num_samples=draws, return_sites=["w", "y"])
    with torch.no_grad():
        samples = predictive(x)
    logits = torch.einsum("nd,sd->sn", x, samples["w"].reshape(draws, -1))
    log_lik = dist.Bernoulli(logits=logits).log_prob(y)
    lpd = (torch.logsumexp(log_lik, dim=0) - math.log(draws)).mean().item()
    accuracy = ((samples["y"].float().mean(0) > 0.5).float() == y).float().mean().item()
    return lpd, accuracy


def fit(kind: str, data: tuple, args: argparse.Namespace) -> dict:
    x_train, y_train, x_test, y_test = data
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    guide = make_guide(kind, args.flow_steps, args.hidden)
    optim = pyro.optim.ClippedAdam({"lr": args.lr, "lrd": 0.1 ** (1 / max(args.steps, 1))})
    loss = Trace_ELBO(num_particles=args.particles, vectorize_particles=True)
    svi = SVI(model, guide, optim, loss)
    start = time.perf_counter()
    for _ in range(args.steps):
        svi.step(x_train, y_train)
    seconds = time.perf_counter() - start
    evaluation = Trace_ELBO(num_particles=args.eval_particles, vectorize_particles=True)
    with torch.no_grad():
        elbo = -evaluation.loss(model, guide, x_train, y_train)
    lpd, accuracy = held_out_scores(guide, x_test, y_test, args.draws)
    return dict(guide=kind, elbo=elbo, test_lpd=lpd, test_accuracy=accuracy, seconds=seconds)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="SVI steps per guide")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--particles", type=int, default=8, help="ELBO particles per step")
    parser.add_argument("--flow-steps", type=int, default=4, help="Glow steps of the guide")
    parser.add_argument("--hidden", type=int, default=32, help="coupling MLP width")
    parser.add_argument("--eval-particles", type=int, default=2000)
    parser.add_argument("--draws", type=int, default=2000, help="posterior draws for the test")
    parser.add_argument("--guides", nargs="+", default=list(GUIDES), choices=GUIDES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = load_data(args.seed)
    results = [fit(kind, data, args) for kind in args.guides]
    print(
        f"breast cancer, {len(data[0])} train / {len(data[2])} test; {args.steps} steps x "
        f"{args.particles} particles, lr {args.lr:g}\n"
    )
    print("| guide | train ELBO (nats) | test log predictive / point | test accuracy | fit s |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['guide']} | {r['elbo']:.2f} | {r['test_lpd']:.4f} | "
            f"{r['test_accuracy']:.3f} | {r['seconds']:.0f} |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "results": results}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
