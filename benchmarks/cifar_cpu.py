"""CIFAR-10 on the CPU: pyro-glow against normflows' Glow of the same architecture.

    python benchmarks/cifar_cpu.py [--steps 1000] [--data folder:../shared/data/cifar10-jpeg]

Both models: L=3 levels, K=8 steps, 128 hidden channels, affine coupling, LU 1x1 convolution,
batch 32, Adam lr 1e-3 with 100 warm-up steps and cosine decay, global clipping at 50, the
same batches and dequantization noise. pyro-glow trains through its trainer (Pyro SVI);
normflows through a plain PyTorch loop. Test bits/dim on the same dequantized test images.
The shared copy of CIFAR-10 is JPEG-compressed: its bits/dim are lower than published
CIFAR-10 figures and only comparable side by side. Needs ``pip install normflows``.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence

import torch
from harness import normflows_glow

from pyro_glow.metrics import bits_per_dim
from pyro_glow.training import TrainConfig, Trainer, TrainingData, load_data

LEVELS, STEPS_PER_LEVEL, HIDDEN, BATCH, LR, WARMUP = 3, 8, 128, 32, 1e-3, 100


def bits_on_test(log_prob: Callable[[torch.Tensor], torch.Tensor], data: TrainingData) -> float:
    generator = torch.Generator().manual_seed(2)
    values = []
    with torch.no_grad():
        for start in range(0, len(data.test), 200):
            values.append(log_prob(data.to_units(data.test[start : start + 200], generator)))
    return bits_per_dim(torch.cat(values).double(), 3 * 32 * 32, data.n_bits).mean().item()


def train_normflows(data: TrainingData, steps: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = normflows_glow(LEVELS, STEPS_PER_LEVEL, HIDDEN)
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=LR, fused=True)  # as pyro-glow's FlowOptimizer

    def factor(t: int) -> float:
        return min(1.0, (t + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        index = torch.randint(len(data.train), (BATCH,), generator=generator)
        batch = data.to_units(data.train[index], generator) - 0.5
        loss = -model.log_prob(batch, None).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 50.0)
        optimizer.step()
        schedule.step()
    seconds = time.perf_counter() - start
    model.eval()
    return {
        "test_bits_per_dim": bits_on_test(lambda y: model.log_prob(y - 0.5, None), data),
        "images_per_s": steps * BATCH / seconds,
        "parameters": sum(p.numel() for p in params),
    }


def train_pyro_glow(config: TrainConfig) -> dict[str, float]:
    trainer = Trainer(config)
    metrics = trainer.run()
    return {
        "test_bits_per_dim": metrics["test_bits_per_dim"],
        "images_per_s": metrics["examples_per_s"],
        "parameters": metrics["parameters"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--data", default="folder:../shared/data/cifar10-jpeg")
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            data=args.data, steps=args.steps, batch_size=BATCH, levels=LEVELS,
            flow_steps=STEPS_PER_LEVEL, hidden=HIDDEN, warmup_steps=WARMUP, lr=LR, out=out,
            train_size=args.train_size, test_size=args.test_size, checkpoint_every=args.steps,
        )  # fmt: skip
        data = load_data(config.resolved())
        results = {"pyro-glow (SVI)": train_pyro_glow(config)}
    results["normflows Glow"] = train_normflows(data, args.steps)
    threads = torch.get_num_threads()
    print(f"CIFAR-10 (JPEG copy), {args.steps} steps of batch {BATCH}, {threads} threads")
    print(f"{'model':18s} {'params':>9s} {'test bits/dim':>14s} {'images/s':>9s}")
    for name, result in results.items():
        print(
            f"{name:18s} {result['parameters']:9d} {result['test_bits_per_dim']:14.3f} "
            f"{result['images_per_s']:9.1f}"
        )
    ours, peer = results["pyro-glow (SVI)"], results["normflows Glow"]
    ratio = ours["images_per_s"] / peer["images_per_s"]
    print(f"speed ratio (pyro-glow / normflows images/s): {ratio:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"steps": args.steps, "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
