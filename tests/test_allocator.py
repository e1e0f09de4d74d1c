"""retain_freed_memory: glibc keeps freed blocks, so allocating them again costs no page faults."""

import subprocess
import sys

import pytest

from pyro_glow.allocator import _mallopt, retain_freed_memory

# Four rounds of sixteen 4 MiB tensors, each filled (every page touched) and freed; prints the
# minor page faults of those rounds, after one warm-up round.
PROBE = """
import resource, sys, torch
from pyro_glow.allocator import retain_freed_memory
if sys.argv[1] == "retain" and not retain_freed_memory():
    raise SystemExit("retain_freed_memory() returned False")
def one_round():
    blocks = [torch.ones(1 << 20) for _ in range(16)]
    del blocks
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    one_round()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES_PER_ROUND = 16 * (4 << 20) // 4096


def _page_faults(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(_mallopt() is None, reason="the C library is not glibc")
def test_freed_blocks_are_reused_without_page_faults():
    default = _page_faults("default")
    if default < PAGES_PER_ROUND:
        pytest.skip(f"this allocator already keeps freed memory ({default} faults in 4 rounds)")
    retained = _page_faults("retain")
    assert retained < default / 10, (retained, default)


def test_without_glibc_nothing_changes(monkeypatch):
    monkeypatch.setattr("pyro_glow.allocator._mallopt", lambda: None)
    assert retain_freed_memory() is False


@pytest.mark.parametrize("bad", [0, -1, 2**31])
def test_trim_threshold_out_of_range_is_a_value_error(bad):
    with pytest.raises(ValueError, match="trim_threshold"):
        retain_freed_memory(bad)


@pytest.mark.parametrize("bad", [1.5, "1GiB", True])
def test_trim_threshold_of_the_wrong_type_is_a_type_error(bad):
    with pytest.raises(TypeError, match="trim_threshold"):
        retain_freed_memory(bad)
