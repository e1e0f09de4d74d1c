"""Checkpoint files and run folders: atomic writes, validated reads, and a lock per run folder.

- :func:`save_atomic` writes a temporary file beside the checkpoint and renames it over the
  old one, so a process killed at any moment leaves the previous checkpoint or the new one.
  A failing write (full disk, read-only folder) raises :class:`CheckpointWriteError` and
  leaves the previous checkpoint untouched.
- :func:`write_text_atomic` does the same for a text file (the training log, when a resumed
  run drops the records past its checkpoint).
- :func:`read_checkpoint` and :func:`load_state_strict` turn a truncated, corrupted or
  foreign checkpoint into a ``ValueError`` that says which.
- :class:`RunLock` keeps two training runs out of one folder: a lock file created with
  ``O_CREAT | O_EXCL`` holds the owner's process id; a lock whose process is dead (a run
  killed with SIGKILL) is stale and taken over.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import socket
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import torch

FORMAT = "pyro-glow-checkpoint-1"
LOCK_NAME = "run.lock"
# How long a lock file without a readable owner (created, its pid not written yet) counts as
# held before it is considered left behind by a process that died between the two.
UNREADABLE_LOCK_GRACE_S = 10.0
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written; the file at its path is the previous one."""


class RunFolderLocked(RuntimeError):
    """Another live process holds the run folder's lock."""


def _temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _replace_atomically(path: Path, mode: str, write: Callable[[IO[Any]], Any]) -> None:
    """Write a temporary file beside ``path`` with ``write``, flush it to disk and rename it
    over ``path``; the temporary file never outlives a failure."""
    temporary = _temporary_path(path)
    try:
        with open(temporary, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` with ``torch.save`` to a temporary file beside ``path``, flush it to
    disk, then rename it over ``path``: a reader sees the old file or the new one, never a
    partial write, whenever the process dies.

    Raises:
        CheckpointWriteError: the write failed (``OSError``: disk full, read-only folder,
            quota); ``path`` still holds the previous checkpoint, if there was one.
    """
    path = Path(path)
    try:
        _replace_atomically(path, "wb", lambda handle: torch.save(state, handle))
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as error:
        kept = "still holds the previous checkpoint" if path.exists() else "was not written"
        raise CheckpointWriteError(
            f"could not write checkpoint {path} ({type(error).__name__}: {error}); {path} {kept}"
        ) from error


def write_text_atomic(text: str, path: str | Path) -> None:
    """Replace the file ``path`` by one holding ``text``, atomically (temporary file, flush,
    rename): a process killed meanwhile leaves the old content, never an empty file."""
    _replace_atomically(Path(path), "w", lambda handle: handle.write(text))


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files that :func:`save_atomic` left in ``directory`` when its
    process died mid-write (their process id is not alive); returns the deleted paths."""
    removed = []
    for candidate in Path(directory).iterdir():
        match = _TEMPORARY.match(candidate.name)
        if match and not _process_alive(int(match["pid"])):
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a pyro-glow checkpoint on the CPU; ``ValueError`` if it is missing, truncated,
    corrupted or not a pyro-glow checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"checkpoint {path} is truncated or corrupted: {error}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pyro-glow checkpoint (format {FORMAT!r})")
    return state


def load_state_strict(module: torch.nn.Module, state_dict: dict[str, Any], source: str) -> None:
    """``module.load_state_dict`` whose error lists the mismatched keys and shapes.

    Entries of an earlier layout of a layer are converted first (each submodule with an
    ``upgrade_state_dict(state_dict, prefix)`` method, as ``load_state_dict`` would), so that
    they are not reported as mismatches; ``state_dict`` itself is left unchanged.
    """
    state_dict = dict(state_dict)
    for name, child in module.named_modules():
        upgrade = getattr(child, "upgrade_state_dict", None)
        if callable(upgrade):
            upgrade(state_dict, f"{name}." if name else "")
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    reshaped = sorted(
        f"{key} {list(state_dict[key].shape)} vs {list(own[key].shape)}"
        for key in set(own) & set(state_dict)
        if own[key].shape != state_dict[key].shape
    )
    if missing or unexpected or reshaped:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", reshaped)):
            if keys:
                shown = ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
                parts.append(f"{label}: {shown}")
        raise ValueError(
            f"{source} was saved from another configuration; mismatched keys: " + "; ".join(parts)
        )
    module.load_state_dict(state_dict)


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def _read_owner(path: Path) -> tuple[int, str] | None:
    """``(pid, host)`` written in a lock file, or None if it is unreadable or incomplete."""
    try:
        fields = path.read_text().split()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    if len(fields) != 2 or not fields[0].isdigit():
        return None
    return int(fields[0]), fields[1]


class RunLock:
    """The lock of one run folder: the file ``DIR/run.lock`` holding ``"PID HOST"``.

    :meth:`acquire` creates the file with ``O_CREAT | O_EXCL`` (atomic: of two processes,
    exactly one creates it). If it exists, its owner is checked:

    - a live process on this host, or any process on another host (whose liveness cannot be
      checked from here): :class:`RunFolderLocked`, naming the process;
    - a process that no longer exists (a run killed with SIGKILL or by a power cut): the lock
      is stale; it is moved aside with an atomic rename (only one contender wins it) and the
      creation is retried;
    - no readable owner: held for ``UNREADABLE_LOCK_GRACE_S`` seconds after its last
      modification (its creator may be about to write its pid), stale after that.

    :meth:`release` deletes the file if it still names this process. A ``with`` block
    acquires and releases.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder, RunLock.acquire(folder) as lock:
        ...     lock.path.name
        'run.lock'
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.held = False

    @classmethod
    def acquire(cls, directory: str | Path) -> RunLock:
        """Lock ``directory`` for this process; :class:`RunFolderLocked` if another live
        process holds it."""
        lock = cls(Path(directory) / LOCK_NAME)
        for _ in range(5):
            try:
                handle = os.open(lock.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                lock._clear_if_stale()
                continue
            with os.fdopen(handle, "w") as file:
                file.write(f"{lock.pid} {lock.host}\n")
                file.flush()
                os.fsync(file.fileno())
            lock.held = True
            return lock
        raise RunFolderLocked(
            f"could not lock {directory}: {lock.path} keeps reappearing (another run is "
            "starting there)"
        )

    def _clear_if_stale(self) -> None:
        """Raise :class:`RunFolderLocked` if the existing lock is held; else remove it."""
        owner = _read_owner(self.path)
        if owner is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return
            if age < UNREADABLE_LOCK_GRACE_S:
                raise RunFolderLocked(
                    f"the run folder {self.path.parent} is being locked by another process "
                    f"({self.path} was created {age:.1f} s ago); choose another --out"
                )
        else:
            pid, host = owner
            if host != self.host or _process_alive(pid):
                where = "" if host == self.host else f" on host {host}"
                raise RunFolderLocked(
                    f"the run folder {self.path.parent} is in use by process {pid}{where} "
                    f"(lock file {self.path}); wait for that run to finish, stop it, or choose "
                    f"another --out. If no such run exists, delete {self.path}."
                )
        aside = self.path.with_name(f"{LOCK_NAME}.stale.{self.pid}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another process cleared it first
        if _read_owner(aside) != owner:
            # Between reading and renaming, a live process replaced the stale lock with its
            # own: put it back (link fails if yet another lock appeared meanwhile).
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        """Delete the lock file if this process still owns it (idempotent)."""
        if not self.held:
            return
        self.held = False
        if _read_owner(self.path) == (self.pid, self.host):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
