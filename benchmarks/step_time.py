"""How long one training step and one cached forward pass take, as medians of many.

    python benchmarks/step_time.py [--steps 300] [--forwards 2000] [--blas-threads N] [--raw]
    python benchmarks/step_time.py --against /tmp/old [--rounds 6]   # this checkout vs another, interleaved

With `--against DIR` (another checkout of the project, e.g. `git archive <commit> | tar -x -C DIR`),
the script runs itself in rounds, alternating this checkout's model_core and DIR's, and prints each
round's medians and the median ratio: both run on the same machine at the same time, so the ratio
holds even where the absolute figures drift.

1. A training step as `Trainer.run` takes it: sample a batch of 64, encode it,
   `loss_and_grads`, `clip_grad_norm`, an AdamW step; the default `ModelConfig()` on the
   default task (three values 0-9). Then `loss_and_grads` alone, on one fixed batch.
2. `run_with_cache` on one 9-token expression: what the explainer does per page view.

Each call is timed on its own after a warm-up; the median is the figure, p10/p90 show the
spread (the machine may be shared: run it a few times). Before timing, the script does what
`Trainer` does before it trains: `_alloc.keep_freed_memory()` and `_alloc.warm_up_blas()`
(`--raw` skips both). Speed is only reported here, never asserted by a test.

OpenBLAS's thread count is read (and with --blas-threads set) through the library numpy
loaded, with ctypes: threadpoolctl is not a dependency.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(os.environ.get("STEP_TIME_ROOT", Path(__file__).resolve().parents[1]))  # whose model_core to time
sys.path.insert(0, str(ROOT))

from model_core import TaskConfig, TaskModel, TrainConfig, make_splits  # noqa: E402

try:  # the layout by stage; `--against` may time a checkout from before it
    from model_core.training.optim import clip_grad_norm, lr_at, make_optimizer  # noqa: E402
except ImportError:
    from model_core.optim import clip_grad_norm, lr_at, make_optimizer  # noqa: E402
try:
    from model_core.training import _alloc  # noqa: E402
except ImportError:
    try:
        from model_core import _alloc  # noqa: E402
    except ImportError:  # a checkout from before it existed: time it as it is
        _alloc = None


# ---------------------------------------------------------------- BLAS threads, without threadpoolctl
def _openblas() -> tuple[ctypes.CDLL, str] | None:
    """The OpenBLAS numpy loaded (found in this process's memory map) and its symbol pattern."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = {line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower() and "/" in line}
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", "_64", ""):
                if hasattr(lib, f"{prefix}_get_num_threads{suffix}"):
                    return lib, f"{prefix}_%s{suffix}"
    return None


def blas_threads(set_to: int | None = None) -> str:
    """Describe (and with `set_to`, first set) the BLAS thread count."""
    env = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ}
    found = _openblas()
    if found is None:
        return f"unknown: no OpenBLAS found (env {env or 'unset'}; see np.show_config())"
    lib, name = found
    if set_to is not None:
        getattr(lib, name % "set_num_threads")(ctypes.c_int(set_to))
    n = getattr(lib, name % "get_num_threads")()
    core = getattr(lib, name % "get_corename")
    core.restype = ctypes.c_char_p
    how = "set by --blas-threads" if set_to is not None else f"env {env or 'unset'}"
    return f"{n} ({how}; OpenBLAS {core().decode()} kernels; {os.cpu_count()} CPUs)"


# ---------------------------------------------------------------- timing
def timed(fn, n: int, warmup: int) -> np.ndarray:
    """Seconds per call of fn(), each call timed on its own."""
    for _ in range(warmup):
        fn()
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out


