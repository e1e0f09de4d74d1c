"""The README's Python examples run as written."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_starts_with_the_two_setup_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_readme_pyro_example_trains():
    namespace = {}
    exec(_python_blocks()[0], namespace)
    losses = namespace["losses"]
    assert len(losses) == 100 and losses[-1] < losses[0]


def test_readme_guide_example_trains():
    namespace = {}
    exec(_python_blocks()[0], namespace)
    exec(_python_blocks()[1], namespace)
    assert namespace["guide"](torch.tensor(1.0))["z"].shape == (2,)
    losses = namespace["elbo_losses"]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10
