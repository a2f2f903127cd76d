"""walkthrough: one trainer step and three first steps, against references written out here."""

from __future__ import annotations

import hashlib
import inspect
import math
import re
from dataclasses import replace

import numpy as np
import pytest

from model_core import TaskModel, load_model
from model_core.analysis import run_example
from model_core.config import TrainConfig
from model_core.task import make_splits
from model_core.training import walkthrough as wt
from model_core.training.optim import decays
from model_core.training.trainer import Trainer

EXAMPLES = {"digits-0-9": "Max ( 7 2 9 )", "digits-0-99": "Max ( 47 82 19 )"}


@pytest.fixture(scope="module", params=["digits-0-9", "digits-0-99"])
def shipped(request):
    model = load_model(request.param)
    for p in model.transformer.params.values():
        p.setflags(write=False)  # as the app serves it: any write would raise
    return model


@pytest.fixture(scope="module")
def fresh():
    """A freshly initialised model: large losses and gradients, so clipping acts and Adam's step is ±η."""
    return TaskModel.new(load_model("digits-0-9").task, "fresh", d_model=32, n_heads=2, n_layers=1, d_ff=64)


def checksum(model) -> str:
    h = hashlib.sha256()
    for name, p in model.transformer.params.items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(p).tobytes())
    return h.hexdigest()


def reference_batch(model, cfg, seed, batch_size):
    """The batch the trainer's sampler draws: its split (cfg.seed), a fresh rng (seed)."""
    exprs = make_splits(model.task, seed=cfg.seed).sample_train(batch_size, np.random.default_rng(seed))
    return exprs, model.encode(exprs)


