"""Sphinx configuration of the pyro-glow documentation (``make docs``)."""

from __future__ import annotations

import doctest
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's pyro_glow

import pyro_glow  # noqa: E402

os.environ.setdefault("MPLBACKEND", "Agg")

project = "pyro-glow"
author = "the pyro-glow authors"
copyright = "the pyro-glow authors"
release = version = pyro_glow.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Markdown pages: `$...$` maths, and headings up to level 3 get anchors for links.
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

# API reference: every documented member, in source order, signatures with their type hints.
autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": True}
autodoc_typehints = "signature"
autodoc_inherit_docstrings = False  # never pull torch's or Pyro's docstrings into ours
autosummary_generate = False  # summary tables only; the pages are docs/api/*.rst
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# `make docs` runs the docstrings' examples (the `>>>` blocks) with the doctest builder.
doctest_global_setup = """
import math
import torch
import pyro
torch.manual_seed(0)
"""
doctest_default_flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

html_theme = "alabaster"
html_title = f"pyro-glow {release}"
html_static_path: list[str] = []
