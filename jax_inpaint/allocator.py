"""The host allocator: let glibc's malloc keep and reuse freed memory, so XLA:CPU does not page-fault
every call.

XLA:CPU allocates a compiled program's working memory afresh on every call (hundreds of MB for a
search step at 256x256) and frees it after. glibc serves blocks that large by mmap, or from its
per-thread arenas' mapped heaps, and gives them back to the system when freed, so the next call
touches fresh pages: ~100,000 page faults (~390 MB) per step at 256x256, ~10 % of the step on CPU
(bench/RESULTS.md). `tune_host_allocator` sets three of malloc's options (as glibc's
MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_ and MALLOC_ARENA_MAX=1 would at process start): no mmap for
large blocks, no returning of freed memory, one arena. The cost: the process's resident memory stays
at its peak instead of shrinking between calls.

Memory kept this way is free for this process but no longer counts as available to the system;
`held_free_bytes` says how much of it there is, and the search's memory budget adds it back.

The arena option binds only threads that have not allocated yet, so it must run before JAX starts its
CPU client (the first array or computation); the CLI calls it before any command runs. Elsewhere than
Linux with glibc it does nothing. JAX_INPAINT_HOST_ALLOCATOR=default turns it off.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys

# glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

ENV = "JAX_INPAINT_HOST_ALLOCATOR"
_applied: bool | None = None


def tune_host_allocator() -> bool:
    """Make glibc's malloc keep freed memory for reuse (see the module's docstring). Returns whether it
    applied: False where the platform has no glibc, or JAX_INPAINT_HOST_ALLOCATOR=default. Idempotent."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV, "").strip().lower() == "default" or not sys.platform.startswith("linux"):
        return False
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = [mallopt(_M_MMAP_MAX, 0), mallopt(_M_TRIM_THRESHOLD, 2**31 - 1), mallopt(_M_ARENA_MAX, 1)]
    _applied = all(r == 1 for r in ok)
    return _applied


@functools.lru_cache(maxsize=None)
def _libc_function(name: str):
    """A function of the C library the interpreter runs on, or None where it has none of that name."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def held_free_bytes() -> int:
    """Bytes malloc holds free for reuse (glibc's mallinfo2 `fordblks`) when the allocator is tuned, else 0:
    resident memory of this process that a new allocation reuses, though the system counts it as used."""
    mallinfo2 = _libc_function("mallinfo2") if _applied else None  # glibc >= 2.33
    if mallinfo2 is None:
        return 0
    mallinfo2.restype = _MallInfo2
    return int(mallinfo2().fordblks)
