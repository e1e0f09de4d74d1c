"""Numerical stability of pyro-glow, measured: high learning rate, depth, float32 round trips,
a constant input channel, sampling at temperature 1.0 and float64 end to end.

    python benchmarks/stability.py [--seeds 3] [--image-steps 20] [--json FILE]

1. Two-moons at lr 1e-2 for 1000 steps with pyro-glow's default moons flow, exactly what
   ``pyro-glow train moons --lr 1e-2 --steps 1000 --train-size 10000 --clip-norm 50 --seed S``
   runs (12 Glow steps of 128 units, batch 256, 300 warm-up steps, cosine decay, clipping at
   50, the moons default when docs/reliability.md's table was measured; it is 2 now),
   beside Pyro's own stack of 16 ``affine_coupling`` layers (``pyro.distributions.transforms``,
   default hidden sizes, a ``Permute`` between layers) trained the usual way (plain Adam, no
   clipping) at lr 2e-3 and 1e-2 on the same data (seed S) and the same batch indices.
   Counted: non-finite losses, the first one, the test NLL, and non-finite values among
   100,000 samples at temperature 1.0.
2. float32 round trips ``x -> f^-1(x) -> f(f^-1(x))`` of a 32-step vector Glow trained 300
   steps on two-moons, and of an L=3, K=16 image Glow (32 hidden channels instead of 512, to
   fit a CPU) on 3x32x32 CIFAR-10 images after ``--image-steps`` Adam steps at lr 1e-3.
3. A constant input channel: image data whose green channel is one pixel value.
4. float64: fresh vector and image flows trained through Pyro SVI in float64 and, from the same
   initial parameters and batches, in float32: the float64 run is finite and follows the
   float32 one (largest loss difference reported).

Images come from ``--images`` (an ImageFolder with a ``test`` split; default the shared
CIFAR-10 JPEG copy); without it, smooth synthetic images are used (and reported as such).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import Permute, affine_coupling
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_glow import glow
from pyro_glow.data import image_dataset, make_moons_data, moons_log_density
from pyro_glow.metrics import dequantize
from pyro_glow.training import TrainConfig, Trainer, TrainingDiverged, density_model, empty_guide
from pyro_glow.transforms import forward_and_log_det, inverse_and_log_det

BATCH, STEPS = 256, 1000
TRAIN_SIZE, TEST_SIZE = 10_000, 5000
IMAGE_BATCH = 16
PYRO_LAYERS = 16
SAMPLES = 100_000


def _nonfinite(x: torch.Tensor) -> int:
    return int((~torch.isfinite(x)).sum())


def pyro_glow_moons(seed: int, lr: float) -> dict[str, Any]:
    """``pyro-glow train moons --lr LR --steps 1000 --train-size 10000 --clip-norm 50 --seed
    SEED`` (logging every step): the 10,000 points Pyro's stack trains on."""
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            data="moons",
            lr=lr,
            steps=STEPS,
            train_size=TRAIN_SIZE,
            test_size=TEST_SIZE,
            clip_norm=50.0,
            seed=seed,
            out=out,
            log_every=1,
        )
        trainer = Trainer(config)
        start = time.perf_counter()
        diverged = None
        try:
            metrics = trainer.run()
        except TrainingDiverged as error:
            diverged, metrics = str(error), {"test_nll": math.nan}
        seconds = time.perf_counter() - start
        records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").open()]
    losses = torch.tensor([r["loss"] for r in records])
    first = next((r["step"] for r in records if not math.isfinite(r["loss"])), None)
    torch.manual_seed(seed)
    samples = trainer.flow.sample(SAMPLES, temperature=1.0)
    return {
        "model": "pyro-glow glow((2,), K=12)",
        "lr": lr,
        "seed": seed,
        "nonfinite_losses": _nonfinite(losses),
        "skipped_steps": trainer.nonfinite,
        "first_nonfinite_step": first,
        "diverged": diverged,
        "test_nll": metrics["test_nll"],
        "nonfinite_samples": _nonfinite(samples),
        "max_abs_sample": samples.abs().max().item(),
        "seconds": seconds,
    }


