"""Wall time for a preset to reach a held-out accuracy target, from scratch.

    python benchmarks/train_time.py --preset digits-0-9 --target 1.0 --seeds 0 1 2
    python benchmarks/train_time.py --preset digits-0-99 --target 0.995 --check-every 500

It trains with the preset's recipe and checks the held-out (test) split every
`--check-every` steps. The time of those checks is measurement, not training,
so it is subtracted; everything else (sampling, encoding, forward, backward,
optimiser, the trainer's own validation passes) counts. Prints one line per seed
(its step and training examples, steps x batch, which do not depend on the machine, and its wall time)
and the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_core import TaskModel, Trainer  # noqa: E402
from model_core.presets import PRESETS  # noqa: E402
from model_core.training.trainer import StepMetrics  # noqa: E402


def time_to_target(preset_name: str, target: float, seed: int, check_every: int, max_steps: int | None):
    preset = PRESETS[preset_name]
    cfg = preset.train if max_steps is None else replace(preset.train, steps=max_steps)
    model = TaskModel.new(preset.task, **(preset.model | {"seed": seed}))
    trainer = Trainer(model, cfg)
    measuring = 0.0
    start = time.perf_counter()
    for event in trainer.run():
        if isinstance(event, StepMetrics) and event.step % check_every == 0:
            t0 = time.perf_counter()
            acc = model.evaluate(trainer.splits.test)["accuracy"]
            measuring += time.perf_counter() - t0
            if acc >= target:
                return event.step, time.perf_counter() - start - measuring, acc
    return None, time.perf_counter() - start - measuring, model.evaluate(trainer.splits.test)["accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="digits-0-9", choices=sorted(PRESETS))
    ap.add_argument("--target", type=float, default=1.0, help="held-out accuracy to reach")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="model seeds")
    ap.add_argument("--check-every", type=int, default=25)
    ap.add_argument("--max-steps", type=int, default=None, help="override the preset's step budget")
    args = ap.parse_args()
    times, examples = [], []
    batch = PRESETS[args.preset].train.batch_size
    for seed in args.seeds:
        step, wall, acc = time_to_target(args.preset, args.target, seed, args.check_every, args.max_steps)
        if step is None:
            print(f"seed {seed}: did not reach {args.target:.2%} (held-out {acc:.2%}) in {wall:.1f} s")
        else:
            times.append(wall)
            examples.append(step * batch)
            print(f"seed {seed}: held-out {acc:.2%} at step {step} ({step * batch:,} examples), "
                  f"{wall:.2f} s of training")  # fmt: skip
    if times:
        print(f"median to {args.target:.2%} held-out ({args.preset}, batch {batch}): "
              f"{statistics.median(examples):,.0f} examples, {statistics.median(times):.2f} s "
              f"over {len(times)}/{len(args.seeds)} seeds")  # fmt: skip

if __name__ == "__main__":
    main()
