"""Peak memory of training jobs, measured, against `model_core.training.memory.estimate_job_bytes`.

    python benchmarks/training_memory.py            # every config below, each in a fresh process (~7 min)
    python benchmarks/training_memory.py NAME       # one of them (what the loop runs)

For each config it prints, in MB (10**6 bytes):
  step     tracemalloc's peak over building the model and optimiser and 3 training steps (batch `batch`)
  eval     tracemalloc's peak of one validation pass (`TaskModel.evaluate`, batches of up to 4,096), above
           what was allocated before it
  job      tracemalloc's peak over a whole 3-step `TrainingJob` (splits, probe set, evaluations, mechanism)
  rss      the process's peak RSS growth over that job (VmHWM, after the imports and a BLAS warm-up)
  est      the estimate; est/job and est/rss, its ratio to each
NumPy reports its allocations to tracemalloc, so its figures are the arrays' bytes; RSS adds the allocator's
and BLAS's own. Each config runs in its own process so that one's peak RSS does not hide the next one's.
"""

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the server trains
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import numpy as np  # noqa: E402

from model_core import TaskConfig, TaskModel, TrainConfig, make_splits  # noqa: E402
from model_core.training import _alloc, memory  # noqa: E402
from model_core.training.job import TrainingJob  # noqa: E402
from model_core.training.optim import clip_grad_norm, make_optimizer  # noqa: E402

BIG_TASK = {"max_value": 99, "n_args": 5}  # the longest sequences the Train page allows (20 tokens)
CONFIGS = {  # name: (task, model, batch)
    "page default": ({}, {"n_layers": 2, "n_heads": 4, "d_model": 64, "d_ff": 256}, 64),
    "small 0-99": (BIG_TASK, {"n_layers": 1, "n_heads": 2, "d_model": 32, "d_ff": 64, "causal": True}, 128),
    "mid 0-99": (BIG_TASK, {"n_layers": 2, "n_heads": 4, "d_model": 128, "d_ff": 512, "causal": True}, 256),
    "wide ffn": (BIG_TASK, {"n_layers": 2, "n_heads": 2, "d_model": 64, "d_ff": 1024, "causal": True}, 512),
    "2x8 d256 ff1024": (BIG_TASK, {"n_layers": 2, "n_heads": 8, "d_model": 256, "d_ff": 1024, "causal": True}, 512),
    "4x8 d256 ff448": (BIG_TASK, {"n_layers": 4, "n_heads": 8, "d_model": 256, "d_ff": 448, "causal": True}, 512),
    "4x8 d256 ff448 b256": (BIG_TASK, {"n_layers": 4, "n_heads": 8, "d_model": 256, "d_ff": 448, "causal": True},
                            256),
}
MB = 1e6


def measure(name: str) -> None:
    task_d, model_d, batch = CONFIGS[name]
    task = TaskConfig(**task_d)
    _alloc.keep_freed_memory()  # what the Trainer sets: the process keeps its peak
    _alloc.warm_up_blas()
    # a training step: weights, gradients, optimiser state and one step's activations
    splits = make_splits(task)
    tracemalloc.start()
    model = TaskModel.new(task, **model_d)
    cfg = TrainConfig(batch_size=batch, steps=3)
    opt = make_optimizer(cfg, model.transformer.params)
    rng = np.random.default_rng(0)
    for _ in range(3):
        b = model.encode(splits.sample_train(batch, rng))
        _, grads, _ = model.transformer.loss_and_grads(b.tokens, b.targets)
        clip_grad_norm(grads, 1.0)
        opt.step(model.transformer.params, grads, 1e-3)
        del grads
    step = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    model.evaluate(splits.val)
    evaluate = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    del model, opt
    job = TrainingJob(task, TrainConfig(batch_size=batch, steps=3, eval_every=3), model_d)
    tracemalloc.start()
    run(job)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    est = memory.estimate_job_bytes(job.task, job.model_config, job.train)
    rss = float(subprocess.run([sys.executable, __file__, "--rss", name], check=True, capture_output=True,
                               text=True).stdout)
    params, tokens = memory.count_params(job.model_config), memory.tokens_per_example(task, job.model_config)
    print(f"{name:20s} step {step / MB:6.1f}  eval {evaluate / MB:6.1f}  job {traced / MB:6.1f}  rss {rss / MB:6.1f}"
          f"  est {est / MB:6.1f}  est/job {est / traced:4.2f}  est/rss {est / max(rss, 1):4.2f}"
          f"  ({params:,} params, T={tokens})")


def run(job: TrainingJob) -> None:
    assert job.status == "pending", job.message
    job.start()
    job.join()
    assert job.status == "finished", job.message


def measure_rss(name: str) -> None:
    """Print the peak RSS growth (bytes) of the job alone, in this fresh process, without tracemalloc."""
    task_d, model_d, batch = CONFIGS[name]
    _alloc.keep_freed_memory()
    _alloc.warm_up_blas()
    job = TrainingJob(TaskConfig(**task_d), TrainConfig(batch_size=batch, steps=3, eval_every=3), model_d)
    before = peak_rss()
    run(job)
    print(peak_rss() - before)


def peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM (ru_maxrss would carry over the parent's peak across exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rss"]:
        measure_rss(" ".join(sys.argv[2:]))
    elif len(sys.argv) > 1:
        measure(" ".join(sys.argv[1:]))
    else:
        for name in CONFIGS:
            subprocess.run([sys.executable, __file__, name], check=True)
