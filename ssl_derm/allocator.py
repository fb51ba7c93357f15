"""Keep freed memory in the process for the next training step (glibc).

A training step frees and allocates the same large activations every step. glibc's malloc
serves blocks above its mmap threshold with fresh mappings and returns them when freed
(``munmap``, or a trim of the heap's top), so each step maps them again and the kernel takes a
page fault and zeroes a page for every 4 KiB touched. On the project's 2-core CPU a fine-tuning
step at 96 px spent a fifth to a third of its CPU time in the kernel this way.
``keep_freed_memory`` makes glibc serve every block from its heap and never trim it, so freed
memory is reused. It changes where tensors live, never their values: the same run gives
bit-identical checkpoints (docs/PERFORMANCE.md, "CPU: freed memory kept").

The training commands call it once at start (the others keep no peak: a heap that is never
trimmed would hold theirs). The process keeps its peak heap, and a freed block is reused only
by a request that fits in it, so a pattern of ever larger blocks under long-lived small ones
would grow the heap; training repeats the same sizes every step, and the study's processes
held a flat resident size for hours (docs/PERFORMANCE.md). It does nothing when
``SSL_DERM_MALLOC=system``, when the environment already tunes glibc's malloc
(``MALLOC_MMAP_MAX_``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_TOP_PAD_`` or malloc entries of ``GLIBC_TUNABLES``: the user's choice wins), under a
preloaded jemalloc or tcmalloc, and off glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h
USER_TUNING = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
DEFAULT_MMAP_MAX = 65536  # glibc's own, restored if the second setting is refused


_KEPT = False  # keep_freed_memory took effect in this process


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the system (``malloc_trim``) where ``keep_freed_memory``
    holds them: between a benchmark's runs, whose models and batches differ, so the next run
    does not grow the heap over the last one's free blocks."""
    if _KEPT:
        import gc

        gc.collect()  # a finished Lightning run's model sits in reference cycles until collected
        trim = ctypes.CDLL(None).malloc_trim
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
        trim(0)


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and never trim it; True if glibc took the settings."""
    env = os.environ
    if env.get("SSL_DERM_MALLOC") == "system" or not sys.platform.startswith("linux"):
        return False
    if any(k in env for k in USER_TUNING) or "glibc.malloc." in env.get("GLIBC_TUNABLES", ""):
        return False
    if any(name in env.get("LD_PRELOAD", "") for name in ("jemalloc", "tcmalloc", "mimalloc")):
        return False  # another allocator serves malloc: glibc's options would change nothing
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl's malloc takes no such options)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_MAX, 0) != 1:
        return False
    if mallopt(M_TRIM_THRESHOLD, 2**31 - 1) != 1:  # all or nothing
        mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        return False
    global _KEPT
    _KEPT = True
    return True
