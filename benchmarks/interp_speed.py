"""How long model_core.interp's views take on the shipped models, as medians of many calls.

    python benchmarks/interp_speed.py [--reps 50]

Targets (issue: model_core.interp): attribution of one example <= 5 ms; ablating every head and MLP
for one example <= 10 ms; the full patching sweep for one pair <= 50 ms; the whole-input-space views of
digits-0-9 (all 5,000 expressions) <= 3 s. Speed is only reported here, never asserted by a test.
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
        model = load_model(name)
        report(model, name, text, args.reps)
        whole_space(model, name)


def whole_space(model, name: str) -> None:
    from model_core.interp import input_space as isp

    times = {}
    for label, fn in (("head roles", lambda: isp.head_roles(model)), ("score by digit (L1H0)",
                      lambda: isp.score_by_digit(model, 1, 0)), ("ablation matrix", lambda: isp.ablation_matrix(model)),
                      ("logit lens by operation", lambda: isp.lens_by_operation(model)),
                      ("hard cases", lambda: isp.hard_cases(model))):  # fmt: skip
        t0 = time.perf_counter()
        fn()
        times[label] = time.perf_counter() - t0
    n = len(isp.input_space(model))
    print(f"{name} whole-input-space views over {n} expressions: {sum(times.values()):.2f} s in all ("
          + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()) + ")")


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
