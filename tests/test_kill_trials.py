"""No lost work: SIGKILL at random moments, failing disk writes, two runs in one folder.

The kill trials run the ``pyro-glow train`` command line (``pyro_glow.cli.main``) in real
processes and kill them with SIGKILL. To keep each trial cheap, a harness process (this file
run as a script, in a fresh interpreter) imports pyro-glow once and *forks* one child per
trial: the child runs ``main(["train", ..., "--resume"])`` exactly as the console script
would, minus the 2-15 s of importing torch and Pyro. The trials form one chain in one run
folder: each child resumes what the previous killed child left, so every trial checks both
halves of the promise, "a loadable checkpoint remains" and "``--resume`` continues".

Knowing that a kill landed during a checkpoint write: ``save_atomic`` writes to
``.checkpoint.pt.PID.tmp`` and renames it over ``checkpoint.pt``; the temporary file exists
only between the start of the write and the rename. A trial counts as "killed during a
write" when that file is found after the kill. To make such kills likely, the harness makes
each write slow by replacing ``torch.save`` in the children with one that writes half of
the bytes, sleeps, then writes the rest (a test hook in the harness, not in the package).

Run the harness by hand for more trials and a summary table::

    .venv/bin/python tests/test_kill_trials.py --trials 200 --out /tmp/kill-trials
"""

import argparse
import errno
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch

import pyro_glow.checkpoint
from pyro_glow import glow, load_checkpoint
from pyro_glow.checkpoint import (
    LOCK_NAME,
    CheckpointWriteError,
    RunFolderLocked,
    RunLock,
    read_checkpoint,
    remove_stale_temporaries,
    write_text_atomic,
)
from pyro_glow.cli import main as cli_main
from pyro_glow.training import TrainConfig, Trainer

STEPS = 600
TINY = dict(flow_steps=2, hidden=8, train_size=256, test_size=64, batch_size=32)
LOG_EVERY = 10
CHECKPOINT_EVERY = 2


def train_argv(out: Path, steps: int = STEPS) -> list[str]:
    """The command line of every trial: a tiny two-moons run, checkpointed every 2 steps."""
    return [
        "train",
        "moons",
        "--steps",
        str(steps),
        "--out",
        str(out),
        "--checkpoint-every",
        str(CHECKPOINT_EVERY),
        "--log-every",
        str(LOG_EVERY),
        "--device",
        "cpu",
        "--flow-steps",
        str(TINY["flow_steps"]),
        "--hidden",
        str(TINY["hidden"]),
        "--train-size",
        str(TINY["train_size"]),
        "--test-size",
        str(TINY["test_size"]),
        "--batch-size",
        str(TINY["batch_size"]),
        "--resume",
    ]


