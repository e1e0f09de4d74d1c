"""The ``pyro-glow`` command line. Training, sampling and evaluation commands come with the
training issue; for now it describes the package."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-glow",
        description="Glow-style normalizing flows as Pyro TransformModules. "
        "Train the two-moons demo with `make demo` or `python examples/moons.py`.",
    )
    parser.add_argument("--version", action="version", version=f"pyro-glow {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0
