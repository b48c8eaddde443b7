"""Keep freed large blocks in the process heap while training (glibc only).

glibc's malloc serves every block above its mmap threshold (at most 32 MiB, whatever the
dynamic adjustment) with a fresh mmap() and unmaps it on free. A Netflix-scale step frees
and re-allocates several 17,768 x 512 fp32 tensors (36 MB: gradients, their bf16 -> fp32
casts, embedding_bag sums), so each one is page-faulted in again, ~9,000 faults apiece.
Measured on the 2-core development machine (docs/results/netflix_scale_epoch.md): a bf16
step without re-feeding 62 -> 33 ms, with one re-feed step 132 -> 96 ms.

`reuse_freed_memory()` disables mmap for large blocks and the heap trim while a training
epoch runs, and restores glibc's defaults (and returns free memory with malloc_trim)
afterwards. Nothing changes at import time; on other C libraries it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_TRIM_THRESHOLD = 128 * 1024  # glibc's documented defaults
_DEFAULT_MMAP_MAX = 65536
_NEVER_TRIM = 1 << 30  # largest value mallopt accepts (int); ~1 GiB of free heap top kept

_lock = threading.Lock()
_depth = 0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The running glibc (with mallopt and malloc_trim), or None elsewhere."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def available() -> bool:
    """Whether this process runs on glibc, where the tuning applies."""
    return _glibc() is not None


@contextmanager
def reuse_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """While active, freed large blocks stay in the heap for the next allocation.

    Re-entrant and thread-safe (a counter): glibc's defaults come back when the outermost
    use ends. Yields whether the tuning is in effect."""
    global _depth
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)


def active() -> bool:
    """Whether a reuse_freed_memory() block is running (for tests)."""
    return _depth > 0
