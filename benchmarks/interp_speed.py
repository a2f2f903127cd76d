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


def whole_space(model, name: str, reps: int = 3) -> None:
    """Every whole-input-space view from one shared clean pass (as the app computes them), medians of `reps`."""
    from model_core.interp import input_space as isp

    cfg = model.transformer.cfg
    views = {
        "head roles": lambda run: isp.head_roles(model, run=run),
        f"score by digit (all {cfg.n_layers * cfg.n_heads} heads)": lambda run: [
            isp.score_by_digit(model, i, h, run=run) for i in range(cfg.n_layers) for h in range(cfg.n_heads)],
        "ablation matrix (from those runs)": lambda run: isp.ablation_matrix(model, run=run),
        "logit lens by operation": lambda run: isp.lens_by_operation(model, run=run),
        "hard cases": lambda run: isp.hard_cases(model, run=run),
    }  # fmt: skip
    totals, parts = [], {}
    for _ in range(reps):
        t0 = time.perf_counter()
        run = isp.space_run(model)
        times = {"clean pass and zero-ablation runs": time.perf_counter() - t0}
        for label, view in views.items():
            t = time.perf_counter()
            view(run)
            times[label] = time.perf_counter() - t
        totals.append(time.perf_counter() - t0)
        for k, v in times.items():
            parts.setdefault(k, []).append(v)
    print(f"{name} whole-input-space views over {len(run.exprs)} expressions: {np.median(totals):.2f} s in all, "
          f"median of {reps} (" + ", ".join(f"{k} {np.median(v):.2f} s" for k, v in parts.items()) + ")")


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
