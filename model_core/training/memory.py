"""How much memory a training job needs at its peak, estimated from its configuration before it starts.

`TrainingJob` refuses ("failed", with a message) a job whose estimate exceeds `MAX_JOB_BYTES`: the server
trains one job at a time (`queue`), and one job must not take the memory every user's session shares.

A job's peak is the larger of two moments, on top of its weights (every figure float32, 4 bytes):
  weights      parameters x 6: the weights, the step's gradients, the optimiser's gathered gradients and
               scratch buffer, and Adam's two moments (`optim`: one flat buffer each)
  a step       batch x tokens x layers x (8 d_model + 2 d_ff + 3 heads x tokens): each block keeps its input,
               Q, K, V, z, two LayerNorm outputs and the MLP's input (8 d_model), the MLP's pre- and
               post-activation (2 d_ff) and the attention pattern, plus the backward's score gradients (3 heads
               x tokens) until the backward is done
  an evaluation  up to EVAL_BATCH examples x tokens x the larger of (heads + 9) x d_model (attention: every
               head's write to the residual stream, [head, position, d_model], and the stream, Q, K, V, z) and
               6 d_model + 2.5 d_ff (the MLP); one block at a time, nothing kept for a backward
Those constants were measured, not derived: tracemalloc's peak of `loss_and_grads` plus an optimiser step, and
of `TaskModel.evaluate`, on 11 configurations of 1-4 blocks, 2-8 heads, d_model 64-256, d_ff 256-1,024 and
batches of 128-512 on the 0-99, 5-value task (20 tokens), then rounded. For models of 2 or more blocks the step's
estimate is 1.01-1.05 of its measured peak and the evaluation's 1.04-1.12; 1-block models are overestimated
(up to 2.4x and 5.4x: their only block runs its MLP at the answer positions only), which matters little: they
are small. Over whole jobs (`python benchmarks/training_memory.py`) the estimate is 1.04-1.12 of tracemalloc's
peak. RSS can be higher, up to 1.35x the estimate for the heaviest job: glibc keeps the step's freed heap for
reuse (`_alloc.keep_freed_memory`) while the evaluation maps its own.

The evaluation is the larger moment for most jobs: `TaskModel.evaluate` runs up to 4,096 examples at once,
8x the largest training batch, and keeps every head's write ([head, position, d_model]) for a moment. It is
what makes the heaviest jobs the limits allow (d_model 256, 8 heads, on 0-99 with 5 values) peak at about
1.42 GB of arrays (2.0 GB of RSS), whatever their batch: evaluating in batches of 1,024 would cut that
evaluation from 1.37 GB to 0.34 GB.
"""

from __future__ import annotations

from ..config import ModelConfig, TrainConfig
from ..limits import LimitError, count_params
from ..task import TaskConfig
from ..task.operations import MAX_ENUMERABLE

# The heaviest job the limits allow is estimated at 1.47 GB (measured 1.42 GB of arrays): everything allowed fits.
MAX_JOB_BYTES = 1_500_000_000
# The trainer's evaluation batch (passed to evaluate_with_loss and TaskModel.evaluate): at 4,096 the largest jobs
# peaked in evaluation (the largest model on 0-99 x 5 values near 1.45 GB, in a server whose processes together
# passed 2 GB); half of it puts their peak back in the training step, and lets nested tasks train larger models
EVAL_BATCH = 2048
TEST_FRACTION, N_EVAL = 0.2, 5_000  # make_splits' defaults: the test split is the largest one evaluated
FLOAT = 4  # bytes: the model trains in float32
WEIGHT_COPIES = 6  # weights, gradients, the optimiser's gathered gradients and scratch, Adam's m and v


def tokens_per_example(task: TaskConfig, model: ModelConfig) -> int:
    """The longest input the model is run on: a causal model reads all but the last token, a bidirectional
    one the expression up to `=`."""
    return task.seq_len - 1 if model.causal else task.input_len


def evaluation_batch(task: TaskConfig) -> int:
    """The most examples one evaluation pass runs at once: the test split's size (the largest split the trainer
    evaluates; see `make_splits`), at most EVAL_BATCH."""
    if task.nested or task.space_size > MAX_ENUMERABLE:  # hashed splits: capped, per length (and per depth)
        largest = N_EVAL * len(task.lengths) * (task.max_depth if task.nested else 1)
    else:
        largest = sum(round(TEST_FRACTION * size) for size in task.cell_sizes.tolist())
    return min(EVAL_BATCH, largest)


def estimate_job_bytes(task: TaskConfig, model: ModelConfig, train: TrainConfig) -> int:
    """The estimated peak bytes of a training job (see the module docstring)."""
    weights = count_params(model) * WEIGHT_COPIES
    return int(FLOAT * (weights + max(_activations(task, model, train))))


def _activations(task: TaskConfig, model: ModelConfig, train: TrainConfig) -> tuple[float, float]:
    """(a training step's activations, an evaluation pass's) in floats: the two candidates for the peak."""
    T, D, F, H, L = tokens_per_example(task, model), model.d_model, model.d_ff, model.n_heads, model.n_layers
    step = train.batch_size * T * L * (8 * D + 2 * F + 3 * H * T)
    evaluation = evaluation_batch(task) * T * max((H + 9) * D, 6 * D + 2.5 * F)
    return step, evaluation


def check_memory(task: TaskConfig, model: ModelConfig, train: TrainConfig) -> None:
    """LimitError if the job's estimated peak is over MAX_JOB_BYTES (read at each call, so it can be changed)."""
    need = estimate_job_bytes(task, model, train)
    if need > MAX_JOB_BYTES:
        step, evaluation = _activations(task, model, train)
        what = ("Use a smaller batch, fewer blocks, a smaller d_model or fewer heads." if step >= evaluation else
                f"Its peak is an evaluation pass ({evaluation_batch(task):,} expressions of up to "
                f"{tokens_per_example(task, model)} tokens at once), which the batch size does not change: use fewer "
                "blocks, a smaller d_model or fewer heads, or shorter expressions (fewer values, no nesting).")
        raise LimitError(
            f"This run would need about {need / 1e9:.2f} GB of memory at its peak; this server gives a run at "
            f"most {MAX_JOB_BYTES / 1e9:.2f} GB. {what}"
        )
