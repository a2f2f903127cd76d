"""Time to 100% validation accuracy with the Train page's defaults, headless (no Streamlit).

    python benchmarks/train_defaults.py          # stop at 100% validation accuracy, as the page does
    python benchmarks/train_defaults.py 800      # a fixed 800 steps (steps/s without early stop)

The settings are the Train page's defaults: `model_core.presets.train_page_defaults()`.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model_core import ModelConfig  # noqa: E402
from model_core.presets import train_page_defaults  # noqa: E402
from model_core.training.job import TrainingJob  # noqa: E402

preset = train_page_defaults()  # what the Train page starts from
task = preset.task.to_dict()
config = ModelConfig(**preset.model)
model = {k: getattr(config, k) for k in ("n_layers", "n_heads", "d_model", "d_ff", "causal", "norm", "seed")}
train = preset.train.to_dict() | (
    {"steps": int(sys.argv[1]), "stop_at_accuracy": None} if len(sys.argv) > 1 else {})
t0 = time.perf_counter()
job = TrainingJob(task, train, model, probe="Max ( 7 2 9 )")
job.start()
job.join()
s = job.snapshot()
wall = time.perf_counter() - t0
print(f"{s.status}: {s.message} | {s.steps_done} steps in {wall:.2f} s wall, {s.steps_per_s:.1f} steps/s")
