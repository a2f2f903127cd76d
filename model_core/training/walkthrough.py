"""One training step of the real trainer, taken apart for the "training loop" page, and what it says.

`one_step` runs `Trainer.run`'s loop body once, with the same functions in the same order (sample a batch with
`Splits.sample_train`, `Transformer.loss_and_grads`, `clip_grad_norm`, `lr_at`, the optimiser's `step`), on a
copy of the model's float32 parameters, and keeps every intermediate number. `three_optimizers` takes one first
step on one example with plain SGD, SGD with momentum and Adam (the classes in `optim`, on float64 copies).
The model passed in is never changed (a shipped model's arrays are read-only anyway).

The `*_sentence` functions write the page's sentences from those numbers (Markdown; the caller passes `code`,
e.g. `explainer.format.code`, for token names).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import layers as L
from ..config import TrainConfig
from ..model import Transformer
from ..presets import DEFAULT_LR
from ..task import TaskConfig, make_splits
from ..task_model import TaskModel
from .formulas import OPTIMIZER_NAMES
from .optim import SGD, Adam, clip_grad_norm, lr_at, make_optimizer

NEAR_ETA = 0.01  # Adam's first step: |delta| within 1% of eta counts as "about eta"
HIST_EDGES = np.arange(-16.0, 2.5, 0.5)  # log10(|delta| / eta) bins of the page's histogram


# ---------------------------------------------------------------- the loop, as the code runs it
LOOP_STEPS = (
    ("Sample a batch", "Splits.sample_train(batch_size, rng)",
     "B training expressions drawn with replacement from the training split, balanced across operations "
     "(each operation B // n_ops times, a few once more), shuffled"),
    ("Encode it", "TaskModel.encode", "token ids [B, T] and targets [B, T] (-1 where there is no loss)"),
    ("Forward and loss", "Transformer.loss_and_grads",
     "logits at the answer positions, and the cross-entropy averaged over every answer token of the batch"),
    ("Backward", "Transformer.loss_and_grads", "the gradient of that loss for every parameter"),
    ("Clip", "clip_grad_norm(grads, cfg.grad_clip)",
     "the global L2 norm of all the gradients together; above the threshold, every gradient is scaled down alike"),
    ("Learning rate", "lr_at(step, cfg)", "warm-up, then a cosine (or constant) schedule"),
    ("Update", "optimizer.step(params, grads, lr)", "SGD, Adam or AdamW, built by make_optimizer(cfg, params)"),
)  # fmt: skip


def _cells(task: TaskConfig) -> str:
    return f"the {len(task.cell_sizes)} cells of one operation and one length ({len(task.lengths)} lengths)"


def loop_markdown(code: Callable[[str], str], task: TaskConfig | None = None) -> str:
    """The steps of `Trainer.run`'s loop body as a numbered Markdown list, with the functions that do them.

    For lists of several lengths (`task`), the sampler balances cells (one operation at one length), not only
    the operations."""
    steps = LOOP_STEPS
    if task is not None and task.variable_length:
        what, fn, _ = LOOP_STEPS[0]
        sample = (f"B training expressions drawn with replacement from the training split, balanced across "
                  f"{_cells(task)} (each cell B // n_cells times, a few once more), so across operations and "
                  "lengths alike, shuffled")  # fmt: skip
        steps = ((what, fn, sample), *LOOP_STEPS[1:])
    return "\n".join(f"{i}. **{what}**: {code(fn)}: {does}." for i, (what, fn, does) in enumerate(steps, 1))


# ---------------------------------------------------------------- one step on one real batch
@dataclass(frozen=True)
class GroupUpdate:
    """How far one group of parameters moved in the step."""

    name: str  # "embeddings", "block 0 attention", ...
    n: int  # number of weights
    norm: float  # ||delta|| over the group
    rms: float  # sqrt(mean(delta^2))
    max_abs: float  # max |delta|


@dataclass(frozen=True)
class OneStep:
    """One pass of the trainer's loop body on one batch, and every number it made."""

    operations: tuple[str, ...]  # the task's operations, in its order
    step: int  # t: the schedule step whose learning rate was used (counted from 0, like the trainer's)
    seed: int  # the rng seed the batch was drawn with
    optimizer: str  # cfg.optimizer
    texts: list[str]  # [B] each expression
    ops: list[str]  # [B] its operation
    answer_tokens: list[tuple[str, ...]]  # [B] the tokens it is scored on (its targets)
    example_losses: np.ndarray  # [B] each expression's mean cross-entropy over its answer tokens (float64)
    token_counts: np.ndarray  # [B] how many answer tokens each has
    loss: float  # the batch loss as `loss_and_grads` returned it: the mean over all answer tokens
    grad_norm: float  # global L2 norm of the gradient before clipping (what `clip_grad_norm` returned)
    clipped_norm: float  # after clipping (measured again)
    clip: float  # cfg.grad_clip (0: off)
    lr: float  # lr_at(step, cfg)
    groups: list[GroupUpdate]  # the update's size per parameter group
    near_lr: float  # share of all weights whose |delta| is within 1% of lr
    n_weights: int
    n_small_grad: int  # weights whose (clipped) gradient is nonzero but below 99 eps (Adam's eps; 0 for SGD)
    n_zero_grad: int  # weights whose gradient is exactly 0
    loss_after: float  # the same batch's loss after the update
    logits: np.ndarray = field(repr=False)  # [answer tokens, vocab] as `loss_and_grads` returned them
    rows: tuple[np.ndarray, np.ndarray] = field(repr=False)  # (batch index, position) of each logits row
    delta: dict[str, np.ndarray] = field(repr=False, default_factory=dict)  # new - old, per parameter

    @property
    def batch_size(self) -> int:
        return len(self.texts)

    @property
    def n_tokens(self) -> int:
        return int(self.token_counts.sum())