def pyro_moons(seed: int, lr: float, train: torch.Tensor, test: torch.Tensor) -> dict[str, Any]:
    """Pyro's 16 ``affine_coupling`` layers with permutations, plain Adam, same batches."""
    torch.manual_seed(seed)
    parts = []
    for _ in range(PYRO_LAYERS):
        parts += [affine_coupling(2), Permute(torch.tensor([1, 0]))]
    modules = torch.nn.ModuleList([p for p in parts if isinstance(p, torch.nn.Module)])
    base = dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1)
    flow = dist.TransformedDistribution(base, parts)
    optimizer = torch.optim.Adam(modules.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    start = time.perf_counter()
    with pyro.validation_enabled(False):
        for _ in range(STEPS):
            batch = train[torch.randint(len(train), (BATCH,), generator=generator)]
            loss = -flow.log_prob(batch).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        seconds = time.perf_counter() - start
        with torch.no_grad():
            test_nll = -flow.log_prob(test).mean().item()
            torch.manual_seed(seed)
            samples = flow.sample((SAMPLES,))
    losses = torch.tensor(losses)
    bad = (~torch.isfinite(losses)).nonzero()
    return {
        "model": f"Pyro affine_coupling x{PYRO_LAYERS}",
        "lr": lr,
        "seed": seed,
        "nonfinite_losses": _nonfinite(losses),
        "skipped_steps": None,
        "first_nonfinite_step": int(bad[0]) + 1 if len(bad) else None,
        "diverged": None,
        "test_nll": test_nll,
        "nonfinite_samples": _nonfinite(samples),
        "max_abs_sample": samples.nan_to_num(0.0, 0.0, 0.0).abs().max().item(),
        "seconds": seconds,
    }


def round_trip_error(transform: Any, x: torch.Tensor) -> dict[str, float]:
    """Max abs errors of ``f(f^-1(x)) - x`` (data side) and ``f^-1(f(z)) - z`` (latent side,
    at ``z = f^-1(x)``), and of the log-determinants of the two directions."""
    with torch.no_grad():
        z, log_det_inverse = inverse_and_log_det(transform, x)
        x_again, log_det_forward = forward_and_log_det(transform, z)
        z_again, _ = inverse_and_log_det(transform, x_again)
    return {
        "data_error": (x_again - x).abs().max().item(),
        "latent_error": (z_again - z).abs().max().item(),
        "log_det_error": (log_det_forward - log_det_inverse).abs().max().item(),
        "max_abs_latent": z.abs().max().item(),
    }


def svi_losses(
    flow: torch.nn.Module, data: torch.Tensor, steps: int, lr: float, seed: int, batch_size: int
) -> torch.Tensor:
    """The losses of ``steps`` SVI steps of the density model on seeded random batches."""
    pyro.clear_param_store()
    svi = SVI(density_model(flow), empty_guide, Adam({"lr": lr}), Trace_ELBO())
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        batch = data[torch.randint(len(data), (batch_size,), generator=generator)]
        losses.append(svi.step(batch))
    return torch.tensor(losses, dtype=torch.float64)


def fit_svi(
    flow: torch.nn.Module, data: torch.Tensor, steps: int, lr: float, seed: int, batch_size: int
) -> dict[str, Any]:
    """:func:`svi_losses`, summarised."""
    losses = svi_losses(flow, data, steps, lr, seed, batch_size)
    return {
        "steps": steps,
        "nonfinite_losses": _nonfinite(losses),
        "first_loss": losses[0].item(),
        "last_loss": losses[-1].item(),
    }


def float64_against_float32(
    make_flow: Any, data: torch.Tensor, steps: int, batch_size: int, seed: int
) -> dict[str, Any]:
    """The same flow (same initial parameters, same batches) trained in float32 and in
    float64 through plain Pyro SVI (Adam, no warm-up or clipping): the float64 run is finite
    and follows the float32 one."""
    torch.manual_seed(seed)
    flow32 = make_flow()
    flow64 = copy.deepcopy(flow32).double()
    losses32 = svi_losses(flow32, data, steps, lr=1e-3, seed=seed, batch_size=batch_size)
    losses64 = svi_losses(flow64, data.double(), steps, 1e-3, seed, batch_size)
    return {
        "steps": steps,
        "nonfinite_losses": _nonfinite(losses64),
        "first_loss": losses64[0].item(),
        "last_loss": losses64[-1].item(),
        "float32_last_loss": losses32[-1].item(),
        # Two precisions follow each other until rounding differences grow (training is
        # chaotic): the first 10 steps compare them; the maxima show spikes in either run.
        "loss_difference_first_10_steps": (losses64 - losses32)[:10].abs().max().item(),
        "max_loss_float32": losses32.max().item(),
        "max_loss_float64": losses64.max().item(),
        "parameter_dtypes": sorted({str(p.dtype) for p in flow64.parameters()}),
        "log_prob_dtype": str(flow64.log_prob(data[:4].double()).dtype),
        "sample_dtype": str(flow64.sample(4).dtype),
        "round_trip": round_trip_error(flow64.transform, data[:64].double()),
    }


def load_images(folder: Path | None, count: int) -> tuple[torch.Tensor, str]:
    """``count`` uint8 images [N, 3, 32, 32]: from an ImageFolder's test split, or smooth
    synthetic colour gradients when there is none."""
    if folder is not None and (folder / "test").is_dir():
        dataset = image_dataset(f"folder:{folder}", train=False)
        images = torch.stack([dataset[i][0] for i in range(min(count, len(dataset)))])
        return images, f"{len(images)} CIFAR-10 test images from {folder}"
    generator = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, 32)
    colour = torch.rand(count, 3, 1, 1, generator=generator)
    images = (colour * ramp[:, None] * ramp[None, :] * 255).to(torch.uint8)
    return images, f"{count} synthetic colour gradients (no image folder found)"


