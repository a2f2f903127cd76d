"""Process-wide memory settings that make a training loop's many short-lived arrays cheap.

A training step allocates and frees a few hundred arrays; the larger ones (a
[576, 256] float32 activation is 590 KB) are over glibc's mmap threshold, so glibc
maps them fresh and unmaps them on free, or trims the heap's top back to the OS:
every new page then costs a page fault and zeroing. `keep_freed_memory()` tells
glibc to keep freed memory for reuse instead. It is process-wide, so nothing here
runs on import: the places that train call it (`Trainer`, the benchmarks). Its cost
is that the process keeps its peak heap (tens of MB here) until it exits.

`warm_up_blas()` runs one mid-sized float32 product. OpenBLAS maps its work buffer
once and the kernel faults its pages in on first touch; the small products of a
training step touch only part of it, and the single-threaded sgemm kernel then runs
well below its speed after one product that touched the whole buffer. It changes
nothing else, so it is safe to call from anywhere; only the first call does work.

`python benchmarks/step_time.py` against `--no-keep-freed-memory` (or `--raw`, which
skips both) shows what each is worth on the machine at hand.
"""

from __future__ import annotations

import ctypes
import platform
import sys
import threading

import numpy as np

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper limit on 64-bit: larger values are refused
_TRIM_THRESHOLD = 1 << 30  # give the heap's top back only beyond 1 GB free
_TOP_PAD = 16 * 1024 * 1024  # grow the heap 16 MB at a time

_lock = threading.Lock()
_done = {"memory": False, "blas": False}


def keep_freed_memory() -> bool:
    """Keep freed memory in the process for reuse (glibc on Linux only; elsewhere a no-op).

    Returns True if the settings are in effect. Safe to call more than once.
    """
    with _lock:
        if _done["memory"]:
            return True
        if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
            return False
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:
            return False
        ok = all(
            libc.mallopt(param, value) == 1  # mallopt returns 1 on success
            for param, value in (
                (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD),
                (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
                (_M_TOP_PAD, _TOP_PAD),
            )
        )
        _done["memory"] = ok
        return ok


def warm_up_blas() -> None:
    """Fault in the BLAS library's work buffer with one float32 product (once per process)."""
    with _lock:
        if _done["blas"]:
            return
        _done["blas"] = True
    # [512, 384] @ [384, 512]: big enough that OpenBLAS's packing touches all of the
    # buffer the step's products read from (smaller ones, [256, 256] @ [256, 256], did not).
    a = np.ones((512, 384), dtype=np.float32)
    a @ a.T