def param_group(name: str) -> str:
    """The group a parameter belongs to on the page: embeddings, each block's attention / MLP / LayerNorms,
    the final LayerNorm, the unembedding."""
    block = re.match(r"blocks\.(\d+)\.(attn|mlp|ln1|ln2)\.", name)
    if block:
        part = {"attn": "attention", "mlp": "MLP"}.get(block.group(2), "LayerNorms")
        return f"block {block.group(1)} {part}"
    if name.startswith(("embed.", "pos_embed.")):
        return "embeddings"
    if name.startswith("ln_final."):
        return "final LayerNorm"
    return "unembedding"


def example_losses(logits: np.ndarray, targets: np.ndarray, batch_rows: np.ndarray, n: int):
    """([n] each expression's mean cross-entropy over its answer tokens, [n] its number of answer tokens).

    `logits` [rows, vocab] and `targets` [rows] are the scored rows; `batch_rows` [rows] says which expression
    each belongs to. Recomputed in float64 from the logits."""
    logp = L.log_softmax(logits.astype(np.float64))  # [rows, vocab]
    nll = -logp[np.arange(len(targets)), targets]  # [rows]
    counts = np.bincount(batch_rows, minlength=n)
    return np.bincount(batch_rows, weights=nll, minlength=n) / np.maximum(counts, 1), counts


def share_text(x: float) -> str:
    """A share as a percentage with one decimal that never shows 0.0% or 100.0% for a share that is not."""
    if 0 < x < 0.001:
        return "under 0.1%"
    if 0.999 < x < 1:
        return "over 99.9%"
    return f"{x:.1%}"


def _global_norm(grads: dict[str, np.ndarray]) -> float:
    return math.sqrt(sum(float(np.vdot(g.astype(np.float64), g.astype(np.float64))) for g in grads.values()))


def _loss(net: Transformer, tokens: np.ndarray, targets: np.ndarray) -> float:
    """The mean cross-entropy over the answer tokens, as `loss_and_grads` computes it, without the backward."""
    rows = np.nonzero(targets >= 0)
    return float(L.cross_entropy(net.forward(tokens, rows), targets[rows])[0])


