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

# the kept heap's free pages go back to the system on release_freed_memory: resident MB before and after
RELEASE = """
import os
import torch
from ssl_derm.allocator import keep_freed_memory, release_freed_memory


def resident():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20


keep_freed_memory()
a = torch.ones(64 << 20)  # 256 MB
del a
held = resident()
release_freed_memory()
print(held, resident())
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
    out = subprocess.run([sys.executable, "-c", RELEASE], env=base, capture_output=True, text=True, check=True)
    held, released = map(int, out.stdout.split())
    assert held - released > 200  # MB
    monkeypatch.setenv("SSL_DERM_MALLOC", "system")
    assert keep_freed_memory() is False
