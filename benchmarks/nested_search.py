"""Recipe search for the nested task (`nested-0-9`): step times, and held-out accuracy per depth and operation
over time for a recipe trained for a wall-time budget.

    OPENBLAS_NUM_THREADS=1 nice -n 19 python benchmarks/nested_search.py --measure            # seconds per step
    OPENBLAS_NUM_THREADS=1 nice -n 19 python benchmarks/nested_search.py --minutes 3 \\
        --layers 3 --d-model 96 --batch 128 --lr 2e-3 --warmup 200 --hard 0.5 --qk 0.5
    OPENBLAS_NUM_THREADS=1 nice -n 19 python benchmarks/nested_search.py --preset nested-0-9   # the preset as is

`--measure` times a training step (sample, encode, loss_and_grads, clipping, AdamW, as `Trainer.run` takes it)
for several architectures (causal, pre-norm, learned positions, GELU; --layers/--d-model lists) at each
`--batch` size, and says how many steps fit in `--minutes`.

A budget run times 20 steps of the recipe's model first, sets `steps` so that the run (cosine schedule over all
of it) takes about `--minutes` of training, then trains with the `Trainer` as `python -m model_core train` does
(one BLAS thread). `--checks` times during the run it scores a seeded 4,000-expression sample of the validation
split per depth and operation; at the end the whole held-out split (`model.evaluate(splits.test)`: per depth,
operation and length). `--steps N` fixes the step count instead. `--save PATH` writes the checkpoint.
The task is the preset's: First/Second/Last/Max/Min/Sum of 2 or 3 arguments 0-9, nested to depth 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_core import TaskConfig, TaskModel, Trainer, make_splits  # noqa: E402
from model_core.config import TrainConfig  # noqa: E402
from model_core.training import _alloc  # noqa: E402
from model_core.training.optim import clip_grad_norm, lr_at, make_optimizer  # noqa: E402
from model_core.training.trainer import EvalMetrics  # noqa: E402

TASK = TaskConfig(operations=("First", "Second", "Last", "Max", "Min", "Sum"), min_args=2, n_args=3, max_depth=2)
BASE_MODEL = {"causal": True, "norm": "pre", "positional": "learned", "activation": "gelu"}


def model_opts(layers: int, d_model: int, heads: int, qk: float, seed: int = 0) -> dict:
    return BASE_MODEL | {"n_layers": layers, "d_model": d_model, "n_heads": heads, "d_ff": 4 * d_model,
                         "qk_init": qk, "seed": seed}  # fmt: skip


def step_time(opts: dict, batch: int, n: int = 20, splits=None, hard: float = 0.5) -> float:
    """Median seconds of a training step (after 3 warm-up steps)."""
    model = TaskModel.new(TASK, **opts)
    splits = splits if splits is not None else make_splits(TASK)
    cfg = TrainConfig(steps=1000, batch_size=batch)
    opt = make_optimizer(cfg, model.transformer.params)
    rng = np.random.default_rng(0)
    times = []
    for i in range(n + 3):
        t0 = time.perf_counter()
        b = model.encode(splits.sample_train(batch, rng, hard_fraction=hard))
        _, grads, _ = model.transformer.loss_and_grads(b.tokens, b.targets)
        clip_grad_norm(grads, 1.0)
        opt.step(model.transformer.params, grads, lr_at(i, cfg))
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def fmt(ev: dict) -> str:
    depth = " ".join(f"d{d} {a:.2%}" for d, a in ev["per_depth"].items())
    ops = " ".join(f"{op} {a:.1%}" for op, a in ev["per_op"].items())
    return f"all {ev['accuracy']:.2%} | {depth} | {ops}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measure", action="store_true")
    ap.add_argument("--preset", help="train this preset's recipe (its steps unless --minutes/--steps are given)")
    ap.add_argument("--layers", type=int, nargs="+", default=[3])
    ap.add_argument("--d-model", type=int, nargs="+", default=[96])
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, nargs="+", default=[128])
    ap.add_argument("--qk", type=float, default=1.0)
    ap.add_argument("--model-seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--min-lr-ratio", type=float, default=0.02)
    ap.add_argument("--hard", type=float, default=0.5)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--beta2", type=float, default=0.98)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--checks", type=int, default=6)
    ap.add_argument("--save")
    args = ap.parse_args()

    with threadpool_limits(limits=1, user_api="blas"):
        _alloc.keep_freed_memory()
        _alloc.warm_up_blas()
        splits = make_splits(TASK)
        if args.measure:
            minutes = args.minutes or 13.0
            for layers in args.layers:
                for d in args.d_model:
                    for b in args.batch:
                        s = step_time(model_opts(layers, d, args.heads, args.qk), b, splits=splits, hard=args.hard)
                        print(f"layers {layers} d_model {d:>3} batch {b:>3}: {s * 1000:6.1f} ms/step, "
                              f"{minutes * 60 / s:7.0f} steps in {minutes:g} min", flush=True)  # fmt: skip
            return 0

        if args.preset:
            from model_core.presets import PRESETS

            p = PRESETS[args.preset]
            opts, cfg = dict(p.model), p.train
        else:
            opts = model_opts(args.layers[0], args.d_model[0], args.heads, args.qk, args.model_seed)
            cfg = TrainConfig(steps=1000, batch_size=args.batch[0], lr=args.lr, warmup_steps=args.warmup,
                              min_lr_ratio=args.min_lr_ratio, hard_fraction=args.hard, weight_decay=args.wd,
                              beta2=args.beta2, eval_every=10**9)  # fmt: skip
        if args.steps:
            cfg = replace(cfg, steps=args.steps)
        elif args.minutes:
            s = step_time(opts, cfg.batch_size, splits=splits, hard=cfg.hard_fraction)
            cfg = replace(cfg, steps=int(args.minutes * 60 / s))
            print(f"{s * 1000:.1f} ms/step -> {cfg.steps} steps in {args.minutes:g} min", flush=True)
        every = max(1, cfg.steps // args.checks)
        cfg = replace(cfg, eval_every=max(every, cfg.steps))  # the trainer's own validation: start and end only
        print(f"model {opts}\ntrain {cfg}", flush=True)
        model = TaskModel.new(TASK, **opts)
        trainer = Trainer(model, cfg, splits=splits)
        trainer.validation = splits.val.sample(1, [0, 3])  # keep the trainer's (unused) validation cheap
        val = splits.val.sample(4000, [0, 2])
        spent = 0.0  # seconds of our own evaluations, taken off the training clock
        for event in trainer.run():
            step = event.step
            if isinstance(event, EvalMetrics) or step % every or step == cfg.steps:
                continue
            t0 = time.perf_counter()
            ev = model.evaluate(val)
            spent += time.perf_counter() - t0
            print(f"step {step:>6} {event.elapsed_s - spent:7.1f} s  loss {event.loss:.4f}  val {fmt(ev)}",
                  flush=True)  # fmt: skip
        r = trainer.result
        print(f"{r.message} training {r.wall_s - spent:.1f} s wall")
        t = r.test
        print(f"HELD-OUT {fmt(t)} | " + " ".join(f"len{k} {a:.2%}" for k, a in t["per_length"].items())
              + f" | n {t['n']} wrong {t['n'] - round(t['accuracy'] * t['n'])}")  # fmt: skip
        if args.save:
            from model_core.store import to_bytes

            to_bytes(model, Path(args.save))
    return 0


if __name__ == "__main__":
    sys.exit(main())
