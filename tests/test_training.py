"""Training end to end: the CLI on moons and on an image folder, checkpoints, resume after
SIGKILL, the non-finite guard and the optimizer."""

import copy
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch
from PIL import Image

from pyro_glow import glow, load_checkpoint
from pyro_glow.checkpoint import read_checkpoint
from pyro_glow.cli import main
from pyro_glow.nets import CouplingMLP
from pyro_glow.optim import FlowOptimizer
from pyro_glow.training import TrainConfig, Trainer, TrainingDiverged, load_data

TINY_MOONS = ["--train-size", "512", "--test-size", "256", "--flow-steps", "2", "--hidden", "16"]


def tiny_moons(tmp_path, **overrides):
    """A two-moons run small enough for a unit test, writing to ``tmp_path``."""
    settings = dict(
        data="moons", out=str(tmp_path), flow_steps=2, hidden=8, train_size=256, test_size=64
    )
    return TrainConfig(**{**settings, **overrides})


def test_cli_trains_moons_then_samples_and_evaluates(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "moons", "--steps", "40", "--out", str(out), "--log-every", "10"]
    assert main(args + ["--checkpoint-every", "20", *TINY_MOONS]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 40 and metrics["parameters"] > 0
    assert math.isfinite(metrics["test_nll"]) and 0.2 < metrics["true_nll"] < 0.4
    assert metrics["gap_nats"] == pytest.approx(metrics["test_nll"] - metrics["true_nll"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30, 40]
    assert all(math.isfinite(r["loss"]) and r["examples_per_s"] > 0 for r in records)
    assert read_checkpoint(out / "checkpoint.pt")["step"] == 40

    assert (
        main(["sample", str(out / "checkpoint.pt"), "--n", "50", "--out", str(tmp_path / "s.pt")])
        == 0
    )
    assert torch.load(tmp_path / "s.pt").shape == (50, 2)
    capsys.readouterr()
    assert main(["eval", str(out / "checkpoint.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["test_nll"] == pytest.approx(metrics["test_nll"])


def test_loaded_flow_is_in_data_units(tmp_path):
    config = tiny_moons(tmp_path, steps=200, hidden=16, train_size=2000, test_size=500, lr=5e-3)
    trainer = Trainer(config)
    trainer.run()
    flow = load_checkpoint(tmp_path / "checkpoint.pt")
    test = trainer.data.test
    with torch.no_grad():
        assert torch.allclose(flow.log_prob(test), trainer.flow.log_prob(test), atol=1e-5)
    samples = flow.sample(4000)
    # Data units: the moons span x1 in [-1, 2] and x2 in [-0.5, 1]; means about (0.5, 0.25).
    assert torch.allclose(samples.mean(0), test.mean(0), atol=0.15)
    assert torch.allclose(samples.std(0), test.std(0), rtol=0.2)


def _in_the_unpacked_layout(model_state: dict, flow: torch.nn.Module) -> dict:
    """A model ``state_dict`` as checkpoints stored it before ActNorm, the LU map and the
    coupling MLPs kept one tensor each (``log_scale``/``bias``; ``lower``/``upper``/``log_diag``
    and a mask; ``nn.Sequential``'s ``0.weight``, ``0.bias``, ..., ``4.bias``)."""
    mlps = {
        name: module for name, module in flow.named_modules() if isinstance(module, CouplingMLP)
    }
    old = {}
    for key, value in model_state.items():
        prefix, _, name = key.rpartition(".")
        if name == "weights" and prefix in mlps:
            views = value.split(mlps[prefix].sizes)
            for index, view, shape in zip(
                (0, 0, 2, 2, 4, 4), views, mlps[prefix].shapes, strict=True
            ):
                kind = "weight" if len(shape) == 2 else "bias"
                old[f"{prefix}.{index}.{kind}"] = view.reshape(shape).clone()
        elif name == "affine":
            old[f"{prefix}.log_scale"], old[f"{prefix}.bias"] = value.clone().unbind(0)
        elif name == "lu":
            old[f"{prefix}.lower"], old[f"{prefix}.upper"] = value.tril(-1), value.triu(1)
            old[f"{prefix}.log_diag"] = value.diagonal().clone()
            old[f"{prefix}.lower_mask"] = torch.ones_like(value).tril(-1)
        else:
            old[key] = value
    return old


def test_a_checkpoint_of_the_unpacked_layout_loads_but_does_not_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "moons", "--steps", "20", "--out", str(out), *TINY_MOONS]) == 0
    path = out / "checkpoint.pt"
    test = torch.randn(64, 2)
    with torch.no_grad():
        expected = load_checkpoint(path).log_prob(test)
    state = read_checkpoint(path)
    state["model"] = _in_the_unpacked_layout(state["model"], load_checkpoint(path))
    names = state["optimizer"]["param_names"]
    state["optimizer"]["param_names"] = [n.replace(".lu", ".lower") for n in names]
    assert "transform.1.lower_mask" in state["model"]
    assert "transform.0.net.4.bias" in state["model"]
    torch.save(state, path)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(path).log_prob(test), expected)
    capsys.readouterr()
    assert main(["eval", str(path)]) == 0
    with pytest.raises(SystemExit):
        main(["train", "moons", "--steps", "40", "--out", str(out), "--resume", *TINY_MOONS])
    assert "predates the packed parameters" in capsys.readouterr().err


def _image_folder(root: Path, size: int = 8) -> Path:
    """A tiny ImageFolder with train/ and test/ splits: smooth random colour gradients."""
    generator = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size)
    for split, count in (("train", 24), ("test", 8)):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(count // 2):
                colour = generator.uniform(0, 1, 3)
                pixels = ramp[:, None, None] * ramp[None, :, None] * colour * 255
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index}.png")
    return root


def test_cli_trains_on_an_image_folder(tmp_path, capsys):
    folder = _image_folder(tmp_path / "images")
    out = tmp_path / "run"
    args = [
        "train",
        f"folder:{folder}",
        "--steps",
        "6",
        "--batch-size",
        "4",
        "--levels",
        "2",
        "--flow-steps",
        "1",
        "--hidden",
        "8",
        "--log-every",
        "3",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["test_bits_per_dim"] < 16
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6] and all("bits_per_dim" in r for r in records)
    flow = load_checkpoint(out / "checkpoint.pt")
    assert flow.sample(3, temperature=0.7).shape == (3, 3, 8, 8)
    capsys.readouterr()
    assert main(["eval", str(out / "checkpoint.pt")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_bits_per_dim"] == pytest.approx(metrics["test_bits_per_dim"], rel=1e-5)


def _train_command(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pyro_glow",
        "train",
        "moons",
        "--steps",
        "300",
        "--out",
        str(out),
        "--checkpoint-every",
        "20",
        "--log-every",
        "20",
        *TINY_MOONS,
        *extra,
    ]


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_train_command(tmp_path / "whole"), env=env, check=True, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _train_command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (killed / "checkpoint.pt").exists() and read_checkpoint(killed / "checkpoint.pt")[
            "step"
        ] >= 40:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    interrupted_at = read_checkpoint(killed / "checkpoint.pt")["step"]
    assert 40 <= interrupted_at < 300, "the kill must land mid-training"

    subprocess.run(_train_command(killed, "--resume"), env=env, check=True, capture_output=True)
    whole = read_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    resumed = read_checkpoint(killed / "checkpoint.pt")
    assert resumed["step"] == whole["step"] == 300
    for key, value in whole["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    steps = [
        json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(20, 301, 20))


class _PoisonNet:
    """A forward hook that makes a coupling network's output NaN while ``active``."""

    def __init__(self):
        self.active = False

    def __call__(self, module, args, output):
        return output * math.nan if self.active else output


def test_non_finite_steps_are_skipped_then_stop_the_run(tmp_path):
    config = tiny_moons(tmp_path, steps=30, max_nonfinite=5, checkpoint_every=10)
    trainer = Trainer(config)
    poison = _PoisonNet()
    trainer.flow.transform.parts[0].net.register_forward_hook(poison)
    for _ in range(3):
        trainer._step()
    before = {k: v.clone() for k, v in trainer.flow.state_dict().items()}
    poison.active = True
    for _ in range(3):
        trainer._step()
    after = trainer.flow.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a NaN step must not update"
    assert trainer.nonfinite == 3 and trainer.optim.skipped_steps == 3
    poison.active = False
    trainer._step()
    assert trainer.consecutive_nonfinite == 0
    good = {k: v.clone() for k, v in trainer.flow.state_dict().items()}
    poison.active = True
    with pytest.raises(TrainingDiverged, match="5 non-finite losses in a row at step 12"):
        trainer.run()
    saved = read_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["step"] == 10  # the periodic checkpoint inside the streak keeps the good state
    assert all(torch.equal(saved["model"][k], good[k]) for k in good)


def test_jit_trains_exactly_as_the_plain_elbo(tmp_path):
    """``--jit`` (Pyro's JitTrace_ELBO) compiles the model after ActNorm's initialisation:
    the same losses and parameters, step for step, as Trace_ELBO."""
    runs = {}
    for jit in (False, True):
        trainer = Trainer(tiny_moons(tmp_path / str(jit), steps=15, log_every=5, jit=jit))
        trainer.run()
        log = (tmp_path / str(jit) / "metrics.jsonl").read_text().splitlines()
        runs[jit] = ([json.loads(line)["loss"] for line in log], trainer.flow.state_dict())
    assert runs[True][0] == runs[False][0] and len(runs[True][0]) == 3
    assert all(torch.equal(runs[True][1][k], runs[False][1][k]) for k in runs[False][1])
    with pytest.raises(ValueError, match="jit and amp cannot be combined"):
        tiny_moons(tmp_path, jit=True, amp=True).resolved()


def test_compile_trains_as_the_eager_density(tmp_path):
    """``--compile`` runs the flow's log-density as one compiled graph inside SVI: the same
    losses as eager up to float reordering, and the compiled graph is what SVI called."""
    runs = {}
    for compiled in (False, True):
        trainer = Trainer(
            tiny_moons(tmp_path / str(compiled), steps=10, log_every=5, compile=compiled)
        )
        trainer.run()
        log = (tmp_path / str(compiled) / "metrics.jsonl").read_text().splitlines()
        runs[compiled] = [json.loads(line)["loss"] for line in log]
        assert (trainer.flow._compiled_density is not None) == compiled
    assert len(runs[True]) == 2
    assert runs[True] == pytest.approx(runs[False], rel=1e-4)
    with pytest.raises(ValueError, match="compile cannot be combined with jit or amp"):
        tiny_moons(tmp_path, compile=True, jit=True).resolved()
    flow = glow((2,), steps=1, hidden=4)
    with pytest.raises(ValueError, match="ActNorm layers are not initialised"):
        flow.compile_density()
    flow.log_prob(torch.randn(8, 2))
    flow.compile_density()
    twin = copy.deepcopy(flow)  # its own parameters: eager until compiled again
    assert twin._compiled_density is None and flow._compiled_density is not None
    calls = []
    flow._compiled_density = lambda x: calls.append(x) or flow._density(x)  # a spy
    x = torch.randn(8, 2)
    with torch.no_grad():  # evaluation and plots stay eager: no graph per new shape
        flow.log_prob(x), flow().log_prob(x)
    assert not calls
    flow.log_prob(x), flow().log_prob(x)
    assert len(calls) == 2


def test_flow_optimizer_warmup_clipping_and_state():
    pyro.clear_param_store()
    weight = pyro.param("weight", torch.ones(3))
    optim = FlowOptimizer("adam", lr=0.1, warmup_steps=4, clip_norm=1.0)
    rates = []
    for _ in range(5):
        weight.grad = torch.full((3,), 10.0)
        rates.append(optim.current_lr())
        optim([weight])
    assert rates == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])
    assert optim.last_grad_norm == pytest.approx(math.sqrt(300.0))
    # Adam's first moment saw the clipped gradients (norm 1), and the gradient is cleared.
    first_moment = optim.optimizer.state[weight]["exp_avg"]
    assert first_moment.norm().item() == pytest.approx(1 - 0.9**5)
    assert weight.grad is None
    assert optim.optimizer.defaults["fused"]
    state = optim.get_state()
    twin = FlowOptimizer("adam", lr=0.1, warmup_steps=4, clip_norm=1.0)
    twin.set_state(state)
    weight.grad = torch.ones(3)
    twin([weight])
    assert twin.optimizer.state_dict()["state"][0]["step"].item() == 6
    with pytest.raises(ValueError, match="unknown optimizer"):
        FlowOptimizer("sgd")
    stale = {**state, "param_names": ["flow$$$transform.0.1.lower"]}
    with pytest.raises(ValueError, match=r"differing names: .*lower.*predates .*packed"):
        twin.set_state(stale)
    idle = FlowOptimizer("adam")
    idle(set())  # SVI on a model without parameters: no step, no error
    assert idle.optimizer is None
    # Adamax has no fused kernel: multi-tensor; an implementation the caller names is kept.
    for optimizer_name, args, expected in (
        ("adamax", {}, {"foreach": True}),
        ("adam", {"foreach": False}, {"foreach": False, "fused": None}),
    ):
        chosen = FlowOptimizer(optimizer_name, lr=0.1, **args)
        weight.grad = torch.ones(3)
        chosen([weight])
        assert {k: chosen.optimizer.defaults.get(k) for k in expected} == expected


def train_moons_in_two_processes(out, *args):
    """``pyro-glow train moons`` under ``torchrun`` with two CPU processes (gloo)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", "-m", "pyro_glow", "train", "moons", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*command, *args], env=env, capture_output=True, timeout=300)


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    common = [
        "--steps",
        "3",
        "--log-every",
        "1",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        *TINY_MOONS,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pyro_glow",
            "train",
            "moons",
            "--out",
            str(tmp_path / "one"),
            *common,
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    launched = train_moons_in_two_processes(tmp_path / "two", *common)
    assert launched.returncode == 0, launched.stderr.decode()[-2000:]

    def first_record(run):
        return json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[0])

    # Step 1 starts from identical states: the loss (averaged over ranks) and the norm of the
    # gradient (all-reduced by DDP) must agree to float precision. A missing average or a
    # wrong shard would change them at the first digits.
    one, two = first_record("one"), first_record("two")
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-6)
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-5)
    # Later steps: Adam turns gradients that vanish at initialisation (float noise) into
    # steps of +-lr, so parameters agree to a few learning-rate steps (lr = 1e-3), not to 1e-7.
    a = read_checkpoint(tmp_path / "one" / "checkpoint.pt")["model"]
    b = read_checkpoint(tmp_path / "two" / "checkpoint.pt")["model"]
    for key, value in a.items():
        assert torch.allclose(b[key], value, atol=3e-3), key
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["steps"] == 3


def test_bf16_autocast_keeps_log_dets_in_float32(tmp_path):
    config = tiny_moons(tmp_path, steps=3, amp=True)
    trainer = Trainer(config)
    for _ in range(3):
        assert math.isfinite(trainer._step())
    with torch.autocast("cpu", torch.bfloat16):
        z, log_det = trainer.flow.transform.parts[0].inverse_and_log_det(torch.randn(8, 2))
    assert z.dtype == torch.float32 and log_det.dtype == torch.float32


def test_a_folder_without_splits_holds_out_a_tenth(tmp_path):
    folder = _image_folder(tmp_path / "images")
    flat = tmp_path / "flat"
    (flat / "a").mkdir(parents=True)
    for index, image in enumerate(sorted((folder / "train" / "a").glob("*.png"))):
        (flat / "a" / f"{index}.png").write_bytes(image.read_bytes())
    for index, image in enumerate(sorted((folder / "test" / "b").glob("*.png"))):
        (flat / "a" / f"t{index}.png").write_bytes(image.read_bytes())
    data = load_data(TrainConfig(data=f"folder:{flat}", out=str(tmp_path)).resolved())
    assert (len(data.train), len(data.test)) == (15, 1)
    assert data.shape == (3, 8, 8) and data.train.dtype == torch.uint8


def test_resume_drops_log_lines_past_the_checkpoint_and_a_cut_line(tmp_path):
    config = tiny_moons(tmp_path, steps=20, log_every=5, checkpoint_every=10)
    Trainer(config).run()
    log = tmp_path / "metrics.jsonl"
    state = read_checkpoint(tmp_path / "checkpoint.pt")
    state["step"] = 10
    torch.save(state, tmp_path / "checkpoint.pt")
    log.write_text(log.read_text() + '{"step": 25, "lo')
    Trainer(dataclasses.replace(config, steps=10), resume=True)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [5, 10]


def test_zero_steps_evaluates_the_untrained_flow(tmp_path, capsys):
    args = ["train", "moons", "--steps", "0", "--out", str(tmp_path), *TINY_MOONS]
    assert main(args) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 0


def test_time_limit_stops_checkpoints_and_resumes(tmp_path):
    args = ["train", "moons", "--steps", "1000000", "--out", str(tmp_path), *TINY_MOONS]
    assert main(args + ["--time-limit", "1.5", "--checkpoint-every", "1000000"]) == 0
    first = json.loads((tmp_path / "metrics.json").read_text())
    assert first["stopped_by_time_limit"] and 0 < first["steps"] < 1_000_000
    assert math.isfinite(first["test_nll"])
    assert read_checkpoint(tmp_path / "checkpoint.pt")["step"] == first["steps"]
    assert main(args + ["--time-limit", "1.5", "--resume"]) == 0
    second = json.loads((tmp_path / "metrics.json").read_text())
    assert second["stopped_by_time_limit"] and second["steps"] > first["steps"]
    with pytest.raises(ValueError, match="time_limit must be positive"):
        TrainConfig(time_limit=0.0).resolved()


def test_two_process_ddp_stops_both_ranks_at_the_same_step_on_time_limit(tmp_path):
    run = train_moons_in_two_processes(
        tmp_path, "--steps", "1000000", "--time-limit", "2", "--log-every", "5",
        "--batch-size", "64", "--device", "cpu", *TINY_MOONS,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # The ranks agree on when to stop, at a logging step (a rank that stopped alone would
    # leave the other waiting in its all-reduce, and the run would time out).
    assert metrics["stopped_by_time_limit"] and metrics["steps"] % 5 == 0


def test_clip_norm_defaults_by_kind_reaches_the_optimizer_and_is_validated(tmp_path):
    assert TrainConfig(data="moons").resolved().clip_norm == 2.0
    assert TrainConfig(data="folder:images").resolved().clip_norm == 50.0
    assert Trainer(tiny_moons(tmp_path / "default")).optim.clip_norm == 2.0
    unclipped = Trainer(tiny_moons(tmp_path / "inf", clip_norm=math.inf))
    assert unclipped.optim.clip_norm == math.inf
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="clip_norm must be positive"):
            TrainConfig(clip_norm=bad).resolved()
