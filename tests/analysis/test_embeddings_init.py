"""Where training started (model_core.analysis.embeddings): the initialisation reproduced from a model's recorded
config and seed, the rows no gradient reaches, how far W_E moved, and the sentences the Tokens page builds from them.

References are independent of the code under test: the arrays a real training run started from (copied before its
first step), the float32 weight-decay shrink replayed step by step with the trainer's own schedule, the model's
own gradients, a direct draw from the seed, and norms written out in NumPy.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from model_core import (
    ExpressionSet,
    TaskConfig,
    TaskModel,
    TrainConfig,
    Trainer,
    Transformer,
    enumerate_all,
    load_model,
)
from model_core.analysis import embeddings as emb
from model_core.params import init_params
from model_core.store import from_checkpoint, to_bytes
from model_core.task.vocab import DEFAULT_VOCAB
from model_core.training.optim import lr_at

TINY = dict(d_model=16, n_heads=2, n_layers=1, d_ff=32)


@pytest.fixture(scope="module")
def shipped():
    return {name: load_model(name) for name in ("digits-0-9", "digits-0-99")}


@pytest.fixture(scope="module")
def trained_causal():
    """A tiny causal learned-position model on 0-99, seed 7, trained 12 steps: (the model reloaded from its
    checkpoint, a copy of the parameters its training started from)."""
    model = TaskModel.new(TaskConfig(max_value=99), name="t", causal=True, norm="pre", positional="learned",
                          seed=7, **TINY)  # fmt: skip
    start = {k: v.copy() for k, v in model.transformer.params.items()}
    train = TrainConfig(steps=12, batch_size=16, lr=1e-2, warmup_steps=3, eval_every=12, weight_decay=0.05)
    for _ in Trainer(model, train).run():
        pass
    return from_checkpoint(to_bytes(model)), start  # the page sees what the checkpoint records


def replay_decay(rows: np.ndarray, train: TrainConfig, steps: int) -> np.ndarray:
    """Rows with a zero gradient after `steps` AdamW steps: multiplied in float32 by 1 - lr_t * wd each step, as
    the optimiser does (Adam's own update of a zero gradient is exactly 0)."""
    out = rows.astype(np.float32).copy()
    for s in range(steps):
        out *= 1.0 - lr_at(s, train) * train.weight_decay
    return out


# ================================================================ the initialisation is reproduced exactly
def test_recorded_seed_reproduces_where_training_started(trained_causal):
    model, start = trained_causal
    change = emb.embedding_change(model)
    np.testing.assert_array_equal(change.init, start["embed.W_E"])
    np.testing.assert_array_equal(change.pos_init, start["pos_embed.W_pos"])
    again = init_params(model.transformer.cfg)  # every parameter, not only the two tables
    assert set(again) == set(start)
    for name in start:
        np.testing.assert_array_equal(again[name], start[name], err_msg=name)
    assert not np.array_equal(model.transformer.params["embed.W_E"], start["embed.W_E"])  # it did train
    assert change.check.reproduced and change.check.seed == 7


def test_w_e_init_is_the_first_draw_from_the_seed(shipped):
    """W_E is the first parameter drawn: N(0, 1) from default_rng(seed), cast to float32."""
    for model in shipped.values():
        cfg = model.transformer.cfg
        direct = np.random.default_rng(cfg.seed).normal(0.0, 1.0, (cfg.vocab_size, cfg.d_model)).astype(np.float32)
        np.testing.assert_array_equal(emb.embedding_change(model).init, direct)


def test_untouched_rows_are_the_decayed_init_exactly(trained_causal):
    model, start = trained_causal
    train, steps = model.train_config, model.metrics["steps"]
    untouched = ~emb.trained_tokens(model.task, model.vocab)
    n = emb.trained_positions(model.task, causal=True)
    W, P = model.transformer.params["embed.W_E"], model.transformer.params["pos_embed.W_pos"]
    np.testing.assert_array_equal(W[untouched], replay_decay(start["embed.W_E"][untouched], train, steps))
    np.testing.assert_array_equal(P[n:], replay_decay(start["pos_embed.W_pos"][n:], train, steps))
    assert not np.array_equal(P[n - 1], replay_decay(start["pos_embed.W_pos"][n - 1 : n], train, steps)[0])
    check = emb.embedding_change(model).check
    assert check.scale == pytest.approx(float(np.prod([1 - lr_at(s, train) * 0.05 for s in range(steps)])), abs=1e-6)
    assert check.expected_scale == pytest.approx(check.scale, abs=1e-6)


@pytest.mark.parametrize("name", ["digits-0-9", "digits-0-99"])
def test_shipped_models_started_from_their_recorded_seed(shipped, name):
    """Seed 0 of each shipped model's config gives rows that, decayed by its recipe, are its untouched rows bit
    for bit: its training started there. The rows training reads are not."""
    model = shipped[name]
    cfg, train, steps = model.transformer.cfg, model.train_config, model.metrics["steps"]
    start = init_params(cfg)
    untouched = ~emb.trained_tokens(model.task, model.vocab)
    assert [t for t, u in zip(model.vocab.tokens, untouched, strict=True) if u] == ["<pad>", "<eos>"]
    W = model.transformer.params["embed.W_E"]
    np.testing.assert_array_equal(W[untouched], replay_decay(start["embed.W_E"][untouched], train, steps))
    assert not np.any(np.all(W[~untouched] == replay_decay(start["embed.W_E"][~untouched], train, steps), axis=1))
    if cfg.positional == "learned":
        n = emb.trained_positions(model.task, cfg.causal)
        assert n == 14  # `Max ( 4 7 , 8 2 , 1 9 ) = 8 2`: <eos> is never an input
        P = model.transformer.params["pos_embed.W_pos"]
        np.testing.assert_array_equal(P[n:], replay_decay(start["pos_embed.W_pos"][n:], train, steps))
        assert not np.any(np.all(P[:n] == replay_decay(start["pos_embed.W_pos"][:n], train, steps), axis=1))
    check = emb.embedding_change(model).check
    assert check.reproduced and check.error < 1e-4
    assert check.expected_scale == pytest.approx(check.scale, abs=1e-5)


def test_another_seed_is_not_reproduced(shipped):
    model = shipped["digits-0-9"]
    net = model.transformer
    other = model.with_transformer(Transformer(replace(net.cfg, seed=1), net.params))
    check = emb.embedding_change(other).check
    assert check.rows == 2 and not check.reproduced and check.error > 0.1
    text = emb.start_text(emb.embedding_change(other))
    assert "seed 1" in text and "did not start from that initialisation" in text and "cannot be computed" in text


# ================================================================ which rows training reads, against the data
def batch_grads(model: TaskModel, exprs):
    batch = model.encode(exprs)
    _, grads, _ = model.transformer.loss_and_grads(batch.tokens, batch.targets)
    return batch, grads


def longest_examples(task: TaskConfig, n: int = 64):
    """Expressions whose values and answer all have the most digits, every operation, plus random ones."""
    rng = np.random.default_rng(0)
    top = 10 ** (task.max_answer_digits - 1)
    values = rng.integers(max(top, task.min_value), task.max_value + 1, (n, task.n_args))
    values[n // 2 :] = rng.integers(task.min_value, task.max_value + 1, (n - n // 2, task.n_args))
    return ExpressionSet(task, np.arange(n) % len(task.operations), values)


@pytest.mark.parametrize("causal, task", [
    (True, TaskConfig(max_value=99)),
    (False, TaskConfig()),
    (False, TaskConfig(operations=("Max", "Last"), min_value=3, max_value=7, n_args=2)),
    (True, TaskConfig(operations=("First",), min_value=10, max_value=20, n_args=1)),
])  # fmt: skip
def test_trained_tokens_and_positions_match_the_data_and_the_gradients(causal, task):
    model = TaskModel.new(task, causal=causal, positional="learned", norm="pre", seed=2, **TINY)
    exprs = enumerate_all(task) if task.space_size <= 5000 else longest_examples(task)
    batch, grads = batch_grads(model, exprs)
    n = emb.trained_positions(task, causal)
    assert batch.tokens.shape[1] == n  # the longest input the data holds
    g_pos = grads["pos_embed.W_pos"]  # [max_len, D]
    assert not np.any(g_pos[n:]) and np.all(np.any(g_pos[:n], axis=1))
    trained = emb.trained_tokens(task, model.vocab)
    if causal:  # a position reaches the loss when a loss sits there or later (a causal position reads earlier ones)
        has_loss = batch.targets != -1  # [n, T]
        last = n - 1 - np.argmax(has_loss[:, ::-1], axis=1)  # [n] each example's last position with a loss
        seen = batch.tokens[np.arange(n)[None, :] <= last[:, None]]
    else:  # every position reaches the answer at `=` through attention
        seen = batch.tokens.ravel()
    assert set(np.unique(seen)) == set(np.flatnonzero(trained))
    g_e = grads["embed.W_E"]  # [vocab, D]
    assert not np.any(g_e[~trained]) and np.all(np.any(g_e[trained], axis=1))


def test_trained_tokens_of_the_default_tasks():
    by_token = dict(zip(DEFAULT_VOCAB.tokens, emb.trained_tokens(TaskConfig(), DEFAULT_VOCAB), strict=True))
    assert [t for t, k in by_token.items() if not k] == ["<pad>", "<eos>"]
    one_value = emb.trained_tokens(TaskConfig(operations=("First",), n_args=1, min_value=2, max_value=4),
                                   DEFAULT_VOCAB)  # fmt: skip
    assert [t for t, k in zip(DEFAULT_VOCAB.tokens, one_value, strict=True) if k] == ["(", ")", "=", "First", "2",
                                                                                   "3", "4"]  # fmt: skip


# ================================================================ how far W_E moved, against plain NumPy
@pytest.mark.parametrize("name", ["digits-0-9", "digits-0-99"])
def test_moved_fraction_and_cosines_against_numpy(shipped, name):
    model = shipped[name]
    change = emb.embedding_change(model)
    W = model.transformer.params["embed.W_E"].astype(np.float64)
    W0 = np.random.default_rng(0).normal(0.0, 1.0, W.shape).astype(np.float32).astype(np.float64)
    d = W - W0
    assert change.relative == pytest.approx(math.sqrt(float(np.sum(d * d)) / float(np.sum(W0 * W0))), rel=1e-12)
    for t in range(len(W)):
        a, b = [float(x) for x in W[t]], [float(x) for x in W0[t]]
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        cos = dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
        assert change.cosine[t] == pytest.approx(cos, abs=1e-12)
        moved = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) / sum(y * y for y in b))
        assert change.row_change[t] == pytest.approx(moved, rel=1e-9)
    np.testing.assert_array_equal(change.delta, d)
    # the numbers the page states, written from these
    text = emb.movement_text(change)
    k = np.flatnonzero(change.trained)
    low = k[np.argmin(change.cosine[k])]
    assert f"**{change.relative:.1%}**" in text
    assert f"**{change.cosine[low]:.4f}** (`{model.vocab.tokens[low]}`)" in text
    assert change.cosine[low] < 1 and change.relative > 0.01  # it did move, a little: see the next sentence
    assert "mostly shows that random start" in text


