"""The documentation site: every public name is in the API reference with a docstring, and the
tutorials' Python code runs as written.

The API checks read ``docs/api/*.rst`` without building Sphinx (``make docs`` builds it);
they fail when a new public module, layer or top-level name has no place in the reference, or
when autodoc would silently leave a name out because it has no docstring.
"""

import importlib
import inspect
import math
import pkgutil
import re
from pathlib import Path

import pytest
import torch

import pyro_glow
import pyro_glow.transforms

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"
TUTORIALS = ("moons", "cifar10", "svi", "custom_layer")


def _directive_entries(text: str, directive: str) -> list[str]:
    """The indented entries of every ``.. directive::`` block of an rst text (options
    excluded)."""
    entries = []
    for block in re.findall(rf"^\.\. {directive}::.*\n((?:[ \t]+.*\n|\s*\n)*)", text, flags=re.M):
        entries += [
            line.strip()
            for line in block.splitlines()
            if line.strip() and not line.strip().startswith(":")
        ]
    return entries


def _resolve(dotted: str) -> object:
    """The object a dotted name such as ``pyro_glow.transforms.ActNorm`` refers to."""
    try:
        return importlib.import_module(dotted)
    except ImportError:
        module, _, name = dotted.rpartition(".")
        return getattr(importlib.import_module(module), name)


def _own_docstring(obj: object) -> str | None:
    """The docstring written for ``obj`` itself (not one a class inherits)."""
    if inspect.isclass(obj):
        return vars(obj).get("__doc__")
    return getattr(obj, "__doc__", None)


def _public_modules() -> list[str]:
    return sorted(
        f"pyro_glow.{info.name}"
        for info in pkgutil.iter_modules(pyro_glow.__path__)
        if not info.name.startswith("_")
    )


def _api_pages() -> dict[str, str]:
    """Module name -> the text of its API page (``docs/api/<module>.rst``)."""
    return {page.stem: page.read_text() for page in API.glob("pyro_glow.*.rst")}


def _documented_members(module_name: str) -> list[tuple[str, object]]:
    """The classes and functions ``.. automodule:: module :members:`` selects: the module's
    ``__all__``, else the public ones defined in the module itself."""
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return [(name, getattr(module, name)) for name in module.__all__]
    return [
        (name, obj)
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module_name
    ]


def test_every_top_level_name_is_in_the_api_index():
    entries = _directive_entries((API / "index.rst").read_text(), "autosummary")
    targets = {}
    for entry in entries:
        targets.setdefault(id(_resolve(entry)), entry)  # also fails on a stale entry
    missing = [name for name in pyro_glow.__all__ if id(getattr(pyro_glow, name)) not in targets]
    assert not missing, (
        f"pyro_glow.__all__ names missing from the autosummary of docs/api/index.rst: {missing}"
    )


@pytest.mark.parametrize("name", pyro_glow.__all__)
def test_every_top_level_name_has_a_docstring(name):
    docstring = _own_docstring(getattr(pyro_glow, name))
    assert docstring and docstring.strip(), f"pyro_glow.{name} has no docstring"


def test_every_public_module_has_an_api_page_in_the_toctree():
    pages = _api_pages()
    toctree = _directive_entries((API / "index.rst").read_text(), "toctree")
    for module in _public_modules():
        assert module in pages, f"{module} has no API page: add docs/api/{module}.rst"
        assert f".. automodule:: {module}\n" in pages[module], f"docs/api/{module}.rst"
        assert module in toctree, f"docs/api/{module}.rst is not in docs/api/index.rst's toctree"
    for page in pages:
        importlib.import_module(page)  # a page of a module that no longer exists fails