def reference_lr(step: int, cfg: TrainConfig) -> float:
    """The schedule written out: linear warm-up to lr, then half a cosine to min_lr_ratio * lr at cfg.steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = min((step - cfg.warmup_steps) / (cfg.steps - cfg.warmup_steps), 1.0)
    low = cfg.min_lr_ratio * cfg.lr
    return low + (cfg.lr - low) * (1 + math.cos(math.pi * progress)) / 2


# ---------------------------------------------------------------- one step
@pytest.mark.parametrize("seed,step", [(0, 0), (3, 150)])
def test_one_step_against_the_trainers_own_functions(shipped, seed, step):
    model, cfg = shipped, shipped.train_config
    before = checksum(model)
    s = wt.one_step(model, cfg, seed, cfg.batch_size, step)
    assert checksum(model) == before
    exprs, batch = reference_batch(model, cfg, seed, cfg.batch_size)
    assert s.texts == [exprs.expression(i).text for i in range(len(exprs))]
    # the batch loss is Transformer.loss_and_grads on the same batch
    loss, grads, logits = model.transformer.loss_and_grads(batch.tokens, batch.targets)
    assert s.loss == loss
    np.testing.assert_array_equal(s.logits, logits)
    # per-example losses: minus the mean log-softmax of each expression's target tokens, row by row in float64
    targets = batch.targets
    for b in range(len(exprs)):
        rows = [r for r, (bb, _) in enumerate(zip(*np.nonzero(targets >= 0), strict=True)) if bb == b]
        tgt = targets[b][targets[b] >= 0]
        x = logits[rows].astype(np.float64)
        logp = x - (np.log(np.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1)) + x.max(axis=1))[:, None]
        assert s.token_counts[b] == len(tgt)
        assert s.example_losses[b] == pytest.approx(-logp[np.arange(len(tgt)), tgt].mean(), rel=1e-7)
        assert s.answer_tokens[b] == tuple(model.vocab.decode(tgt))
    # the batch loss is the token-weighted mean of the per-example ones (float32 loss: absolute tolerance)
    weighted = float((s.example_losses * s.token_counts).sum() / s.token_counts.sum())
    assert s.loss == pytest.approx(weighted, rel=1e-4, abs=2e-7)
    # clipping: the global norm, in float64 from the gradients
    norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))
    assert s.grad_norm == pytest.approx(norm, rel=1e-6)
    assert s.clipped_norm == pytest.approx(min(norm, cfg.grad_clip), rel=1e-5)
    assert s.lr == pytest.approx(reference_lr(step, cfg), rel=1e-12)
    # the update: AdamW's first step written out (m̂ = g, v̂ = g²), decay on W_* from the old weights
    scale = min(1.0, cfg.grad_clip / norm)
    for name, p in model.transformer.params.items():
        g = grads[name].astype(np.float64) * scale
        want = -s.lr * g / (np.abs(g) + 1e-8) - (s.lr * cfg.weight_decay * p if decays(name) else 0.0)
        # the float32 weights round the step (at the larger of the old and new weight), and float32 arithmetic the
        # update itself
        big = np.maximum(np.abs(p), np.abs(p + want)).astype(np.float32)
        tol = 2 * np.spacing(big).astype(np.float64) + 1e-6 * np.abs(want)
        assert np.all(np.abs(s.delta[name] - want) <= tol), name
    groups = {g.name: g for g in s.groups}
    assert sum(g.n for g in s.groups) == sum(p.size for p in model.transformer.params.values())
    att = np.concatenate([s.delta[n].reshape(-1) for n in model.transformer.params if n.startswith("blocks.0.attn.")])
    assert groups["block 0 attention"].rms == pytest.approx(np.sqrt(np.mean(att**2)), rel=1e-12)
    assert groups["block 0 attention"].max_abs == np.abs(att).max()
    # the loss after the update, on the same batch, from weights rebuilt here
    after = model.transformer.copy()
    for name in after.params:
        after.params[name] = (after.params[name].astype(np.float64) + s.delta[name]).astype(np.float32)
    assert s.loss_after == pytest.approx(after.loss_and_grads(batch.tokens, batch.targets)[0], rel=1e-6, abs=1e-9)


def test_clipping_acts_on_a_fresh_model(fresh):
    cfg = TrainConfig(steps=100, warmup_steps=10, grad_clip=0.05)
    s = wt.one_step(fresh, cfg, 0, 32, 20)
    _, batch = reference_batch(fresh, cfg, 0, 32)
    _, grads, _ = fresh.transformer.loss_and_grads(batch.tokens, batch.targets)
    norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))
    assert norm > 0.05 and s.grad_norm == pytest.approx(norm, rel=1e-6)
    assert s.clipped_norm == pytest.approx(0.05, rel=1e-5)
    text = wt.clip_sentence(s)
    assert f"{norm:.4g}, above the threshold 0.05" in text and f"= {0.05 / norm:.4g}" in text
    assert text.endswith(f"norm after clipping is {s.clipped_norm:.4g}.")
    off = wt.one_step(fresh, replace(cfg, grad_clip=0.0), 0, 32, 20)
    assert off.clipped_norm == pytest.approx(norm, rel=1e-6) and "Clipping is off" in wt.clip_sentence(off)


def test_batch_and_operation_sentences(shipped):
    cfg = shipped.train_config
    s = wt.one_step(shipped, cfg, 5, 40, 0)
    counts = {op: s.ops.count(op) for op in shipped.task.operations}
    assert max(counts.values()) - min(counts.values()) <= 1  # the sampler balances the operations
    means = {op: float(np.mean([loss for o, loss in zip(s.ops, s.example_losses, strict=True) if o == op]))
             for op in counts}  # fmt: skip
    top = max(means, key=means.get)
    text = wt.op_sentence(s)
    assert ", ".join(f"{op} {k}" for op, k in counts.items()) in text
    assert f"{top} has the highest mean loss per expression ({means[top]:.4g})" in text
    batch = wt.batch_sentence(s)
    assert f"all {s.token_counts.sum():,} answer tokens of the 40 expressions" in batch
    if shipped.causal:  # 0-99: answers of one or two digits and <eos>, so the token counts differ
        assert len(set(s.token_counts)) > 1 and "weighted by token count" in batch
    else:
        assert set(s.token_counts) == {1} and "one token each" in batch


def test_update_and_lr_sentences(shipped):
    cfg = shipped.train_config
    s0 = wt.one_step(shipped, cfg, 0, 16, 0)
    assert "exactly as at step 0 of a run" in wt.update_sentence(s0)
    s = wt.one_step(shipped, cfg, 0, 16, cfg.warmup_steps + 10)
    text = wt.update_sentence(s)
    assert f"of the {s.step:,} steps before" in text
    near = np.mean(np.concatenate([np.abs(np.abs(d.reshape(-1)) / s.lr - 1) <= 0.01 for d in s.delta.values()]))
    assert f"Here {wt.share_text(near)} of the {s.n_weights:,} weights" in text
    biggest = max(s.groups, key=lambda g: g.rms).name
    assert f"moved most per weight is {biggest}" in text
    assert ("fell" in text) == (s.loss_after < s.loss) and ("rose" in text) == (s.loss_after > s.loss)
    assert f"so η_t = {reference_lr(0, cfg):.4g}" in wt.lr_sentence(0, cfg) and "warm-up" in wt.lr_sentence(0, cfg)
    mid = (cfg.warmup_steps + cfg.steps) // 2
    assert f"{(mid - cfg.warmup_steps) / (cfg.steps - cfg.warmup_steps):.0%} of the way" in wt.lr_sentence(mid, cfg)
    assert "floor" in wt.lr_sentence(cfg.steps, cfg)
    assert "stays at η" in wt.lr_sentence(cfg.steps, replace(cfg, schedule="constant"))


# ---------------------------------------------------------------- three optimisers
def test_three_first_steps_follow_their_formulas(shipped):
    model, cfg = shipped, shipped.train_config
    run = run_example(model, EXAMPLES[model.task.max_value == 99 and "digits-0-99" or "digits-0-9"])
    before = checksum(model)
    lr = 0.003
    t = wt.three_optimizers(model, run.train_tokens, run.train_targets, lr, cfg)
    assert checksum(model) == before
    net = model.transformer.astype(np.float64)
    loss, grads, _ = net.loss_and_grads(run.train_tokens[None], run.train_targets[None])
    g = np.concatenate([grads[n].reshape(-1) for n in model.transformer.params])
    p = np.concatenate([net.params[n].reshape(-1) for n in model.transformer.params])
    tol = 4 * np.spacing(np.abs(p)) + 1e-300  # p + delta - p rounds at the weights' scale
    sgd, mom, adam = (t.by_name(n) for n in (wt.PLAIN, wt.MOMENTUM, wt.ADAM))
    assert np.all(np.abs(sgd.delta - (-lr * g)) <= tol)
    assert np.array_equal(sgd.delta, mom.delta)  # momentum buffer starts at 0: v1 = g
    b1, b2, eps = cfg.beta1, cfg.beta2, 1e-8
    m_hat, v_hat = (1 - b1) * g / (1 - b1), (1 - b2) * g**2 / (1 - b2)
    assert np.all(np.abs(adam.delta - (-lr * m_hat / (np.sqrt(v_hat) + eps))) <= tol + 1e-15)
    for s in t.steps:
        assert s.loss_before == pytest.approx(loss, rel=1e-12)
        stepped = model.transformer.astype(np.float64)
        flat = p + s.delta
        start = 0
        for name, arr in stepped.params.items():
            stepped.params[name] = flat[start : start + arr.size].reshape(arr.shape)
            start += arr.size
        want = stepped.loss_and_grads(run.train_tokens[None], run.train_targets[None])[0]
        assert s.loss_after == pytest.approx(want, rel=1e-10)
    # Adam's |delta| / eta: within 1% exactly where |g| >= 99 eps (up to rounding at the boundary)
    expected = np.mean(np.abs(g[g != 0]) >= 99 * eps)
    assert wt.near_lr_share(adam, lr) == pytest.approx(expected, abs=1e-3)
    text = wt.adam_sentence(t)
    share = wt.share_text(wt.near_lr_share(adam, lr))
    assert f"of the {np.count_nonzero(g):,} weights with a nonzero gradient ({share})" in text
    assert f"The other {g.size - np.count_nonzero(g):,} weights have a gradient of exactly 0" in text
    same = wt.same_first_step_sentence(t)
    assert "exactly the same first step" in same and "is 0)" in same
    ratio = adam.rms / sgd.rms
    assert f"Adam's update is {ratio:.3g} times as large as SGD's" in wt.compare_sentence(t)
    changes = wt.loss_change_sentence(t)
    for s in t.steps:
        if s.loss_after == s.loss_before:  # a confident model: the step is below the loss's float32 resolution
            assert f"{s.name} left it unchanged" in changes
            continue
        verb = "lowered" if s.loss_after < s.loss_before else "raised"
        assert f"{s.name} {verb} it by {abs(s.loss_after - s.loss_before):.3g}" in changes


def test_on_the_0_99_model_adams_first_step_is_not_eta():
    """The exposing case: the shipped causal model's gradient on its default example is below 99 eps almost
    everywhere, so Adam's first step is far from ±η there, and the sentence must say so, not assume it."""
    model = load_model("digits-0-99")
    run = run_example(model, "Max ( 47 82 19 )")
    t = wt.three_optimizers(model, run.train_tokens, run.train_targets, 0.003, model.train_config)
    adam = t.by_name(wt.ADAM)
    share = wt.near_lr_share(adam, 0.003)
    assert share < 0.5
    text = wt.adam_sentence(t)
    small = int(np.count_nonzero((adam.grad != 0) & (np.abs(adam.grad) < 99e-8)))
    assert f"{small:,} have |g| below 99 ε" in text and "most of this example's gradient is that small" in text
    assert f"({wt.share_text(share)}) moved by within 1% of η" in text
    assert wt.share_text(0.0004) == "under 0.1%" and wt.share_text(0.9996) == "over 99.9%"
    assert wt.share_text(0) == "0.0%"


