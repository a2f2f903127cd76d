"""What a training job costs the explainer's users of the same server process: in a thread, or in a worker process.

    python benchmarks/training_contention.py [--seconds 20] [--job small|default|largest]

The explainer's work for one action is a fresh `run_example` (the forward pass with its cache and the
gradients) on the shipped digits-0-99 model, in this process's main thread. It is timed back to back for
`--seconds`: with no training, then with one job training in a thread of this process
(EXPLAINER_TRAINING_IN=thread, as before worker processes), then with the job in a worker process (the default).
Prints each action's median, p95 and the actions per second, and the job's steps per second, all from one run.
One BLAS thread, as the server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_core import TaskConfig, TrainConfig, load_model  # noqa: E402
from model_core.analysis import run_example  # noqa: E402
from model_core.training import worker  # noqa: E402
from model_core.training.job import TrainingJob  # noqa: E402

JOBS = {  # (task, model options): the Train page's default, a small one, and the largest the limits allow
    "small": (TaskConfig(), {"n_layers": 1, "n_heads": 2, "d_model": 32, "d_ff": 64}),
    "default": (TaskConfig(), {}),
    "largest": (TaskConfig(max_value=99, n_args=5), {"n_layers": 4, "n_heads": 8, "d_model": 256, "d_ff": 448,
                                                     "causal": True}),  # fmt: skip
}


def actions(model, seconds: float, rng: np.random.Generator) -> list[float]:
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a, b, c = rng.integers(0, 100, 3)
        t0 = time.perf_counter()
        run_example(model, f"Max ( {a} {b} {c} )")
        times.append(time.perf_counter() - t0)
    return times


def measure(label: str, model, seconds: float, job_kind: str | None) -> None:
    job = None
    if job_kind is not None:
        os.environ[worker.ENV_VAR] = label
        task, options = JOBS[job_kind]
        job = TrainingJob(task, TrainConfig(steps=20_000, batch_size=64, eval_every=5_000), options)
        job.start()
        while job.snapshot().steps_done < 2 and not job.done:  # past its start-up (splits, the first snapshot)
            time.sleep(0.05)
    done0 = job.snapshot().steps_done if job else 0
    t0 = time.perf_counter()
    times = actions(model, seconds, np.random.default_rng(0))
    wall = time.perf_counter() - t0
    steps = (job.snapshot().steps_done - done0) / wall if job else 0.0
    if job:
        job.stop()
        job.join(60)
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    print(f"{label:>8}: action median {statistics.median(ms):7.1f} ms, p95 {p95:7.1f} ms, "
          f"{len(ms) / wall:5.1f} actions/s; job {steps:6.1f} steps/s", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--job", choices=sorted(JOBS), default="default")
    args = parser.parse_args()
    threadpool_limits(limits=1, user_api="blas")
    model = load_model("digits-0-99")
    actions(model, 1.0, np.random.default_rng(1))  # warm-up
    print(f"job: {args.job}; {args.seconds:g} s each; load average {os.getloadavg()[0]:.2f}")
    measure("no job", model, args.seconds, None)
    measure("thread", model, args.seconds, args.job)
    measure("process", model, args.seconds, args.job)


if __name__ == "__main__":
    main()