def one_step(model: TaskModel, cfg: TrainConfig, seed: int, batch_size: int, step: int = 0) -> OneStep:
    """The trainer's loop body once, on a batch drawn with `seed` from the training split of `cfg.seed` (the
    split the trainer uses), at the learning rate the schedule gives step `step`, with a fresh optimiser.

    Works on a float32 copy of `model`'s parameters (the trainer's own arithmetic); `model` is not changed."""
    splits = make_splits(model.task, seed=cfg.seed)
    rng = np.random.default_rng(seed)
    exprs = splits.sample_train(batch_size, rng)
    batch = model.encode(exprs)
    net = model.transformer.copy()
    before = {n: p.copy() for n, p in net.params.items()}
    loss, grads, logits = net.loss_and_grads(batch.tokens, batch.targets)
    norm = clip_grad_norm(grads, cfg.grad_clip)  # scales `grads` in place, returns the norm before
    clipped = _global_norm(grads)
    lr = lr_at(step, cfg)
    optimizer = make_optimizer(cfg, net.params)  # re-homes net.params into its flat buffer (same values)
    g_abs = np.abs(np.concatenate([grads[n].reshape(-1) for n in before]))  # [P] what the optimiser steps along
    eps = getattr(optimizer, "eps", None)
    small = int(np.count_nonzero((g_abs > 0) & (g_abs < 99 * eps))) if eps is not None else 0
    optimizer.step(net.params, grads, lr)
    delta = {n: net.params[n].astype(np.float64) - before[n].astype(np.float64) for n in before}

    rows = np.nonzero(batch.targets >= 0)  # the order of `logits`' rows: by expression, then position
    losses, counts = example_losses(logits, batch.targets[rows], rows[0], len(exprs))
    vocab = model.vocab
    answers = [tuple(vocab.decode(t[t >= 0])) for t in batch.targets]
    groups: dict[str, list[np.ndarray]] = {}
    for n, d in delta.items():
        groups.setdefault(param_group(n), []).append(d.reshape(-1))
    sizes = []
    for g, parts in groups.items():
        d = np.concatenate(parts)
        sizes.append(GroupUpdate(g, d.size, float(np.linalg.norm(d)), float(np.sqrt(np.mean(d**2))),
                                 float(np.abs(d).max())))  # fmt: skip
    flat = np.abs(np.concatenate([d.reshape(-1) for d in delta.values()]))
    near = float(np.mean(np.abs(flat / lr - 1) <= NEAR_ETA)) if lr > 0 else 0.0
    return OneStep(
        tuple(model.task.operations), step, seed, cfg.optimizer, [exprs.expression(i).text for i in range(len(exprs))],
        [model.task.operations[o] for o in exprs.ops], answers, losses, counts, float(loss), float(norm), clipped,
        cfg.grad_clip, lr, sizes, near, g_abs.size, small, int(np.count_nonzero(g_abs == 0)),
        _loss(net, batch.tokens, batch.targets), logits, rows, delta,
    )  # fmt: skip


def op_losses(s: OneStep) -> dict[str, tuple[float, int]]:
    """{operation: (mean per-expression loss, number of its expressions)} in this batch, in first-seen order."""
    out = {}
    for op in [o for o in s.operations if o in s.ops]:
        mine = s.example_losses[[o == op for o in s.ops]]
        out[op] = (float(mine.mean()), len(mine))
    return out


def batch_sentence(s: OneStep) -> str:
    """What the batch loss is: the mean over all answer tokens, and how that weighs the expressions."""
    n, b = s.n_tokens, s.batch_size
    text = f"The batch loss {s.loss:.4g} is the mean cross-entropy over all {n:,} answer tokens of the {b} expressions"
    if (s.token_counts == s.token_counts[0]).all():
        k = int(s.token_counts[0])
        if k == 1:
            return text + " (one token each): the plain mean of the per-expression losses in the table."
        return text + f" ({k} tokens each), so also the plain mean of the per-expression losses in the table."
    counts = sorted({int(c) for c in s.token_counts})
    return (text + f": expressions have {', '.join(map(str, counts[:-1]))} or {counts[-1]} answer tokens, so each "
            "per-expression loss in the table counts in proportion to its tokens (the batch loss is their mean "
            "weighted by token count, not their plain mean "
            f"{float(s.example_losses.mean()):.4g}).")  # fmt: skip


def op_sentence(s: OneStep, task: TaskConfig | None = None) -> str:
    """Which operation has the highest (and lowest) mean loss in this batch, and how many of each it holds
    (for lists of several lengths, `task`, the sampler balanced cells, so the operations come out near even)."""
    per = op_losses(s)
    counts = ", ".join(f"{op} {k}" for op, (_, k) in per.items())
    if task is not None and task.variable_length:
        text = f"The sampler balanced {_cells(task)}, so the operations come out near even ({counts}). "
    else:
        text = f"The sampler balanced the operations ({counts}). "
    if len(per) == 1:
        (op, (mean, _)), = per.items()
        return text + f"Every expression is {op}; their mean loss is {mean:.4g}."
    values = np.array([m for m, _ in per.values()])
    top = [op for op, (m, _) in per.items() if m == values.max()]
    low = [op for op, (m, _) in per.items() if m == values.min()]
    if len(top) == len(per):
        return text + f"Every operation has the same mean loss here, {values.max():.4g}."
    text += (f"In this batch {' and '.join(top)} {'has' if len(top) == 1 else 'share'} the highest mean loss per "
             f"expression ({values.max():.4g}); {' and '.join(low)} the lowest ({values.min():.4g}).")  # fmt: skip
    return text