def test_autodoc_leaves_no_public_name_out():
    """``:members:`` skips names without a docstring unless the page has ``:undoc-members:``."""
    undocumented = []
    for module, text in _api_pages().items():
        assert importlib.import_module(module).__doc__, f"{module} has no module docstring"
        if ":undoc-members:" in text:
            continue
        undocumented += [
            f"{module}.{name}"
            for name, obj in _documented_members(module)
            if not (_own_docstring(obj) or "").strip()
        ]
    assert not undocumented, f"no docstring, so missing from the API reference: {undocumented}"


def test_every_layer_is_documented():
    """A public class of a ``pyro_glow.transforms`` submodule is documented through
    ``pyro_glow.transforms.__all__`` or on an API page of its own submodule."""
    pages = _api_pages()
    prefix = "pyro_glow.transforms."
    for info in pkgutil.iter_modules(pyro_glow.transforms.__path__, prefix):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == info.name and not name.startswith("_"):
                assert name in pyro_glow.transforms.__all__ or info.name in pages, (
                    f"{info.name}.{name} is neither in pyro_glow.transforms.__all__ nor on an "
                    f"API page docs/api/{info.name}.rst, so the API reference leaves it out"
                )


def test_every_docs_page_is_in_a_toctree():
    """Sphinx would warn (an error under ``make docs``); this says which page at test time."""
    index = (DOCS / "index.md").read_text()
    toctree = re.search(r"```\{toctree\}\n(.*?)```", index, flags=re.S).group(1)
    entries = [line.strip() for line in toctree.splitlines() if line and line[0] not in ": "]
    assert "*" in entries or all(page.stem in entries for page in DOCS.glob("*.md")), entries
    for tutorial in TUTORIALS:
        assert f"tutorial_{tutorial}" in entries


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def _check_moons(ns):
    assert ns["metrics"]["test_nll"] < ns["metrics"]["true_nll"] + 3
    assert ns["points"].shape == (1000, 2) and ns["log_p"].shape == (1,)
    assert ns["losses"][-1] < ns["losses"][0]
    assert [name for name, _ in ns["stages"]][-1] == "step 4"
    assert Path("moons_layers.png").stat().st_size > 0


def _check_cifar10(ns):
    assert ns["flow"].event_shape == (3, 16, 16) and ns["log_p"].shape == (16,)
    assert ns["images"].dtype == torch.uint8 and ns["images"].shape == (8, 3, 16, 16)
    assert len(list(Path().glob("samples_T*.png"))) == 4
    assert abs(ns["loss"] / (768 * math.log(2)) + 8 - 8) < 0.5  # uniform noise: ~8 bits/dim


def _check_svi(ns):
    assert ns["nll"][-1] < ns["nll"][0]
    assert ns["flow_loss"] < ns["normal_loss"]  # the page's claim
    assert ns["samples"].shape == (1000, 2) and ns["z"].shape == (2,)
    data_mean = ns["points"].mean(0)
    assert (ns["posterior"]["loc"].mean(0) - data_mean).abs().max() < 0.5
    assert (ns["site_loc"] - data_mean).abs().max() < 0.5


def _check_custom_layer(ns):
    assert ns["errors"]["log_det"] < 1e-9
    assert "WrongSign" in ns["message"] and "log-det" in ns["message"]
    assert ns["losses"][-1] < ns["losses"][0]


CHECKS = {
    "moons": _check_moons,
    "cifar10": _check_cifar10,
    "svi": _check_svi,
    "custom_layer": _check_custom_layer,
}


@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_tutorial_code_runs_as_written(tutorial, tmp_path, monkeypatch):
    """Every ``python`` block of the tutorial, in order, in one namespace, in a scratch
    folder; then the results the page describes are checked."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    blocks = _python_blocks(DOCS / f"tutorial_{tutorial}.md")
    assert blocks, f"docs/tutorial_{tutorial}.md has no python block"
    torch.manual_seed(0)
    namespace: dict[str, object] = {"__name__": f"tutorial_{tutorial}"}
    for block in blocks:
        exec(compile(block, f"tutorial_{tutorial}.md", "exec"), namespace)
    CHECKS[tutorial](namespace)