def summary(label: str, seconds: np.ndarray) -> str:
    p10, p50, p90 = np.percentile(seconds * 1e3, [10, 50, 90])
    return f"{label:<36} median {p50:7.3f} ms   p10 {p10:7.3f}   p90 {p90:7.3f}   (n={len(seconds)})"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="training steps timed")
    ap.add_argument("--warmup", type=int, default=30, help="untimed steps first")
    ap.add_argument("--forwards", type=int, default=2000, help="cached forward passes timed")
    ap.add_argument("--blas-threads", type=int, default=None, help="set OpenBLAS's thread count first")
    ap.add_argument("--raw", action="store_true", help="skip keep_freed_memory() and warm_up_blas()")
    ap.add_argument("--no-keep-freed-memory", action="store_true", help="skip keep_freed_memory() only")
    ap.add_argument("--against", type=Path, help="another checkout: time both, interleaved, and compare")
    ap.add_argument("--rounds", type=int, default=6, help="with --against: rounds of (this, other)")
    args = ap.parse_args(argv)
    if args.against is not None:
        return compare(args)

    print(f"numpy {np.__version__}, Python {platform.python_version()}, {platform.machine()}")
    print(f"BLAS threads: {blas_threads(args.blas_threads)}")
    if _alloc is None:
        print("model_core._alloc: not in this checkout")
    elif args.raw:
        print("keep_freed_memory / warm_up_blas: skipped (--raw)")
    else:  # what Trainer does before it trains
        kept = False if args.no_keep_freed_memory else _alloc.keep_freed_memory()
        _alloc.warm_up_blas()
        print(f"keep_freed_memory: {'on' if kept else 'off'}; warm_up_blas: done")

    model = TaskModel.new(TaskConfig())
    cfg = TrainConfig()  # batch 64, AdamW
    splits = make_splits(model.task, seed=cfg.seed)
    net, params = model.transformer, model.transformer.params
    opt = make_optimizer(cfg, params)
    rng = np.random.default_rng(cfg.seed)
    step = 0

    def train_step():  # Trainer.run's step, less its metrics and events
        nonlocal step
        batch = model.encode(splits.sample_train(cfg.batch_size, rng))
        loss, grads, logits = net.loss_and_grads(batch.tokens, batch.targets)
        norm = clip_grad_norm(grads, cfg.grad_clip)
        if not (np.isfinite(loss) and np.isfinite(norm)):
            raise RuntimeError("the benchmark's training diverged")
        opt.step(params, grads, lr_at(step, cfg))
        step += 1

    fixed = model.encode(splits.sample_train(cfg.batch_size, np.random.default_rng(1)))
    print(f"task: {model.task.n_args} values {model.task.min_value}-{model.task.max_value}, "
          f"batch {cfg.batch_size} x {fixed.tokens.shape[1]} tokens; model: {net.n_params} parameters, "
          f"{net.cfg.n_layers} blocks, d_model {net.cfg.d_model}, {net.cfg.norm}-norm, {net.dtype}")  # fmt: skip
    print(summary("training step", timed(train_step, args.steps, args.warmup)))
    lag = timed(lambda: net.loss_and_grads(fixed.tokens, fixed.targets), args.steps, args.warmup)
    print(summary("loss_and_grads alone", lag))

    one = model.encode(model.expressions([model.parse("Max ( 5 3 9 )")])).tokens[0]  # [9]
    fwd = timed(lambda: net.run_with_cache(one[None]), args.forwards, 50)
    print(summary(f"run_with_cache, 1 x {one.shape[0]} tokens", fwd))


def compare(args) -> None:
    """Run this script in subprocesses, alternating the two checkouts; print the medians and their ratio."""
    import re
    import subprocess

    here, other = Path(__file__).resolve().parents[1], args.against.resolve()
    cmd = [sys.executable, __file__, "--steps", str(args.steps), "--forwards", str(args.forwards)]
    cmd += ["--raw"] if args.raw else []
    cmd += ["--no-keep-freed-memory"] if args.no_keep_freed_memory else []
    cmd += ["--blas-threads", str(args.blas_threads)] if args.blas_threads is not None else []
    figures: dict[str, dict[str, list[float]]] = {"this": {}, "other": {}}
    for r in range(args.rounds):
        for who, root in (("this", here), ("other", other)) if r % 2 == 0 else (("other", other), ("this", here)):
            done = subprocess.run(cmd, env=os.environ | {"STEP_TIME_ROOT": str(root)}, capture_output=True,
                                  text=True)  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"timing {root} failed:\n{done.stderr}")
            out = done.stdout
            for label, median in re.findall(r"^(.+?)\s+median\s+([0-9.]+) ms", out, re.M):
                figures[who].setdefault(label.strip(), []).append(float(median))
        print(f"round {r + 1}: " + "; ".join(f"{label}: {figures['this'][label][-1]:.3f} vs "
                                             f"{figures['other'][label][-1]:.3f} ms" for label in figures["this"]))
    print(f"\nthis checkout: {here}\nother: {other}  ({args.rounds} rounds, medians of the rounds' medians)")
    for label, values in figures["this"].items():
        a, b = float(np.median(values)), float(np.median(figures["other"][label]))
        print(f"{label:<36} this {a:7.3f} ms   other {b:7.3f} ms   this/other {a / b:5.2f}")


if __name__ == "__main__":
    main()