def clip_sentence(s: OneStep) -> str:
    """What clipping did to this batch's gradient."""
    if s.clip <= 0:
        return f"Clipping is off in this recipe: the gradient keeps its norm {s.grad_norm:.4g}."
    if s.grad_norm > s.clip:
        return (f"The gradient's global norm is {s.grad_norm:.4g}, above the threshold {s.clip:g}: every gradient "
                f"is multiplied by {s.clip:g} / {s.grad_norm:.4g} = {s.clip / s.grad_norm:.4g}, so the norm after "
                f"clipping is {s.clipped_norm:.4g}.")  # fmt: skip
    return (f"The gradient's global norm is {s.grad_norm:.4g}, at or below the threshold {s.clip:g}: clipping leaves "
            f"it as it is (after: {s.clipped_norm:.4g}).")  # fmt: skip


def lr_sentence(step: int, cfg: TrainConfig) -> str:
    """Which part of the schedule step `step` is in, and the learning rate it gets."""
    lr = lr_at(step, cfg)
    if step < cfg.warmup_steps:
        where = (f"in the warm-up (steps 0 to {cfg.warmup_steps - 1:,}), where η_t = η × (t + 1) / {cfg.warmup_steps:,}"
                 f" = η × {step + 1:,} / {cfg.warmup_steps:,}")
    elif cfg.schedule == "constant":
        where = "after the warm-up, where this schedule stays at η"
    elif step >= cfg.steps:
        where = f"at the end of the schedule ({cfg.steps:,} steps), where it stays at the floor {cfg.min_lr_ratio:g} η"
    else:
        span = cfg.steps - cfg.warmup_steps
        where = f"{(step - cfg.warmup_steps) / span:.0%} of the way along the cosine from η to {cfg.min_lr_ratio:g} η"
    return f"At step {step:,} the schedule is {where}, so η_t = {lr:.4g} (η = {cfg.lr:g})."


def update_sentence(s: OneStep) -> str:
    """How big the update was, which group moved most, and what it did to this batch's loss."""
    name = OPTIMIZER_NAMES.get(s.optimizer, s.optimizer)
    big = max(s.groups, key=lambda g: g.rms)
    text = f"The optimiser is {name}, built fresh here: its state starts at zero, "
    if s.step == 0:
        text += "exactly as at step 0 of a run. "
    else:
        text += (f"as at the first step of a run (at step {s.step:,} of a real run it would also carry the running "
                 f"averages of the {s.step:,} steps before). ")  # fmt: skip
    if s.optimizer in ("adam", "adamw"):
        text += (f"On a first step Adam moves each weight by η_t g / (|g| + ε): about η_t wherever |g| is well above "
                 f"ε. Here {share_text(s.near_lr)} of the {s.n_weights:,} weights moved by within 1% of "
                 f"η_t = {s.lr:.4g}")
        if s.n_small_grad:
            text += (f"; {s.n_small_grad:,} have a gradient below 99 ε, too small beside ε to move by that much"
                     + (f" (most of this batch's gradient is that small: its loss is only {s.loss:.3g})"
                        if s.n_small_grad > s.n_weights / 2 else ""))  # fmt: skip
        if s.n_zero_grad:
            text += f"; {s.n_zero_grad:,} have a gradient of exactly 0"
        text += ". "
    text += f"The group that moved most per weight is {big.name} (RMS {big.rms:.3g}). "
    change = s.loss_after - s.loss
    if change < 0:
        text += f"On this same batch the loss fell by {-change:.3g}, from {s.loss:.6g} to {s.loss_after:.6g}."
    elif change > 0:
        text += (f"On this same batch the loss rose by {change:.3g}, from {s.loss:.6g} to {s.loss_after:.6g}: at "
                 f"η_t = {s.lr:.4g} this step made the very batch it was computed from worse.")  # fmt: skip
    else:
        text += f"On this same batch the loss did not change ({s.loss:.6g})."
    return text


# ---------------------------------------------------------------- one first step, three optimisers
@dataclass(frozen=True)
class OptimizerStep:
    """One first step of one optimiser on one example (float64), and how far it moved the weights."""

    name: str
    loss_before: float
    loss_after: float
    delta: np.ndarray = field(repr=False)  # [P] new - old over every weight, in `Transformer.params` order
    grad: np.ndarray = field(repr=False)  # [P] the gradient it stepped along

    @property
    def max_abs(self) -> float:
        return float(np.abs(self.delta).max())

    @property
    def rms(self) -> float:
        return float(np.sqrt(np.mean(self.delta**2)))


