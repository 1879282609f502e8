"""Process-wide allocator tuning for the transfer hot path (call once at start-up).

Each network read allocates a buffer of up to 256 KiB. With glibc's defaults those come from
fresh ``mmap`` regions or from heap tops that are trimmed back to the kernel on free, so every
4 KiB received costs a page fault on a VM where touching a fresh page is expensive. Raising
the mmap and trim thresholds keeps the memory in the heap for reuse; peak RSS stays bounded
by what is live at once (concurrency x buffers), not by the bytes moved.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's maximum on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD_BYTES = 64 << 20


def _glibc() -> bool:
    """``confstr`` answers at once; ``platform.libc_ver`` scans the interpreter binary."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return False
    return bool(version and version.startswith("glibc"))


def tune_allocator(
    mmap_threshold: int = MMAP_THRESHOLD_BYTES, trim_threshold: int = TRIM_THRESHOLD_BYTES
) -> bool:
    """Raise glibc's mmap/trim thresholds; False (and nothing done) off glibc."""
    if sys.platform != "linux" or not _glibc():
        return False
    try:  # the process's own symbols include libc's (no ``find_library`` subprocess)
        mallopt = ctypes.CDLL(None, use_errno=True).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok_mmap: bool = mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
    ok_trim: bool = mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
    return ok_mmap and ok_trim


def freeze_startup_objects() -> None:
    """Move everything allocated so far (modules, classes, the parser: ~100k objects) out of
    the cyclic collector's reach. They live as long as the process, yet every full
    collection traversed them again; a transfer allocates enough short-lived containers
    (futures, handles) to trigger collections all the time."""
    gc.freeze()
