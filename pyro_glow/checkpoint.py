"""Checkpoint files: atomic writes and validated reads."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "pyro-glow-checkpoint-1"


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` with ``torch.save`` to a temporary file beside ``path``, flush it to
    disk, then rename it over ``path``: a reader sees the old file or the new one, never a
    partial write, whenever the process dies."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


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
    """``module.load_state_dict`` whose error lists the mismatched keys and shapes."""
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
