"""Time to 100% validation accuracy with the Train page's defaults, headless (no Streamlit).

    python benchmarks/train_defaults.py          # stop at 100% validation accuracy, as the page does
    python benchmarks/train_defaults.py 800      # a fixed 800 steps (steps/s without early stop)

The settings mirror the Train page's DEFAULTS (pages/train.py).
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model_core.training_job import TrainingJob  # noqa: E402

task = {"max_value": 9, "operations": ["First", "Second", "Last", "Max", "Min"], "n_args": 3}
model = {"n_layers": 2, "n_heads": 4, "d_model": 64, "d_ff": 256, "causal": False, "norm": "post", "seed": 0}
train = {
    "optimizer": "adamw",
    "lr": 0.003,
    "batch_size": 64,
    "steps": int(sys.argv[1]) if len(sys.argv) > 1 else 1000,
    "seed": 0,
    "warmup_steps": 50,
    "grad_clip": 1.0,
    "eval_every": 50,
    "stop_at_accuracy": None if len(sys.argv) > 1 else 1.0,
}
t0 = time.perf_counter()
job = TrainingJob(task, train, model, probe="Max ( 7 2 9 )")
job.start()
job.join()
s = job.snapshot()
wall = time.perf_counter() - t0
print(f"{s.status}: {s.message} | {s.steps_done} steps in {wall:.2f} s wall, {s.steps_per_s:.1f} steps/s")