def slow_writes(seconds: dict[str, float]) -> None:
    """Make ``torch.save`` write half of its bytes, sleep ``seconds["delay"]``, then write
    the rest (in this process and the children it forks)."""
    real_save = torch.save

    def save(state, handle):
        if not seconds["delay"]:
            return real_save(state, handle)
        buffer = io.BytesIO()
        real_save(state, buffer)
        data = buffer.getvalue()
        handle.write(data[: len(data) // 2])
        handle.flush()
        time.sleep(seconds["delay"])
        handle.write(data[len(data) // 2 :])

    torch.save = save


def fork_cli(argv: list[str], log: Path) -> int:
    """Fork a child that runs ``pyro-glow ARGV`` with its output in ``log``; its pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(output, 1)
        os.dup2(output, 2)
        code = cli_main(argv)
    except SystemExit as error:
        code = error.code if isinstance(error.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def wait(pid: int) -> int:
    """Reap child ``pid``: its exit code, or ``-signal`` if a signal ended it."""
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def checkpoint_step(folder: Path) -> int | None:
    """The step of the folder's checkpoint, after loading it fully (None if there is none)."""
    path = folder / "checkpoint.pt"
    if not path.exists():
        return None
    state = read_checkpoint(path)
    load_checkpoint(path)  # the model must load, not only the file
    return state["step"]


def wait_for_lock(folder: Path, pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (folder / LOCK_NAME).read_text().split()[0] == str(pid):
                return True
        except (FileNotFoundError, IndexError):
            pass
        time.sleep(0.002)
    return False


def warm_up() -> None:
    """Do once in the harness what each child would otherwise repeat: the lazy imports
    (scikit-learn's moons) and the first calls of torch's kernels."""
    from sklearn.datasets import make_moons

    make_moons(8)
    flow = glow((2,), steps=1, hidden=4)
    flow.log_prob(torch.randn(8, 2)).sum().backward()


def run_trials(out: Path, trials: int, seed: int, write_delay: float, steps: int) -> dict:
    """The kill trials; returns the per-trial records and the final comparison."""
    torch.set_num_threads(1)
    warm_up()
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    run = out / "killed"
    logs = out / "logs"
    logs.mkdir(exist_ok=True)

    # The reference: the same run, never interrupted, with ordinary writes.
    baseline = out / "baseline"
    config = dict(data="moons", steps=steps, checkpoint_every=CHECKPOINT_EVERY, log_every=LOG_EVERY)
    baseline_pid = os.fork()  # runs beside the trials
    if baseline_pid == 0:
        code = 1
        try:
            Trainer(TrainConfig(**config, **TINY, device="cpu", out=str(baseline))).run()
            code = 0
        finally:
            os._exit(code)

    seconds = {"delay": write_delay}
    slow_writes(seconds)
    records = []
    for trial in range(trials):
        before = checkpoint_step(run)
        victim = fork_cli(train_argv(run, steps), logs / f"trial{trial}.log")
        started = time.monotonic()
        delay = rng.uniform(0.03, 0.4)
        record = {"trial": trial, "delay_s": round(delay, 4), "step_before": before}
        if trial % 4 == 1 and wait_for_lock(run, victim):
            # A second run on the same folder while the victim holds it: it must refuse.
            intruder_log = logs / f"trial{trial}-second.log"
            intruder = fork_cli(train_argv(run, steps), intruder_log)
            record["second_run_exit"] = wait(intruder)
            record["second_run_refused"] = f"in use by process {victim}" in (
                intruder_log.read_text()
            )
        time.sleep(max(0.0, delay - (time.monotonic() - started)))
        os.kill(victim, signal.SIGKILL)
        record["exit"] = wait(victim)
        temporaries = sorted(p.name for p in run.glob(".checkpoint.pt.*.tmp"))
        record["killed_during_write"] = bool(temporaries)
        record["lock_left_behind"] = (run / LOCK_NAME).exists()
        try:
            record["step_after"] = checkpoint_step(run)
            record["loadable"] = True
        except ValueError as error:
            record["step_after"], record["loadable"] = None, False
            record["error"] = str(error)
        records.append(record)

    baseline_code = wait(baseline_pid)
    seconds["delay"] = 0.0
    final_log = logs / "final.log"
    final_code = wait(fork_cli(train_argv(run, steps), final_log))
    resumed = read_checkpoint(run / "checkpoint.pt")
    whole = read_checkpoint(baseline / "checkpoint.pt")
    log_steps = [
        json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    return {
        "steps": steps,
        "trials": records,
        "baseline_exit": baseline_code,
        "final_exit": final_code,
        "final_output": final_log.read_text()[-2000:],
        "final_step": resumed["step"],
        "same_parameters_as_uninterrupted": all(
            torch.equal(resumed["model"][key], value) for key, value in whole["model"].items()
        ),
        "log_steps_complete": log_steps == list(range(LOG_EVERY, steps + 1, LOG_EVERY)),
        "leftovers": sorted(
            p.name for p in run.iterdir() if p.name.endswith(".tmp") or p.name == LOCK_NAME
        ),
    }


def summary(result: dict) -> dict[str, int]:
    trials = result["trials"]
    return {
        "trials": len(trials),
        "killed_mid_training": sum(
            r["exit"] == -signal.SIGKILL and (r["step_after"] or 0) < result["steps"]
            for r in trials
        ),
        "killed_during_checkpoint_write": sum(r["killed_during_write"] for r in trials),
        "killed_before_first_checkpoint": sum(r["step_after"] is None for r in trials),
        "loadable_checkpoint_after_kill": sum(
            r["loadable"] and r["step_after"] is not None for r in trials
        ),
        "stale_locks_taken_over": sum(r["lock_left_behind"] for r in trials),
        "second_runs_refused": sum(
            r.get("second_run_exit") == 2 and r["second_run_refused"] for r in trials
        ),
        "second_runs_tried": sum("second_run_exit" in r for r in trials),
    }


def test_sigkill_at_random_moments_never_loses_the_checkpoint(tmp_path):
    harness = [sys.executable, __file__, "--out", str(tmp_path), "--trials", "24", "--seed", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(harness, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    counts = summary(result)
    print(counts)
    trials = result["trials"]

    assert result["baseline_exit"] == 0
    assert counts["trials"] == 24 and counts["killed_mid_training"] == 24, trials
    previous = None
    for record in trials:
        # Once a checkpoint exists, every kill leaves one that loads, never an older one.
        assert record["loadable"], record
        if previous is not None:
            assert record["step_after"] is not None and record["step_after"] >= previous, record
        previous = record["step_after"] if record["step_after"] is not None else previous
    assert counts["killed_during_checkpoint_write"] >= 3, trials
    assert counts["second_runs_tried"] >= 5
    assert counts["second_runs_refused"] == counts["second_runs_tried"], trials
    # The chain of resumed runs ends where an uninterrupted run ends, to the last bit.
    assert result["final_exit"] == 0, result["final_output"]
    assert result["final_step"] == STEPS
    assert result["same_parameters_as_uninterrupted"]
    assert result["log_steps_complete"]
    assert result["leftovers"] == []  # temporaries of killed writes and stale locks removed


class _DiskFull:
    """``torch.save`` that writes half of the file, then fails like a full disk, from call
    ``fail_from`` on (the earlier calls write normally)."""

    def __init__(self, real_save, fail_from: int) -> None:
        self.real_save = real_save
        self.fail_from = fail_from
        self.calls = 0

    def __call__(self, state, handle):
        self.calls += 1
        if self.calls < self.fail_from:
            return self.real_save(state, handle)
        buffer = io.BytesIO()
        self.real_save(state, buffer)
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def tiny_config(out: Path, **overrides) -> TrainConfig:
    settings = dict(data="moons", steps=6, checkpoint_every=2, log_every=2, device="cpu")
    return TrainConfig(**{**settings, **TINY, **overrides, "out": str(out)})


def test_a_full_disk_keeps_the_previous_checkpoint_and_stops_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(pyro_glow.checkpoint.torch, "save", _DiskFull(torch.save, fail_from=2))
    trainer = Trainer(tiny_config(tmp_path))
    with pytest.raises(
        CheckpointWriteError,
        match=r"step 4: could not write checkpoint .*No space left on device.*still holds the "
        r"previous checkpoint.*--resume",
    ):
        trainer.run()
    monkeypatch.undo()
    assert read_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]
    resumed = Trainer(tiny_config(tmp_path), resume=True)  # the lock was released
    assert resumed.step == 2
    assert resumed.run()["steps"] == 6


def test_a_failing_rename_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    Trainer(tiny_config(tmp_path, steps=2)).run()
    before = (tmp_path / "checkpoint.pt").read_bytes()

    real_replace = os.replace

    def read_only(source, target):
        if Path(target).name != "checkpoint.pt":
            return real_replace(source, target)
        raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(target))

    monkeypatch.setattr(pyro_glow.checkpoint.os, "replace", read_only)
    trainer = Trainer(tiny_config(tmp_path, steps=4), resume=True)
    with pytest.raises(CheckpointWriteError, match="Read-only file system"):
        trainer.run()
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / LOCK_NAME).exists()


def test_the_cli_reports_a_failed_write_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pyro_glow.checkpoint.torch, "save", _DiskFull(torch.save, fail_from=1))
    argv = train_argv(tmp_path)
    argv[argv.index("--steps") + 1] = "4"
    assert cli_main(argv) == 2
    error = capsys.readouterr().err
    assert "pyro-glow: step 2: could not write checkpoint" in error
    assert "was not written" in error and not (tmp_path / "checkpoint.pt").exists()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def test_a_second_run_in_a_locked_folder_is_refused(tmp_path, capsys):
    with RunLock.acquire(tmp_path):
        with pytest.raises(RunFolderLocked, match=f"in use by process {os.getpid()}"):
            RunLock.acquire(tmp_path)
        with pytest.raises(RunFolderLocked, match="choose another --out"):
            Trainer(tiny_config(tmp_path))
        assert cli_main(train_argv(tmp_path)) == 2
        assert "is in use by process" in capsys.readouterr().err
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]  # nothing written
    assert not (tmp_path / LOCK_NAME).exists()
    Trainer(tiny_config(tmp_path)).close()


def test_a_lock_of_a_live_process_holds_and_of_a_dead_one_is_taken_over(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(f"{sleeper.pid} {socket.gethostname()}\n")
        with pytest.raises(RunFolderLocked, match=f"in use by process {sleeper.pid} "):
            RunLock.acquire(tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()
    lock = RunLock.acquire(tmp_path)  # the same file, its process now dead: stale
    assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    lock.release()
    assert sorted(tmp_path.iterdir()) == []


def test_a_lock_from_another_host_or_without_a_pid(tmp_path):
    lock_file = tmp_path / LOCK_NAME
    lock_file.write_text(f"{dead_pid()} another-host\n")
    with pytest.raises(RunFolderLocked, match="on host another-host"):
        RunLock.acquire(tmp_path)  # its liveness cannot be checked from here
    lock_file.write_text("")
    with pytest.raises(RunFolderLocked, match="being locked by another process"):
        RunLock.acquire(tmp_path)  # just created: its owner may be writing its pid
    old = time.time() - 60
    os.utime(lock_file, (old, old))
    RunLock.acquire(tmp_path).release()  # a minute old and still empty: stale


def test_release_leaves_another_process_lock_alone(tmp_path):
    lock = RunLock.acquire(tmp_path)
    (tmp_path / LOCK_NAME).write_text(f"{os.getpid() + 1} {socket.gethostname()}\n")
    lock.release()
    assert (tmp_path / LOCK_NAME).exists()


def test_the_log_rewrite_of_a_resume_is_atomic(tmp_path, monkeypatch):
    """A resumed run rewrites metrics.jsonl without the records past its checkpoint; dying in
    the middle (here: before the rename) leaves the old log, never an empty one."""
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 2}\n{"step": 4}\n')

    def killed(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(pyro_glow.checkpoint.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic('{"step": 2}\n', log)
    assert log.read_text() == '{"step": 2}\n{"step": 4}\n'
    monkeypatch.undo()
    write_text_atomic('{"step": 2}\n', log)
    assert log.read_text() == '{"step": 2}\n' and sorted(tmp_path.iterdir()) == [log]


def test_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = tmp_path / f".checkpoint.pt.{dead_pid()}.tmp"
    alive = tmp_path / f".checkpoint.pt.{os.getpid()}.tmp"
    other = tmp_path / "notes.tmp"
    for path in (dead, alive, other):
        path.write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert alive.exists() and other.exists()


def main(argv: list[str] | None = None) -> None:
    """Run the kill trials and write ``OUT/result.json``; print the counts."""
    parser = argparse.ArgumentParser(description="SIGKILL trials of pyro-glow train")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=STEPS, help="training steps of the run")
    parser.add_argument("--write-delay", type=float, default=0.015, help="seconds per write")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = run_trials(args.out, args.trials, args.seed, args.write_delay, args.steps)
    result["summary"] = summary(result)
    result["wall_time_s"] = time.perf_counter() - started
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    for key, value in result["summary"].items():
        print(f"{key:34s} {value}")
    for key in ("final_step", "same_parameters_as_uninterrupted", "log_steps_complete"):
        print(f"{key:34s} {result[key]}")
    print(f"{'wall_time_s':34s} {result['wall_time_s']:.1f}")


if __name__ == "__main__":
    main()
