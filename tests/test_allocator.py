"""``keep_freed_memory``: a step's freed activations are reused instead of mapped again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ssl_derm.allocator import keep_freed_memory

# allocate, touch and free a 48 MB tensor 20 times (as a training step does with its
# activations); print the page faults of the last 10, once the heap has grown to its size
LOOP = """
import resource
import torch
from ssl_derm.allocator import keep_freed_memory
print(keep_freed_memory())
for i in range(20):
    if i == 10:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = torch.ones(12 << 20)
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(env: dict) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", LOOP], env=env, capture_output=True, text=True, check=True)
    took, n = out.stdout.split()
    return took, int(n)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_blocks_are_reused_instead_of_faulted_in_again(monkeypatch):
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "SSL_DERM_MALLOC", "GLIBC_TUNABLES"))}
    took, kept = faults(base)
    system_took, system = faults({**base, "SSL_DERM_MALLOC": "system"})
    assert (took, system_took) == ("True", "False")
    # a fresh 48 MB mapping faults in all its pages each time (12,288 at 4 KiB, fewer with huge
    # pages); reused heap memory none
    assert kept * 20 < system
    # the user's own malloc tuning wins
    assert faults({**base, "MALLOC_MMAP_MAX_": "65536"})[0] == "False"
    assert faults({**base, "LD_PRELOAD": "libjemalloc.so.2-not-loaded"})[0] == "False"
    monkeypatch.setenv("SSL_DERM_MALLOC", "system")
    assert keep_freed_memory() is False
