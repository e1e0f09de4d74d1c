"""Training flows as densities through Pyro SVI, with checkpoints that never lose work.

The model registers the flow with ``pyro.module`` and observes each batch under a
``pyro.plate`` (scaled to a loss in nats per dimension); the guide is empty, so SVI's ELBO
is the log-likelihood. The optimizer is :class:`~pyro_glow.optim.FlowOptimizer` (one torch
optimizer, warm-up, global clipping, non-finite guard).

Data units. The flow carries the data's scaling as its last generative layer, a fixed
:class:`~pyro_glow.transforms.ElementwiseAffine`: for two-moons the standardisation
``x = z * std + mean``, for images the shift ``y = h + 1/2`` of pixels dequantized to
``[0, 1)``. So ``flow.log_prob`` is in the data's own units and ``flow.sample`` returns data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions.torch_transform import ComposeTransformModule
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from .builders import glow
from .checkpoint import (
    FORMAT,
    CheckpointWriteError,
    RunLock,
    load_state_strict,
    read_checkpoint,
    remove_stale_temporaries,
    save_atomic,
    write_text_atomic,
)
from .data import image_dataset, make_moons_data, moons_log_density
from .flow import Flow
from .metrics import bits_per_dim, dequantize
from .optim import FlowOptimizer
from .transforms import ElementwiseAffine

VECTOR_DEFAULTS = {
    "batch_size": 256,
    "lr": 2e-3,
    "flow_steps": 12,
    "hidden": 128,
    "warmup_steps": 300,
    "clip_norm": 2.0,
    "train_size": 1_000_000,
    "test_size": 5000,
}
IMAGE_DEFAULTS = {
    "batch_size": 64,
    "lr": 1e-3,
    "flow_steps": 16,
    "hidden": 512,
    "warmup_steps": 200,
    "clip_norm": 50.0,
}
CHECKPOINT = "checkpoint.pt"


class TrainingDiverged(RuntimeError):
    """Too many non-finite losses in a row: the run stopped, its last checkpoint intact."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint).

    ``None`` fields take the defaults of the data's kind: vectors (two-moons) use 12 flow
    steps of 128 hidden units, batches of 256, lr 2e-3 with 300 warm-up steps, a global
    gradient-norm clip of 2 and a million training points, so that 3000 steps of 256 see
    each point about once (with 10,000 points the flow overfits; the clip acts on most
    steps and lowers the mean and median gap over fifteen seeds: both choices are measured
    in docs/benchmarks.md); images use the course's Glow (16 steps per level, 512 channels)
    with batches of 64, lr 1e-3, 200 warm-up steps and a clip of 50, which only catches
    spikes. ``clip_norm=math.inf`` disables clipping.

    ``time_limit``: seconds of training in this invocation (``None``: no limit); the run then
    stops at the end of a step, checkpoints and evaluates as at its end, and ``--resume``
    continues it (the learning-rate schedule still runs over ``steps``).

    ``jit``: Pyro's ``JitTrace_ELBO`` instead of ``Trace_ELBO``: the model's trace and the
    ELBO are compiled with ``torch.jit.trace`` on the first step (after ActNorm's
    initialisation), which removes most of Pyro's fixed cost per step (docs/benchmarks.md;
    the same losses and parameters, tested). One process only, without ``amp``.

    ``compile``: the flow's log-density through ``torch.compile``
    (:meth:`~pyro_glow.flow.Flow.compile_density`), after ActNorm's initialisation on the
    first batch; SVI still runs the model. One process only, without ``jit`` or ``amp``.
    """

    data: str = "moons"
    steps: int = 3000
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str = "adam"
    warmup_steps: int | None = None
    clip_norm: float | None = None
    lr_decay: str = "cosine"
    levels: int = 3
    flow_steps: int | None = None
    hidden: int | None = None
    prior: str = "normal"
    components: int = 2
    additive: bool = False
    n_bits: int = 8
    noise: float = 0.05
    train_size: int | None = None
    test_size: int | None = None
    data_root: str = "data"
    device: str = "auto"
    seed: int = 0
    out: str = "runs/moons"
    log_every: int = 50
    checkpoint_every: int = 500
    max_nonfinite: int = 20
    amp: bool = False
    time_limit: float | None = None
    jit: bool = False
    compile: bool = False

    @property
    def is_vector(self) -> bool:
        return self.data == "moons"

    def resolved(self) -> TrainConfig:
        """A copy with the kind's defaults filled in and every field validated."""
        defaults = VECTOR_DEFAULTS if self.is_vector else IMAGE_DEFAULTS
        filled = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        config = dataclasses.replace(self, **filled)
        for name in ("steps", "log_every", "checkpoint_every", "max_nonfinite"):
            value = getattr(config, name)
            if not isinstance(value, int) or value < (0 if name == "steps" else 1):
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if not config.lr > 0:
            raise ValueError(f"lr must be positive; got {config.lr!r}")
        if not config.clip_norm > 0:
            raise ValueError(
                f"clip_norm must be positive (inf: no clipping); got {config.clip_norm!r}"
            )
        if config.time_limit is not None and not config.time_limit > 0:
            raise ValueError(f"time_limit must be positive seconds; got {config.time_limit!r}")
        if not config.batch_size >= 1:
            raise ValueError(f"batch_size must be >= 1; got {config.batch_size!r}")
        if config.lr_decay not in ("cosine", "none"):
            raise ValueError(f"lr_decay must be cosine or none; got {config.lr_decay!r}")
        if not 1 <= config.n_bits <= 8:
            raise ValueError(f"n_bits must be in 1..8; got {config.n_bits!r}")
        if config.jit and config.amp:
            raise ValueError(
                "jit and amp cannot be combined: torch.jit.trace cannot trace autocast's "
                "cached bfloat16 copies of the weights"
            )
        if config.compile and (config.jit or config.amp):
            raise ValueError(
                "compile cannot be combined with jit or amp (the combinations are untested)"
            )
        if config.device not in ("auto", "cpu", "cuda") and not config.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda; got {config.device!r}")
        return config


