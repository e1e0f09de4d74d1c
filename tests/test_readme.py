"""The Python examples of the README and of docs/index.md run as written."""

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_starts_with_the_two_setup_commands():
    first_block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    commands = [line.split("#")[0].strip() for line in first_block.group(1).strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_readme_pyro_example_trains():
    namespace = {}
    exec(_python_blocks(ROOT / "README.md")[0], namespace)
    losses = namespace["losses"]
    assert len(losses) == 100 and losses[-1] < losses[0]


def test_readme_guide_example_trains():
    namespace = {}
    for block in _python_blocks(ROOT / "README.md")[:2]:
        exec(block, namespace)
    assert namespace["guide"](torch.tensor(1.0))["z"].shape == (2,)
    losses = namespace["elbo_losses"]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10


def test_docs_index_examples_run_in_order():
    namespace = {}
    for block in _python_blocks(ROOT / "docs" / "index.md"):
        exec(block, namespace)
    assert namespace["log_p"].shape == (8,)
    assert namespace["images"].shape == (4, 3, 32, 32)
    assert namespace["flow"].sample(3).shape == (3, 2)
    assert namespace["errors"]["log_det"] < 1e-9
