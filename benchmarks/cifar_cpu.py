"""CIFAR-10 on the CPU: pyro-glow against normflows' Glow of the same architecture.

    python benchmarks/cifar_cpu.py [--steps 1000] [--data folder:../shared/data/cifar10-jpeg]

Both models: L=3 levels, K=8 steps, 128 hidden channels, affine coupling, LU 1x1 convolution,
batch 32, Adam lr 1e-3 with 100 warm-up steps and cosine decay, global clipping at 50, the
same batches and dequantization noise. pyro-glow trains through its trainer (Pyro SVI);
normflows through a plain PyTorch loop. Test bits/dim on the same dequantized test images.
The shared copy of CIFAR-10 is JPEG-compressed: its bits/dim are lower than published
CIFAR-10 figures and only comparable side by side. Needs ``pip install normflows``.

The two runs follow one another, so their images/s carry the machine's drift; the speed
ratio is therefore also measured with ``--alternate N`` steps of each (default 20) timed
A B A B in one process after the runs: the trainer's own step (batch drawing and
dequantization included) against the same normflows step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence

import torch
from harness import alternate, normflows_glow

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


def normflows_step(
    data: TrainingData, steps: int, seed: int = 0
) -> tuple[torch.nn.Module, Callable[[], None]]:
    """normflows' Glow and one training step of it on the same batches as the trainer's."""
    torch.manual_seed(seed)
    model = normflows_glow(LEVELS, STEPS_PER_LEVEL, HIDDEN)
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=LR, fused=True)  # as pyro-glow's FlowOptimizer

    def factor(t: int) -> float:
        return min(1.0, (t + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    generator = torch.Generator().manual_seed(seed)

    def step() -> None:
        index = torch.randint(len(data.train), (BATCH,), generator=generator)
        batch = data.to_units(data.train[index], generator) - 0.5
        loss = -model.log_prob(batch, None).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 50.0)
        optimizer.step()
        schedule.step()

    return model, step


def train_normflows(data: TrainingData, steps: int) -> dict[str, float]:
    model, step = normflows_step(data, steps)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    model.eval()
    return {
        "test_bits_per_dim": bits_on_test(lambda y: model.log_prob(y - 0.5, None), data),
        "images_per_s": steps * BATCH / seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def alternated_step_times(config: TrainConfig, data: TrainingData, repeats: int) -> dict:
    """Median seconds of the trainer's step and of normflows' step, timed alternately."""
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(dataclasses.replace(config, out=out))
        try:
            _, peer_step = normflows_step(data, config.steps)
            return alternate({"pyro-glow (SVI)": trainer._step, "normflows": peer_step}, repeats)
        finally:
            trainer.close()


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
    parser.add_argument("--alternate", type=int, default=20, help="alternated timing steps")
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
    step_times = alternated_step_times(config, data, args.alternate)
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
    print(f"speed ratio over the runs (pyro-glow / normflows images/s): {ratio:.2f}")
    ours_s, peer_s = step_times["pyro-glow (SVI)"], step_times["normflows"]
    print(
        f"alternated steps ({args.alternate} each): pyro-glow trainer {1e3 * ours_s:.1f} ms, "
        f"normflows {1e3 * peer_s:.1f} ms, time ratio {ours_s / peer_s:.3f}"
    )
    if args.json:
        with open(args.json, "w") as handle:
            payload = {"steps": args.steps, "results": results, "alternated_step_s": step_times}
            json.dump(payload, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