def image_stability(images: torch.Tensor, steps: int, seed: int) -> dict[str, Any]:
    """The L=3, K=16 image Glow: round trips after training, a constant channel, float64."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    data = dequantize(images, generator=generator) - 0.5
    flow = glow((3, 32, 32), levels=3, steps=16, hidden=32)
    start = time.perf_counter()
    training = fit_svi(flow, data, steps, lr=1e-3, seed=seed, batch_size=IMAGE_BATCH)
    training["seconds"] = time.perf_counter() - start
    results: dict[str, Any] = {"training": training}
    results["round_trip_float32"] = round_trip_error(flow.transform, data[:64])
    torch.manual_seed(seed)
    samples = flow.sample(64, temperature=1.0)
    results["samples_t1"] = {
        "nonfinite": _nonfinite(samples),
        "max_abs": samples.abs().max().item(),
    }

    constant = images.clone()
    constant[:, 1] = 128
    constant_data = dequantize(constant, generator=generator) - 0.5
    torch.manual_seed(seed)
    constant_flow = glow((3, 32, 32), levels=3, steps=16, hidden=32)
    results["constant_channel"] = fit_svi(
        constant_flow, constant_data, steps, lr=1e-3, seed=seed, batch_size=IMAGE_BATCH
    )
    results["constant_channel"]["round_trip"] = round_trip_error(
        constant_flow.transform, constant_data[:64]
    )

    results["float64"] = float64_against_float32(
        lambda: glow((3, 32, 32), levels=3, steps=16, hidden=32),
        data,
        max(1, steps // 4),
        IMAGE_BATCH,
        seed,
    )
    return results


def vector_stability(seed: int) -> dict[str, Any]:
    """The 32-step vector Glow on two-moons: round trips after 300 steps, float64."""
    train, test = make_moons_data(10000, 5000, 0.05, seed=seed)
    mean, std = train.mean(0), train.std(0)
    train, test = (train - mean) / std, (test - mean) / std
    torch.manual_seed(seed)
    flow = glow((2,), steps=32, hidden=64)
    results: dict[str, Any] = {
        "training": fit_svi(flow, train, 300, lr=1e-3, seed=seed, batch_size=BATCH)
    }
    results["round_trip_float32"] = round_trip_error(flow.transform, test)
    torch.manual_seed(seed)
    samples = flow.sample(SAMPLES, temperature=1.0)
    results["samples_t1"] = {
        "nonfinite": _nonfinite(samples),
        "max_abs": samples.abs().max().item(),
    }
    results["float64"] = float64_against_float32(
        lambda: glow((2,), steps=32, hidden=64), train, 100, BATCH, seed
    )
    return results


def _row(result: dict[str, Any]) -> str:
    first = result["first_nonfinite_step"]
    return (
        f"{result['model']:28s} {result['lr']:7.0e} {result['seed']:4d} "
        f"{result['nonfinite_losses']:9d} {str(first):>9s} {result['test_nll']:9.4f} "
        f"{result['nonfinite_samples']:9d} {result['seconds']:7.1f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the moons comparison")
    parser.add_argument("--image-steps", type=int, default=20)
    parser.add_argument(
        "--images", type=Path, default=Path(__file__).parents[2] / "shared/data/cifar10-jpeg"
    )
    parser.add_argument(
        "--parts", default="moons,vector,image", help="comma-separated parts to run"
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    results: dict[str, Any] = {"torch": torch.__version__, "pyro": pyro.__version__}

    if "moons" in parts:
        print(f"1. two-moons, {STEPS} steps of batch {BATCH}, data and batches of each seed")
        header = f"{'model':28s} {'lr':>7s} {'seed':>4s} {'nonfinite':>9s} {'first':>9s}"
        print(f"{header} {'test NLL':>9s} {'bad samp':>9s} {'seconds':>7s}")
        moons = []
        true_nlls = []
        for seed in range(args.seeds):
            train, test = make_moons_data(TRAIN_SIZE, TEST_SIZE, 0.05, seed=seed)
            true_nlls.append(-moons_log_density(test.double(), 0.05).mean().item())
            print(f"seed {seed}: true test NLL {true_nlls[-1]:.4f}")
            moons.append(pyro_glow_moons(seed, 1e-2))
            print(_row(moons[-1]))
            for lr in (2e-3, 1e-2):
                moons.append(pyro_moons(seed, lr, train, test))
                print(_row(moons[-1]))
        results["moons"] = {"true_nll_by_seed": true_nlls, "runs": moons}
    if "vector" in parts:
        print("\n2-4. vector Glow, 32 steps (hidden 64), after 300 SVI steps at lr 1e-3")
        results["vector"] = vector_stability(0)
        print(json.dumps(results["vector"], indent=1))
    if "image" in parts:
        images, source = load_images(args.images, 256)
        print(f"\n2-4. image Glow L=3, K=16, hidden 32, on {source}, {args.image_steps} steps")
        results["image"] = {"images": source, **image_stability(images, args.image_steps, 0)}
        print(json.dumps(results["image"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    main()
