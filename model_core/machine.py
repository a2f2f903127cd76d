"""What a training run's exact numbers depend on: the CPU, the BLAS library and kernel, NumPy.

Training is chaotic: the same recipe on another BLAS kernel (another CPU) rounds some products
differently, and the weights drift apart, although the accuracy does not. A checkpoint records
this fingerprint (`metrics["trained_on"]`) so that a retrain can say whether it should reproduce
the file bit for bit (same fingerprint) or only its accuracy.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

TRAINING_BLAS_THREADS = 1  # one thread: the same products, in the same order, on every run


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas() -> str:
    """NumPy's BLAS library, version and kernel, e.g. "openblas 0.3.31.188.0 Haswell"."""
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            return " ".join(str(lib.get(k)) for k in ("internal_api", "version", "architecture") if lib.get(k))
    return "unknown"


def blas_threads() -> int | None:
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            return lib.get("num_threads")
    return None


def fingerprint() -> dict:
    """The facts a run's exact numbers depend on (BLAS threads as set now)."""
    return {"cpu": cpu_model(), "blas": blas(), "blas_threads": blas_threads(), "numpy": np.__version__,
            "machine": platform.machine()}  # fmt: skip

