"""Which learning rate each optimiser needs to train the Train page's default model (headless, no Streamlit).

    python benchmarks/optimizer_defaults.py                    # each optimiser at its default learning rate
    python benchmarks/optimizer_defaults.py sgd 0.01 0.03 0.1  # one optimiser at several learning rates
    SEEDS=0 python benchmarks/optimizer_defaults.py sgd 0.1    # seed 0 only

Everything else is the Train page's defaults (`model_core.presets.train_page_defaults()`: up to 1,000 steps, stop
at 100% validation accuracy). For each learning rate it trains seeds 0-2 and prints, per seed, the steps taken and
the held-out (test split) accuracy, then the median held-out accuracy.
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dataclasses import replace  # noqa: E402

from model_core import TaskModel  # noqa: E402
from model_core.presets import train_page_defaults  # noqa: E402
from model_core.training.trainer import Trainer  # noqa: E402

SEEDS = [int(s) for s in os.environ.get("SEEDS", "0,1,2").split(",")]
preset = train_page_defaults()
if len(sys.argv) > 2:
    runs = {sys.argv[1]: [float(a) for a in sys.argv[2:]]}
else:
    from model_core.presets import DEFAULT_LR

    runs = {name: [lr] for name, lr in DEFAULT_LR.items()}
for optimizer, lrs in runs.items():
    for lr in lrs:
        held_out = []
        for seed in SEEDS:
            model = TaskModel.new(preset.task, **preset.model, seed=seed)  # the page seeds model and batches alike
            cfg = replace(preset.train, optimizer=optimizer, lr=lr, seed=seed)
            trainer = Trainer(model, cfg)
            t0 = time.perf_counter()
            for _ in trainer.run():
                pass
            r = trainer.result
            held_out.append(r.test["accuracy"])
            print(f"{optimizer:6s} lr {lr:<7g} seed {seed}: {r.status:14s} {r.steps:5d} steps, held-out "
                  f"{r.test['accuracy']:.2%} ({time.perf_counter() - t0:.1f} s)", flush=True)
        print(f"{optimizer:6s} lr {lr:<7g} median held-out {statistics.median(held_out):.2%}", flush=True)
