"""Keeping freed memory in the process, for CPU training and generation. glibc's malloc serves every block over its
mmap threshold (128 KiB to 32 MiB) with a fresh mmap and gives it back to the kernel when freed, so each step's
activations, logits and gradients, tens of megabytes each, are page-faulted in and zeroed again at every step: a
SmolLM2 LoRA run took 79 million minor page faults and a fifth of a 135M model's step time (bench/real_model.py).
PyTorch's CPU tuning guide points to jemalloc or tcmalloc for this; `keep_freed_memory` gets the same from glibc
itself, in the running process, with `mallopt`: no mmap for large blocks and no trimming of the heap, so freed blocks
are reused. The process's resident memory then stays at its peak instead of falling between steps."""

from __future__ import annotations

import ctypes
import functools
import logging
import platform

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
NEVER = 2**31 - 1  # the largest value mallopt takes: the heap is never trimmed


@functools.cache
def keep_freed_memory() -> bool:
    """Sets glibc's malloc to keep freed memory for reuse (once per process). False where the C library is not glibc
    (macOS, musl) or refuses, and nothing changes."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        done = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, NEVER) == 1
    except (OSError, AttributeError):
        return False
    if done:
        log.info("malloc: large blocks come from the heap and freed memory stays for reuse (no page faults per step)")
    return done
