"""How much memory the explainer's cached results hold, for the shipped models and the largest user models.

    python benchmarks/session_cache_sizes.py [--space]

The sizes behind explainer/state.py's per-session limits (issue 16, item 6): one cached run (an ExampleRun: the
sum of its arrays' nbytes), one answer ablation of every head, one `ablate_heads` result, and (with --space, which
takes minutes) one whole-input-space run of a large model.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_core import TaskConfig, TaskModel, load_model  # noqa: E402
from model_core.analysis import ablate_heads, run_example  # noqa: E402
from model_core.analysis.output import answer_positions  # noqa: E402
from model_core.interp import ablate  # noqa: E402
from model_core.interp.input_space import space_run  # noqa: E402

# Near the limits (model_core/limits.py: 2M parameters): the largest run of those with 4 blocks and 8 heads.
LARGEST = {"n_layers": 4, "n_heads": 8, "d_model": 256, "d_ff": 448}
TASKS = {  # the Train page's largest task, and the longest sequence an uploaded checkpoint's task can have
    "0-99, 5 values": (TaskConfig(max_value=99, n_args=5), "Max ( 47 82 19 3 99 )"),
    "0-999, 6 values": (TaskConfig(max_value=999, n_args=6), "Max ( 947 882 919 993 999 998 )"),
}


def nbytes(obj, seen: set | None = None) -> int:
    """The bytes of the NumPy arrays `obj` keeps alive (through dataclasses, dicts, lists and attributes), once each."""
    seen = set() if seen is None else seen
    while isinstance(obj, np.ndarray) and isinstance(obj.base, np.ndarray):
        obj = obj.base  # a view keeps the whole array it views alive
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    children = []
    if isinstance(obj, dict):
        children += obj.values()
    elif isinstance(obj, list | tuple):
        children += obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        children += [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children += vars(obj).values()
    return sum(nbytes(c, seen) for c in children)


def mb(obj) -> str:
    return f"{nbytes(obj) / 1e6:.2f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", action="store_true", help="also time and size a large model's space run (minutes)")
    args = ap.parse_args()
    threadpool_limits(1, "blas")  # as the app server runs
    for name, text in (("digits-0-9", "Max ( 7 2 9 )"), ("digits-0-99", "Max ( 47 82 19 )")):
        model = load_model(name)
        t0 = time.perf_counter()
        space = space_run(model)
        print(f"{name}: one run {mb(run_example(model, text))}; space run ({len(space.exprs):,} expressions) "
              f"{mb(space)}, {time.perf_counter() - t0:.1f} s")  # fmt: skip
    for label, (task, text) in TASKS.items():
        model = TaskModel.new(task, "largest", causal=True, **LARGEST)
        n = sum(a.size for a in model.transformer.params.values())
        t0 = time.perf_counter()
        run = run_example(model, text)
        took = time.perf_counter() - t0
        positions = answer_positions(len(run.tokens), run.answer_pos, model.causal)
        every = [[f"L{a}H{b}"] for a in range(LARGEST["n_layers"]) for b in range(LARGEST["n_heads"])]
        answer = ablate(model, np.tile(run.tokens, (len(positions), 1)), positions, every)
        print(f"{LARGEST}, {n:,} parameters, task {label} (T={len(run.tokens)}): one run {mb(run)} "
              f"({took * 1e3:.0f} ms); answer ablation of every head {nbytes(answer) / 1e3:.1f} kB; "
              f"ablate_heads {mb(ablate_heads(model, run.tokens, [(0, 0)]))}")  # fmt: skip
    if args.space:
        for task in (TaskConfig(), TaskConfig(max_value=99, n_args=5)):
            model = TaskModel.new(task, "largest", causal=True, **LARGEST)
            t0 = time.perf_counter()
            space = space_run(model)
            print(f"{LARGEST}, task {task.min_value}-{task.max_value} x {task.n_args}: space run of "
                  f"{len(space.exprs):,} expressions {mb(space)} ({nbytes(space) / len(space.exprs) / 1e3:.1f} kB "
                  f"each), {time.perf_counter() - t0:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