def test_the_change_puts_the_digits_of_digits_0_9_in_order_where_w_e_does_not(shipped):
    """The exposing case: the raw W_E's PCA is its random start's; the change since the start orders the digits."""
    model = shipped["digits-0-9"]
    change = emb.embedding_change(model)
    rows = list(np.flatnonzero(change.trained))
    rho_change = emb.digit_order(emb.pca_2d(change.delta[rows])[0], model.vocab, rows)
    rho_raw = emb.digit_order(emb.pca_2d(model.transformer.params["embed.W_E"])[0], model.vocab)
    rho_init = emb.digit_order(emb.pca_2d(change.init)[0], model.vocab)
    assert max(map(abs, rho_change)) >= 0.7 > max(map(abs, rho_raw))
    assert abs(rho_raw[0] - rho_init[0]) < 0.05  # the raw picture's PC 1 order is the random start's
    assert "the digits lie roughly in numerical order" in emb.digit_order_text(rho_change, of=" of the change")
    raw_text = emb.digit_order_text(rho_raw, start=rho_init)
    assert "Neither of the top two directions" in raw_text
    assert f"gives **{rho_init[0]:+.2f}** along its PC 1 and **{rho_init[1]:+.2f}**" in raw_text


def test_digit_order_over_some_rows():
    vocab = DEFAULT_VOCAB
    rows = [vocab.id(t) for t in ("Max", "3", "1", "2")]
    points = np.array([[9.0, 0], [30, -3], [10, -1], [20, -2]])  # Max, 3, 1, 2
    assert emb.digit_order(points, vocab, rows) == (pytest.approx(1.0), pytest.approx(-1.0))
    assert all(math.isnan(r) for r in emb.digit_order(points[:2], vocab, rows[:2]))  # one digit: no order
    assert "fewer than two digits" in emb.digit_order_text((math.nan, math.nan))