def test_on_a_fresh_model_adams_first_step_is_eta(fresh):
    cfg = TrainConfig()
    run = run_example(fresh, "Min ( 4 8 1 )")
    t = wt.three_optimizers(fresh, run.train_tokens, run.train_targets, 0.01, cfg)
    adam = t.by_name(wt.ADAM)
    moved = np.abs(adam.delta[adam.grad != 0]) / 0.01
    assert np.mean(np.abs(moved - 1) <= 0.01) > 0.9  # the textbook case
    assert wt.near_lr_share(adam, 0.01) == np.mean(np.abs(moved - 1) <= 0.01)
    q = wt.ratio_quantiles(adam, 0.01)
    assert q[0.5] == pytest.approx(np.median(moved)) and q[1.0] <= 1.0
    centres, counts = wt.ratio_histogram(adam, 0.01)
    assert counts.sum() == np.count_nonzero(adam.delta) and centres[np.argmax(counts)] == pytest.approx(-0.25)


def test_sentences_on_unusual_numbers():
    """Branches the shipped models do not reach: different first steps, a gradient too large for Adam to win."""
    g = np.array([3.0, -2.0, 0.0])
    steps = [wt.OptimizerStep(wt.PLAIN, 1.0, 2.0, -0.1 * g, g), wt.OptimizerStep(wt.MOMENTUM, 1.0, 2.0, -0.2 * g, g),
             wt.OptimizerStep(wt.ADAM, 1.0, 0.5, -0.1 * np.sign(g), g)]  # fmt: skip
    t = wt.ThreeSteps(0.1, steps, 0.9, 0.9, 0.98, 1e-8, float(np.linalg.norm(g)), 1.0)
    assert "differ by up to 0.3" in wt.same_first_step_sentence(t)
    assert "SGD's update is" in wt.compare_sentence(t) and "this example's gradient is large" in wt.compare_sentence(t)
    changes = wt.loss_change_sentence(t)
    assert "plain SGD and SGD with momentum made it worse" in changes
    assert "above the recipe's threshold 1, so the trainer would have scaled it down to 1" in changes


def test_loop_markdown_names_the_real_functions():
    text = wt.loop_markdown(lambda s: f"`{s}`")
    assert re.findall(r"^\d+\.", text, flags=re.M) == [f"{i}." for i in range(1, 8)]
    src = inspect.getsource(Trainer.run)
    sample = "sample_batch(" if "sample_batch(" in src else "sample_train("  # a train_size run samples its subset
    calls = [sample, "loss_and_grads(", "clip_grad_norm(", "lr = lr_at(", "optimizer.step("]
    assert [src.index(c) for c in calls] == sorted(src.index(c) for c in calls)  # the order Trainer.run runs them
    for c in ["sample_train", "loss_and_grads", "clip_grad_norm", "lr_at", "optimizer.step"]:  # in the list's order
        assert c in text
    names = ["sample_train", "encode", "loss_and_grads", "clip_grad_norm", "lr_at", "optimizer.step"]
    assert [text.index(c) for c in names] == sorted(text.index(c) for c in names)