@dataclass(frozen=True)
class ThreeSteps:
    lr: float
    steps: list[OptimizerStep]  # plain SGD, SGD with momentum, Adam
    momentum: float
    beta1: float
    beta2: float
    eps: float
    grad_norm: float  # of this example's gradient (no clipping here)
    clip: float  # the recipe's threshold, to say whether the trainer would have clipped

    def by_name(self, name: str) -> OptimizerStep:
        return next(s for s in self.steps if s.name == name)

    @property
    def n_nonzero(self) -> int:
        return int(np.count_nonzero(self.steps[0].grad))

    @property
    def n_weights(self) -> int:
        return self.steps[0].grad.size


PLAIN, MOMENTUM, ADAM = "plain SGD", "SGD with momentum", "Adam"


def three_optimizers(model: TaskModel, tokens: np.ndarray, targets: np.ndarray, lr: float,
                     cfg: TrainConfig) -> ThreeSteps:  # fmt: skip
    """One first step on one teacher-forced example (`tokens`, `targets` [T]) with plain SGD (momentum 0), SGD with
    `cfg.momentum` and Adam (`cfg.beta1`, `cfg.beta2`), each from a fresh float64 copy of `model`, all at `lr`.
    The gradient is not clipped. `model` is not changed."""
    tokens, targets = tokens[None], targets[None]
    made = {PLAIN: lambda p: SGD(p, momentum=0.0), MOMENTUM: lambda p: SGD(p, momentum=cfg.momentum),
            ADAM: lambda p: Adam(p, beta1=cfg.beta1, beta2=cfg.beta2)}  # fmt: skip
    steps, eps, norm = [], 0.0, 0.0
    for name, make in made.items():
        net = model.transformer.astype(np.float64)  # a copy: float32 -> float64 is exact
        old = np.concatenate([p.reshape(-1) for p in net.params.values()])
        loss, grads, _ = net.loss_and_grads(tokens, targets)
        opt = make(net.params)
        eps = getattr(opt, "eps", eps)
        opt.step(net.params, grads, lr)
        new = np.concatenate([net.params[n].reshape(-1) for n in model.transformer.params])
        grad = np.concatenate([grads[n].reshape(-1) for n in model.transformer.params])
        norm = float(np.linalg.norm(grad))
        steps.append(OptimizerStep(name, float(loss), _loss(net, tokens, targets), new - old, grad))
    return ThreeSteps(lr, steps, cfg.momentum, cfg.beta1, cfg.beta2, eps, norm, cfg.grad_clip)


def ratio_quantiles(s: OptimizerStep, lr: float, qs=(0.5, 0.9, 0.99, 1.0)) -> dict[float, float]:
    """Quantiles of |delta| / lr over the weights with a nonzero gradient."""
    ratio = np.abs(s.delta[s.grad != 0]) / lr
    return {q: float(np.quantile(ratio, q)) for q in qs} if ratio.size else {}


