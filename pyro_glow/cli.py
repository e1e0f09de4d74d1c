"""The ``pyro-glow`` command line (also ``python -m pyro_glow``).

pyro-glow train moons|cifar10|folder:PATH [options]
pyro-glow sample CHECKPOINT [--n N] [--temperature T] [--out FILE]
pyro-glow eval CHECKPOINT [--data-root DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from . import __version__
from .allocator import retain_freed_memory
from .checkpoint import CheckpointWriteError, RunFolderLocked, read_checkpoint
from .plots import plot_run, save_samples
from .priors import PRIORS
from .training import TrainConfig, Trainer, TrainingDiverged, evaluate, load_checkpoint, load_data


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train", help="train a Glow through Pyro SVI")
    parser.add_argument("data", help="moons, cifar10 or folder:PATH (an ImageFolder)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, help="default 256 (moons) or 64 (images)")
    parser.add_argument("--lr", type=float, help="default 2e-3 (moons) or 1e-3 (images)")
    parser.add_argument("--optimizer", choices=("adam", "adamax"), default="adam")
    parser.add_argument("--lr-decay", choices=("cosine", "none"), default="cosine")
    parser.add_argument("--warmup-steps", type=int, help="default 300 (moons) or 200 (images)")
    parser.add_argument(
        "--clip-norm",
        type=float,
        default=None,
        help="global gradient-norm clip: default 2 (moons) or 50 (images); inf disables",
    )
    parser.add_argument("--levels", type=int, default=3, help="multi-scale levels L (images)")
    parser.add_argument("--flow-steps", type=int, help="steps K per level: 12 (moons), 16")
    parser.add_argument("--hidden", type=int, help="coupling width: 128 (moons), 512 (images)")
    parser.add_argument("--prior", choices=PRIORS, default="normal")
    parser.add_argument("--components", type=int, default=2, help="mixture components")
    parser.add_argument("--additive", action="store_true", help="NICE additive couplings")
    parser.add_argument("--n-bits", type=int, default=8, help="bits per pixel kept (Glow: 5)")
    parser.add_argument("--noise", type=float, default=0.05, help="two-moons noise")
    parser.add_argument("--train-size", type=int, help="training examples (default: all)")
    parser.add_argument("--test-size", type=int, help="test examples (default: all)")
    parser.add_argument("--data-root", default="data", help="where CIFAR-10 is downloaded")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run folder (default runs/DATA)")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--max-nonfinite", type=int, default=20)
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast for the networks")
    parser.add_argument(
        "--jit", action="store_true", help="Pyro's JitTrace_ELBO (less overhead per step)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the flow's log-density (fused element-wise work; compiles first)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        help="seconds of training in this invocation; then checkpoint and evaluate "
        "(--resume continues)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-glow",
        description="Glow-style normalizing flows as Pyro TransformModules: train, sample, eval.",
    )
    parser.add_argument("--version", action="version", version=f"pyro-glow {__version__}")
    commands = parser.add_subparsers(dest="command")
    _add_train(commands)
    sample = commands.add_parser("sample", help="draw samples from a checkpoint")
    sample.add_argument("checkpoint")
    sample.add_argument("--n", type=int, default=64)
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--out", default="samples.png", help="a .png (plot) or .pt (tensor)")
    sample.add_argument("--seed", type=int, default=0)
    evaluate_parser = commands.add_parser("eval", help="test NLL (vectors) or bits/dim (images)")
    evaluate_parser.add_argument("checkpoint")
    evaluate_parser.add_argument("--data-root", default=None, help="override the saved one")
    return parser


def _train(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["out"] = args.out or str(Path("runs") / args.data.replace(":", "_").replace("/", "_"))
    retain_freed_memory()  # 4-8% faster CPU steps: no page faults for reallocated activations
    try:
        trainer = Trainer(TrainConfig(**values), resume=args.resume)
        metrics = trainer.run()
    except (TrainingDiverged, CheckpointWriteError, RunFolderLocked) as error:
        print(f"pyro-glow: {error}", file=sys.stderr)
        return 2
    if trainer.is_main:
        figures = plot_run(trainer)
        print(json.dumps(metrics, indent=2))
        print(f"{len(figures)} figures, metrics.json and checkpoint.pt in {trainer.out}/")
    return 0


def _sample(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    flow = load_checkpoint(args.checkpoint)
    samples = flow.sample(args.n, temperature=args.temperature)
    save_samples(samples, Path(args.out))
    print(f"{args.n} samples at temperature {args.temperature} written to {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    state = read_checkpoint(args.checkpoint)
    config = TrainConfig(**state["config"])
    if args.data_root is not None:
        config = dataclasses.replace(config, data_root=args.data_root)
    flow = load_checkpoint(args.checkpoint)
    print(json.dumps(evaluate(flow, load_data(config), config), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return {"train": _train, "sample": _sample, "eval": _eval}[args.command](args)
    except ValueError as error:
        parser.exit(2, f"pyro-glow {args.command}: error: {error}\n")
