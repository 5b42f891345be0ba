"""Process allocator policy for the CPU engines.

glibc returns large freed blocks to the OS (``mmap`` above a threshold, heap trimming), so every frame
faults its feature maps in again as fresh zeroed pages. Measured on the edge model at 1 thread: 11 000
(FP twin) and 21 000 (bitwise engine) minor page faults per frame in the image neck, BEV stages and heads,
25-50 ms per frame; with the policy below, 0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1


def retain_freed_memory(mmap_threshold: int = 1 << 30) -> bool:
    """Serve allocations up to ``mmap_threshold`` bytes from the heap and never trim it, so a frame reuses the
    previous frame's pages. Process-wide and idempotent; the resident set then stays at its high-water mark
    (what a node processing frame after frame reaches anyway). Returns False where the C library is not glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallopt", None)
    if mallopt is None:
        return False
    threshold = ctypes.c_int(min(mmap_threshold, _INT_MAX))
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_INT_MAX)))