@dataclass
class TrainingData:
    """Training and test data in memory: float ``[N, D]`` vectors or uint8 ``[N, C, H, W]``."""

    shape: tuple[int, ...]
    train: torch.Tensor
    test: torch.Tensor
    n_bits: int

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def to_units(self, raw: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Raw items to the flow's data units (dequantized to ``[0, 1)`` for images)."""
        if self.is_image:
            return dequantize(raw, self.n_bits, generator=generator)
        return raw


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available")
    return torch.device(name)


def _stack_images(dataset: Any, size: int | None, seed: int) -> torch.Tensor:
    count = len(dataset) if size is None else min(size, len(dataset))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(
        Subset(dataset, order[:count].tolist()),
        batch_size=256,
        num_workers=min(4, os.cpu_count() or 1),
    )
    batches = [images for images, _ in loader]
    if not batches:
        raise ValueError("the image dataset is empty")
    return torch.cat(batches)


def load_data(config: TrainConfig) -> TrainingData:
    """Two-moons, CIFAR-10 (``cifar10``) or an image folder (``folder:PATH``), in memory."""
    if config.is_vector:
        train, test = make_moons_data(
            config.train_size, config.test_size, config.noise, seed=config.seed
        )
        return TrainingData((2,), train, test, config.n_bits)
    train_set = image_dataset(config.data, config.data_root, train=True)
    test_set = image_dataset(config.data, config.data_root, train=False)
    folder = config.data.removeprefix("folder:")
    if config.data.startswith("folder:") and not (Path(folder) / "train").is_dir():
        # A folder without train/ and test/ splits: hold out a seeded tenth for testing.
        split = torch.Generator().manual_seed(config.seed)
        held_out = max(1, len(train_set) // 10)
        train_set, test_set = torch.utils.data.random_split(
            train_set, [len(train_set) - held_out, held_out], generator=split
        )
    train = _stack_images(train_set, config.train_size, config.seed)
    test = _stack_images(test_set, config.test_size, config.seed + 1)
    return TrainingData(tuple(train.shape[1:]), train, test, config.n_bits)


def build_flow(config: TrainConfig, shape: tuple[int, ...]) -> Flow:
    """The configured Glow with the data's fixed scaling as its last generative layer."""
    model = glow(
        shape,
        levels=config.levels,
        steps=config.flow_steps,
        hidden=config.hidden,
        prior=config.prior,
        components=config.components,
        additive=config.additive,
    )
    units = ElementwiseAffine(shape, loc=0.0 if len(shape) == 1 else 0.5, learnable=False)
    # Images are modelled in [0, 1): Flow.log_prob refuses pixels in other units (0..255).
    data_range = (0.0, 1.0) if len(shape) == 3 else None
    return Flow(model.prior, ComposeTransformModule([*model.transform.parts, units]), data_range)


def density_model(
    flow: Flow, distribution: Callable[[], Any] | None = None, name: str = "flow"
) -> Callable[[torch.Tensor], None]:
    """A Pyro model whose ELBO (with an empty guide) is the mean log-likelihood per dimension.

    The batch is observed under ``pyro.plate`` and scaled by ``1 / batch.numel()``, so the
    loss is in nats per dimension, as Glow optimizes bits per dimension: the gradient's scale
    does not grow with the size of an image, and one clipping threshold (and Adam's epsilon)
    means the same for two-moons and CIFAR-10. Multiply the loss by the event size for nats
    per example.

    ``distribution`` builds the flow's distribution (default ``flow``; the trainer passes the
    ``DistributedDataParallel`` wrapper of the flow, whose call returns the same thing).
    ``name`` prefixes the flow's ``pyro.param`` sites (two models in one param store need two).
    """
    make_distribution = flow if distribution is None else distribution

    def model(batch: torch.Tensor) -> None:
        if batch.numel() == 0:
            raise ValueError(f"density_model: the batch is empty (shape {list(batch.shape)})")
        flow.pyro_module(name)
        with pyro.plate("data", batch.shape[0]), poutine.scale(scale=1.0 / batch.numel()):
            pyro.sample("x", make_distribution(), obs=batch)

    return model


def empty_guide(batch: torch.Tensor) -> None:
    """The guide of a density model: no latent sites."""


@torch.no_grad()
def evaluate(
    flow: Flow, data: TrainingData, config: TrainConfig, batch_size: int = 500
) -> dict[str, float]:
    """Test NLL in nats (vectors, with the true two-moons NLL and the gap) or bits/dim."""
    device = next(flow.parameters()).device
    generator = torch.Generator().manual_seed(config.seed + 2)
    log_probs = []
    for start in range(0, len(data.test), batch_size):
        chunk = data.to_units(data.test[start : start + batch_size], generator)
        log_probs.append(flow.log_prob(chunk.to(device)).cpu())
    log_prob = torch.cat(log_probs).double()
    if data.is_image:
        dims = math.prod(data.shape)
        return {"test_bits_per_dim": bits_per_dim(log_prob, dims, data.n_bits).mean().item()}
    test_nll = -log_prob.mean().item()
    true_nll = -moons_log_density(data.test.double(), config.noise).mean().item()
    return {"test_nll": test_nll, "true_nll": true_nll, "gap_nats": test_nll - true_nll}


class Trainer:
    """One training run: ``Trainer(config, resume=...).run()`` returns the final metrics.

    Every ``checkpoint_every`` steps and at the end, ``OUT/checkpoint.pt`` is written
    atomically with the model, optimizer and scheduler state, the step, the random states and
    the config; ``resume=True`` continues from it exactly (same parameters at the end as an
    uninterrupted run). A step whose loss or gradient is not finite is skipped and counted;
    ``max_nonfinite`` of them in a row stop the run with :class:`TrainingDiverged`.

    Under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1) the flow is wrapped in
    ``DistributedDataParallel`` (NCCL on GPUs, gloo on the CPU); ``batch_size`` is the global
    batch, each rank trains on its shard, rank 0 logs, checkpoints and evaluates.
    ``amp=True`` runs the networks under bfloat16 autocast; the flow's activations, scales and
    log-determinants stay in float32.
    """

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        self.config = config.resolved()
        self.out = Path(self.config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        # One run per folder: refused here, before anything in it is written.
        self._lock = RunLock.acquire(self.out) if self.is_main else None
        self._unlock_when_collected = weakref.finalize(self, self._release_lock, self._lock)
        try:
            if self.is_main:
                remove_stale_temporaries(self.out)
            self._set_up(resume)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _release_lock(lock: RunLock | None) -> None:
        if lock is not None:
            lock.release()

    def close(self) -> None:
        """Release the run folder's lock (done by :meth:`run`, or when the trainer is
        garbage-collected or the interpreter exits); idempotent."""
        self._unlock_when_collected()

    def _set_up(self, resume: bool) -> None:
        self.device = pick_device(self.config.device)
        if self.world_size > 1:
            self._join_process_group()
        pyro.clear_param_store()
        pyro.set_rng_seed(self.config.seed)
        self.data = load_data(self.config)
        self.flow = build_flow(self.config, self.data.shape).to(self.device)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        cosine = self.config.lr_decay == "cosine" and self.config.steps > 0
        self.optim = FlowOptimizer(
            self.config.optimizer,
            lr=self.config.lr,
            warmup_steps=self.config.warmup_steps,
            clip_norm=self.config.clip_norm,
            decay_steps=self.config.steps if cosine else None,
        )
        self.step = 0
        self.nonfinite = 0
        self.consecutive_nonfinite = 0
        self.elapsed = 0.0
        self.stopped_by_time_limit = False
        checkpoint = self.out / CHECKPOINT
        if resume and checkpoint.exists():
            self._restore(read_checkpoint(checkpoint))
        else:
            self._fit_units()
            if self.is_main:
                (self.out / "metrics.jsonl").write_text("")
        # Every mode's first step then runs the initialised model (ActNorm fused with the 1x1
        # convolution before it), as --jit's trace and --compile's graph do.
        self._initialize_on_first_batch()
        distribution: Callable[[], Any] = self.flow
        if self.world_size > 1:
            distribution = self._distributed_flow()
        if self.config.compile:
            self.flow.compile_density()
        elbo = JitTrace_ELBO(ignore_jit_warnings=True) if self.config.jit else Trace_ELBO()
        self.svi = SVI(density_model(self.flow, distribution), empty_guide, self.optim, elbo)

    @property
    def is_main(self) -> bool:
        """Rank 0 (or the only process) logs, checkpoints and evaluates."""
        return self.rank == 0

    def _join_process_group(self) -> None:
        if self.config.jit or self.config.compile:
            option = "--jit" if self.config.jit else "--compile"
            raise ValueError(f"{option} trains in one process; run without it under torchrun")
        if self.config.batch_size % self.world_size:
            raise ValueError(
                f"batch_size {self.config.batch_size} (the global batch) must be divisible by "
                f"the {self.world_size} processes"
            )
        if self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)

    def _distributed_flow(self) -> torch.nn.parallel.DistributedDataParallel:
        """Wrap the flow in DDP once its data-dependent initialisation is done.

        ActNorm initialises on the first *global* batch (peeked without consuming the random
        stream), as a single process with the same global batch would; DDP then broadcasts
        rank 0's state, and each backward averages the gradients of the ranks' shards.
        """
        return torch.nn.parallel.DistributedDataParallel(self.flow)

    def _initialize_on_first_batch(self) -> None:
        """ActNorm's data-dependent initialisation on the first global batch, peeked
        without consuming the random stream (a no-op for initialised layers)."""
        state = self.generator.get_state()
        with torch.no_grad():
            self.flow.log_prob(self._global_batch())
        self.generator.set_state(state)
        self.flow.clear_cache()

    def _fit_units(self) -> None:
        if self.data.is_image:
            return
        units = self.flow.transform.parts[-1]
        with torch.no_grad():
            units.loc.copy_(self.data.train.mean(0))
            units.log_scale.copy_(self.data.train.std(0).log())

    def _restore(self, state: dict[str, Any]) -> None:
        saved = TrainConfig(**state["config"])
        architecture = ("data", "levels", "flow_steps", "hidden", "prior", "components")
        changed = [k for k in architecture if getattr(saved, k) != getattr(self.config, k)]
        if changed:
            raise ValueError(
                f"--resume: the checkpoint in {self.out} was trained with another "
                f"configuration ({', '.join(f'{k}={getattr(saved, k)!r}' for k in changed)})"
            )
        load_state_strict(self.flow, state["model"], f"checkpoint in {self.out}")
        self.optim.set_state(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step = state["step"]
        self.nonfinite = state["nonfinite"]
        self.consecutive_nonfinite = state["consecutive_nonfinite"]
        self.elapsed = state["elapsed"]
        if self.is_main:
            self._truncate_log()

    def _truncate_log(self) -> None:
        """Keep the log records up to the checkpoint's step (a killed run may have logged
        further, and its last line may be cut short)."""
        log = self.out / "metrics.jsonl"
        kept = []
        for line in log.read_text().splitlines() if log.exists() else []:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record["step"] <= self.step:
                kept.append(line)
        # Atomic: a kill during this rewrite must not empty the log of the steps before it.
        write_text_atomic("".join(line + "\n" for line in kept), log)

    def save(self) -> None:
        """Write the checkpoint atomically (rank 0 only); refuses non-finite parameters."""
        if not self.is_main:
            return
        bad = [n for n, p in self.flow.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise TrainingDiverged(
                f"refusing to checkpoint non-finite parameters ({', '.join(bad[:5])}); "
                f"the previous checkpoint in {self.out} is kept"
            )
        state = {
            "format": FORMAT,
            "config": dataclasses.asdict(self.config),
            "event_shape": list(self.data.shape),
            "step": self.step,
            "model": self.flow.state_dict(),
            "optimizer": self.optim.get_state(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "nonfinite": self.nonfinite,
            "consecutive_nonfinite": self.consecutive_nonfinite,
            "elapsed": self.elapsed,
        }
        try:
            save_atomic(state, self.out / CHECKPOINT)
        except CheckpointWriteError as error:
            raise CheckpointWriteError(
                f"step {self.step}: {error}. Training stopped; free space or fix the folder's "
                "permissions, then continue with --resume."
            ) from error.__cause__

    def _global_batch(self) -> torch.Tensor:
        size = (self.config.batch_size,)
        index = torch.randint(len(self.data.train), size, generator=self.generator)
        return self.data.to_units(self.data.train[index], self.generator).to(self.device)

    def _batch(self) -> torch.Tensor:
        """This process's shard of the global batch (all of it in a single process)."""
        batch = self._global_batch()
        return batch[self.rank :: self.world_size] if self.world_size > 1 else batch

    def _record(self, loss: float, steps: int, seconds: float) -> dict[str, Any]:
        record: dict[str, Any] = {
            "step": self.step,
            "loss": loss,
            "grad_norm": self.optim.last_grad_norm,
            "lr": self.optim.current_lr(),
            "examples_per_s": steps * self.config.batch_size / max(seconds, 1e-9),
            "nonfinite": self.nonfinite,
        }
        if self.data.is_image:
            record["bits_per_dim"] = (
                loss / (math.prod(self.data.shape) * math.log(2)) + self.data.n_bits
            )
        return record

    def _step(self) -> float:
        # Data are checked once when loaded; per-step validation would turn a NaN latent
        # into an exception instead of a skipped step.
        autocast = torch.autocast(self.device.type, torch.bfloat16, enabled=self.config.amp)
        with pyro.validation_enabled(False), warnings.catch_warnings(), autocast:
            warnings.filterwarnings("ignore", message="Encountered NaN")  # counted below
            # --jit is opted into; torch's deprecation of jit.trace is in the docs
            warnings.filterwarnings("ignore", message=".*torch.jit.trace. is deprecated")
            batch = self._batch()
            loss = self.svi.step(batch) * math.prod(batch.shape[1:])
        if self.world_size > 1:
            total = torch.tensor([loss], dtype=torch.float64)
            torch.distributed.all_reduce(total)
            loss = total.item() / self.world_size
        self.step += 1
        if math.isfinite(loss) and not self.optim.last_step_skipped:
            self.consecutive_nonfinite = 0
            return loss
        self.nonfinite += 1
        self.consecutive_nonfinite += 1
        if self.consecutive_nonfinite >= self.config.max_nonfinite:
            raise TrainingDiverged(
                f"{self.consecutive_nonfinite} non-finite losses in a row at step {self.step} "
                f"({self.nonfinite} in all); stopped with the last checkpoint in {self.out} "
                "intact. Lower --lr, raise --warmup-steps or lower --clip-norm."
            )
        return loss

    def run(self) -> dict[str, Any]:
        """Train to ``config.steps``, checkpoint, evaluate and write ``metrics.json``;
        the run folder's lock is released at the end, whatever happens.

        Raises:
            TrainingDiverged: too many non-finite steps in a row.
            CheckpointWriteError: a checkpoint could not be written (disk full, read-only
                folder); the previous checkpoint is kept.
        """
        try:
            return self._train_and_evaluate()
        finally:
            self.close()

    def _train_and_evaluate(self) -> dict[str, Any]:
        config = self.config
        log_path = self.out / "metrics.jsonl"
        window_start, window_steps, last_loss = time.perf_counter(), 0, math.nan
        invoked = time.perf_counter()
        started = invoked - self.elapsed
        bar = tqdm(total=config.steps, initial=self.step, disable=None if self.is_main else True)
        with open(log_path if self.is_main else os.devnull, "a") as log:
            while self.step < config.steps:
                if self._time_is_up(invoked):
                    self.stopped_by_time_limit = True
                    break
                last_loss = self._step()
                window_steps += 1
                self.elapsed = time.perf_counter() - started
                if self.step % config.log_every == 0 or self.step == config.steps:
                    record = self._record(
                        last_loss, window_steps, time.perf_counter() - window_start
                    )
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    bar.set_postfix(
                        {
                            k: f"{record[k]:.3g}"
                            for k in ("loss", "bits_per_dim", "examples_per_s")
                            if k in record
                        }
                    )
                    window_start, window_steps = time.perf_counter(), 0
                bar.update(1)
                if self.step % config.checkpoint_every == 0:
                    self.save()
        bar.close()
        self.save()
        if self.world_size > 1:
            torch.distributed.destroy_process_group()
            if not self.is_main:
                return {}
        metrics = self.final_metrics()
        (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return metrics

    def _time_is_up(self, invoked: float) -> bool:
        """Whether ``config.time_limit`` seconds have passed since ``invoked``. Processes of a
        distributed run decide together, at logging steps only (one all-reduce), so that all
        stop at the same step."""
        if self.config.time_limit is None:
            return False
        up = time.perf_counter() - invoked >= self.config.time_limit
        if self.world_size == 1:
            return up
        if self.step % self.config.log_every:
            return False
        device = self.device if torch.distributed.get_backend() == "nccl" else "cpu"
        flag = torch.tensor(float(up), device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def final_metrics(self) -> dict[str, Any]:
        self.flow.eval()
        metrics: dict[str, Any] = evaluate(self.flow, self.data, self.config)
        metrics.update(
            {
                "steps": self.step,
                "wall_time_s": self.elapsed,
                "examples_per_s": self.step * self.config.batch_size / max(self.elapsed, 1e-9),
                "device": str(self.device)
                + (
                    f" ({torch.cuda.get_device_name(self.device)})"
                    if self.device.type == "cuda"
                    else ""
                ),
                "parameters": sum(p.numel() for p in self.flow.parameters()),
                "nonfinite_steps": self.nonfinite,
                "stopped_by_time_limit": self.stopped_by_time_limit,
                "data": self.config.data,
            }
        )
        self.flow.train()
        return metrics


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Flow:
    """The trained :class:`~pyro_glow.Flow` of a checkpoint written by ``pyro-glow train``.

    Its ``log_prob`` is in the data's own units (the standardisation of vector data and the
    shift of pixels dequantized to ``[0, 1)`` are layers of the flow) and ``sample`` returns
    data-space values. It is returned in ``eval`` mode on ``device``.
    """
    state = read_checkpoint(path)
    config = TrainConfig(**state["config"])
    flow = build_flow(config, tuple(state["event_shape"]))
    load_state_strict(flow, state["model"], f"checkpoint {path}")
    return flow.to(device).eval()