# ================================================================ the sentences on the exposing inputs
def test_value_writing_comes_from_the_task_range():
    one = emb.value_writing(TaskConfig(), (7, 2, 9))
    assert "single digit token" in one and "0-9" in one and "47" not in one and "digit by digit" not in one
    assert "3-7" in emb.value_writing(TaskConfig(min_value=3, max_value=7))
    assert emb.value_writing(TaskConfig(max_value=99), (47, 82, 19)).endswith("(47 → `4` `7`)")
    assert emb.value_writing(TaskConfig(max_value=99), (1, 2, 3)).endswith("(99 → `9` `9`)")  # none of them has two
    assert emb.value_writing(TaskConfig(max_value=250), (5, 120, 7)).endswith("(120 → `1` `2` `0`)")


def test_texts_of_the_shipped_models(shipped):
    c9 = emb.embedding_change(shipped["digits-0-9"])
    text = emb.start_text(c9)
    assert "seed 0" in text and "`<pad>` and `<eos>` never reach the loss" in text
    assert f"times {c9.check.scale:.4f}" in text and "W_pos" not in text
    assert f"over its {shipped['digits-0-9'].train_config.steps:,} steps" in text
    assert emb.positions_text(c9) is None  # sinusoidal
    c99 = emb.embedding_change(shipped["digits-0-99"])
    text = emb.positions_text(c99)
    assert "positions 0-13 only" in text and "Rows 14-49 (36 of 50" in text and "before `<eos>`" in text
    assert f"times {c99.check.scale:.4f}" in text
    assert f"over its {shipped['digits-0-99'].train_config.steps:,} steps" in text
    assert "positions 14-49 of `W_pos` are never read" in emb.start_text(c99)


def test_texts_of_an_untrained_model():
    model = TaskModel.new(TaskConfig(max_value=99), causal=True, positional="learned", norm="pre", seed=3, **TINY)
    change = emb.embedding_change(model)
    assert change.relative == 0 and change.check.scale == 1.0 and change.check.error == 0
    assert "has not been trained" in emb.movement_text(change)
    assert "are their seed-3 initialisation (exactly)" in emb.positions_text(change)
    assert change.check.expected_scale is None and "predicts" not in emb.start_text(change)  # no recipe recorded


def test_an_adam_model_keeps_its_untouched_rows_exactly():
    model = TaskModel.new(TaskConfig(), seed=4, **TINY)
    train = TrainConfig(steps=5, batch_size=16, optimizer="adam", warmup_steps=1, eval_every=5)
    start = model.transformer.params["embed.W_E"].copy()
    for _ in Trainer(model, train).run():
        pass
    change = emb.embedding_change(model)
    untouched = ~change.trained
    np.testing.assert_array_equal(model.transformer.params["embed.W_E"][untouched], start[untouched])
    assert change.check.scale == 1.0 and change.check.expected_scale == 1.0
    assert "`<pad>` and `<eos>`" in emb.start_text(change) and "(exactly)" in emb.start_text(change)
