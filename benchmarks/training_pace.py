"""A training step's time against the Train page's expected pace (model_core/training/queue.py).

    python benchmarks/training_pace.py

Trains each configuration below in a worker process, as the Train page does, and times the steps after its
first three (evaluations and the early snapshots included, as a run's own pace counts them). Prints each one's
step work, its measured and expected milliseconds per step, and their ratio: the expected pace
(`PACE_OVERHEAD_S + PACE_PER_WORK_S x work`) was fitted to these figures on the machine this app is tuned for.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_core import TaskConfig, TrainConfig  # noqa: E402
from model_core.training.job import TrainingJob  # noqa: E402
from model_core.training.queue import expected_step_s, step_work  # noqa: E402

LARGEST = {"n_layers": 4, "n_heads": 8, "d_model": 256, "d_ff": 448, "causal": True}
CONFIGS = [  # name, task, model options, batch size, steps timed
    ("tiny", TaskConfig(), {"n_layers": 1, "n_heads": 2, "d_model": 16, "d_ff": 32}, 64, 300),
    ("default", TaskConfig(), {}, 64, 300),
    ("0-99 causal", TaskConfig(max_value=99), {"causal": True}, 64, 200),
    ("mid", TaskConfig(max_value=99, n_args=5), {"n_layers": 3, "n_heads": 4, "d_model": 128, "d_ff": 256,
                                                  "causal": True}, 128, 30),  # fmt: skip
    ("largest, batch 64", TaskConfig(max_value=99, n_args=5), LARGEST, 64, 30),
    ("largest, batch 512", TaskConfig(max_value=99, n_args=5), LARGEST, 512, 10),
]


def main() -> None:
    print(f"{'configuration':20s} {'work':>10s} {'measured':>12s} {'expected':>12s} {'ratio':>6s}")
    for name, task, model, batch, steps in CONFIGS:
        job = TrainingJob(task, TrainConfig(steps=400, batch_size=batch, eval_every=100), model)
        job.start()
        while job.snapshot().steps_done < 3 and not job.done:
            time.sleep(0.02)
        first, t0 = job.snapshot().steps_done, time.perf_counter()
        while job.snapshot().steps_done < first + steps and not job.done:
            time.sleep(0.02)
        done, t1 = job.snapshot().steps_done - first, time.perf_counter()
        job.stop()
        job.join(300)
        measured, expected = (t1 - t0) / done, expected_step_s(job)
        print(f"{name:20s} {step_work(job):10.3g} {measured * 1000:9.1f} ms {expected * 1000:9.1f} ms "
              f"{measured / expected:6.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