def ratio_histogram(s: OptimizerStep, lr: float) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres of log10(|delta| / lr) [k], counts [k]) over the weights that moved."""
    moved = np.abs(s.delta[s.delta != 0]) / lr
    logs = np.clip(np.log10(moved), HIST_EDGES[0], HIST_EDGES[-1] - 1e-9)  # extremes land in the end bins
    counts, _ = np.histogram(logs, HIST_EDGES)
    return (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2, counts


def near_lr_share(s: OptimizerStep, lr: float) -> float:
    """Share of the weights with a nonzero gradient whose |delta| is within 1% of lr."""
    moved = np.abs(s.delta[s.grad != 0])
    return float(np.mean(np.abs(moved / lr - 1) <= NEAR_ETA)) if moved.size else 0.0


def same_first_step_sentence(t: ThreeSteps) -> str:
    """Whether plain SGD and SGD with momentum made the same first step, measured."""
    diff = float(np.abs(t.by_name(PLAIN).delta - t.by_name(MOMENTUM).delta).max())
    m = f"{t.momentum:g}"
    if diff == 0:
        return (f"Plain SGD and SGD with momentum {m} made exactly the same first step (the largest difference between "
                f"their updates is 0): the momentum buffer starts at zero, so v₁ = {m} · 0 + g = g, and both move "
                "each weight by η g. They part from the second step on, when v starts to carry past "
                "gradients.")  # fmt: skip
    return (f"Plain SGD and SGD with momentum {m} differ by up to {diff:.3g} on this first step, though the momentum "
            "buffer starts at zero.")  # fmt: skip


def adam_sentence(t: ThreeSteps) -> str:
    """How close Adam's first step is to ±η on every weight with a gradient, measured."""
    adam = t.by_name(ADAM)
    share = near_lr_share(adam, t.lr)
    zero = t.n_weights - t.n_nonzero
    # |delta| = lr |g| / (|g| + eps) is within 1% of lr exactly when |g| >= 99 eps
    small = int(np.count_nonzero((adam.grad != 0) & (np.abs(adam.grad) < 99 * t.eps)))
    near = int(round(share * t.n_nonzero))
    text = (f"Adam's first step: m̂₁ = g and v̂₁ = g², so each weight moves by η g / (|g| + ε) with ε = {t.eps:g}: "
            f"about ±η whatever the size of g, as long as |g| is well above ε. Measured: {near:,} of the "
            f"{t.n_nonzero:,} weights with a nonzero gradient ({share_text(share)}) moved by within 1% of η = {t.lr:g}")
    if small:
        text += (f"; {small:,} have |g| below 99 ε = {99 * t.eps:.3g}, where ε is no longer small beside |g|, so they "
                 "move by less")  # fmt: skip
        if small > t.n_nonzero / 2:
            text += f" (most of this example's gradient is that small: its loss is only {adam.loss_before:.3g})"
    text += "."
    if zero:
        text += (f" The other {zero:,} weights have a gradient of exactly 0 on this example (for instance the "
                 "embeddings of tokens it does not contain) and do not move.")  # fmt: skip
    return text


def compare_sentence(t: ThreeSteps) -> str:
    """How Adam's update compares with SGD's at the same η, and what that means for the learning rate."""
    sgd, adam = t.by_name(PLAIN), t.by_name(ADAM)
    if sgd.rms == 0:
        return "The gradient is 0 on every weight: no optimiser moves anything."
    ratio = adam.rms / sgd.rms
    g_rms = float(np.sqrt(np.mean(sgd.grad**2)))
    sizes = f"SGD moves each weight by η |g| (RMS of g over all weights: {g_rms:.3g}), Adam by about η"
    if ratio > 1:
        return (f"At the same η, Adam's update is {ratio:.3g} times as large as SGD's (RMS over all weights): {sizes}. "
                "That is why Adam needs a much smaller η than SGD: the Train page starts Adam at "
                f"η = {DEFAULT_LR['adam']:g} and SGD at {DEFAULT_LR['sgd']:g}.")  # fmt: skip
    return (f"At the same η, SGD's update is {1 / ratio:.3g} times as large as Adam's here (RMS over all weights): "
            f"{sizes}, and this example's gradient is large. (The Train page starts Adam at η = "
            f"{DEFAULT_LR['adam']:g} and SGD at {DEFAULT_LR['sgd']:g}: on most batches the gradient is far below 1 per "
            "weight.)")  # fmt: skip


def loss_change_sentence(t: ThreeSteps) -> str:
    """What each first step did to this example's loss."""
    parts = []
    for s in t.steps:
        change = s.loss_after - s.loss_before
        if change:
            parts.append(f"{s.name} {'lowered' if change < 0 else 'raised'} it by {abs(change):.3g} to "
                         f"{s.loss_after:.6g}")  # fmt: skip
        else:
            parts.append(f"{s.name} left it unchanged")
    rose = [s.name for s in t.steps if s.loss_after > s.loss_before]
    text = f"Before the step this example's loss is {t.steps[0].loss_before:.6g}; {'; '.join(parts)}."
    if rose:
        text += (f" At η = {t.lr:g}, {' and '.join(rose)} made it worse: each of these first steps points downhill "
                 "(against the sign of every weight's gradient), so a small enough η lowers the loss.")  # fmt: skip
    if t.clip > 0:
        verdict = (f"above the recipe's threshold {t.clip:g}, so the trainer would have scaled it down to {t.clip:g}"
                   if t.grad_norm > t.clip else f"at or below the recipe's threshold {t.clip:g}, so the trainer "
                   "would not have clipped it either")  # fmt: skip
        text += f" The gradient is used unclipped here; its norm is {t.grad_norm:.4g}, {verdict}."
    return text
