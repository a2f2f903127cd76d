"""How long model_core.interp's views take on the shipped models, as medians of many calls.

    python benchmarks/interp_speed.py [--reps 50]

Targets (issue: model_core.interp): attribution of one example <= 5 ms; ablating every head and MLP
for one example <= 10 ms; the full patching sweep for one pair <= 50 ms. Speed is only reported here,
never asserted by a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_core import interp, load_model  # noqa: E402


def median_ms(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    threadpool_limits(1, "blas")  # as the app server runs
    for name, text in (("digits-0-9", "First ( 3 5 6 )"), ("digits-0-99", "Max ( 47 82 19 )")):
        report(load_model(name), name, text, args.reps)


def report(model, name: str, text: str, reps: int) -> None:
    b = interp.batch(model, [text])
    sweep = interp.every_component(model.transformer)
    interp.mean_activations(model)  # cached once per model
    att = median_ms(lambda: interp.attribute(model.transformer, b.tokens, b.answer_pos), reps)
    zero = median_ms(lambda: interp.ablate(model, b.tokens, b.answer_pos, sweep), reps)
    mean = median_ms(lambda: interp.ablate(model, b.tokens, b.answer_pos, sweep, mean=True), reps)
    corrupt = interp.counterfactuals(model, text)["other operation"]
    patch = median_ms(lambda: interp.patch_sweep(model, text, corrupt), reps)
    print(f"{name} {text!r}: attribute {att:.2f} ms; ablate all {len(sweep)} heads and MLPs: zero {zero:.2f} ms, "
          f"mean {mean:.2f} ms; patching sweep against {corrupt.text!r}: {patch:.2f} ms "
          f"(medians of {reps})")  # fmt: skip

if __name__ == "__main__":
    main()
