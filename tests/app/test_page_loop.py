"""AppTest tests of the training-loop page: its numbers are the trainer's, its sentences match them, and the shared
model never changes."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from app_helpers import charts, open_app, set_example, shown_text
from test_page_train import configure, wait_until_done

from model_core.task import make_splits
from model_core.training import walkthrough as wt
from model_core.training.optim import lr_at
from tests.training.test_walkthrough import checksum

PAGE = "../pages/loop.py"


def infos(at) -> list[str]:
    return [shown_text(i.value) for i in at.info]


def number_after(text: str, lead: str) -> float:
    return float(re.search(re.escape(lead) + r"\s*([-0-9.e+]+)", text).group(1).rstrip("."))


@pytest.mark.parametrize("name,example", [("digits-0-9", "Max ( 7 2 9 )"), ("digits-0-99", "Max ( 47 82 19 )")])
def test_the_page_shows_the_trainers_numbers(name, example):
    at = open_app()
    at.selectbox(key="model_name").select(name).run()
    set_example(at, example)
    model = at.session_state["_current"].model
    before = checksum(model)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    cfg = model.train_config
    at.slider(key="loop_step").set_value(cfg.warmup_steps + 5).run()
    at.number_input(key="loop_seed").set_value(7).run()
    at.select_slider(key="loop_eta").set_value(0.01).run()
    assert not at.exception, at.exception
    assert checksum(model) == before  # the shared model is read-only and unchanged

    # the batch: the trainer's sampler with this seed, on the recipe's split; its loss is loss_and_grads'
    exprs = make_splits(model.task, seed=cfg.seed).sample_train(cfg.batch_size, np.random.default_rng(7))
    batch = model.encode(exprs)
    loss, grads, _ = model.transformer.loss_and_grads(batch.tokens, batch.targets)
    assert at.metric[0].value == f"{loss:.4g}"
    norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))
    assert at.metric[1].value == f"{norm:.4g}"
    assert at.metric[2].value == f"{min(norm, cfg.grad_clip):.4g}"
    lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * 5 / (cfg.steps - cfg.warmup_steps)))
    lr = cfg.min_lr_ratio * cfg.lr + (1 - cfg.min_lr_ratio) * lr
    assert at.metric[3].value == f"{lr:.4g}"

    # the table: every expression of the batch, highest loss first, each loss recomputed alone in float64
    table = at.dataframe[0].value
    assert sorted(table["expression"]) == sorted(exprs.expression(i).text for i in range(len(exprs)))
    assert list(table["loss"]) == sorted(table["loss"], reverse=True)
    net64 = model.transformer.astype(np.float64)
    for _, row in table.head(5).iterrows():
        one = model.encode(model.expressions([model.parse(row["expression"])]))
        alone = net64.loss_and_grads(one.tokens, one.targets)[0]
        assert row["loss"] == pytest.approx(alone, rel=1e-3, abs=1e-6)  # float32 logits against float64
    means = table.groupby("operation")["loss"].mean()
    text = infos(at)[0]
    assert f"{means.idxmax()} has the highest mean loss per expression ({means.max():.4g})" in text
    assert f"at or below the threshold {cfg.grad_clip:g}" in text if norm <= cfg.grad_clip else "above" in text
    assert f"so η_t = {lr:.4g}" in text

    # three optimisers on the sidebar's example: plain SGD and momentum the same, Adam's share as in the table
    three = at.dataframe[2].value.set_index("optimiser")
    assert three.loc[wt.PLAIN, "max |Δ|"] == three.loc[wt.MOMENTUM, "max |Δ|"]
    run = at.session_state["_current"].run
    net = model.transformer.astype(np.float64)
    _, g, _ = net.loss_and_grads(run.train_tokens[None], run.train_targets[None])
    g = np.concatenate([g[n].reshape(-1) for n in net.params])  # [P] in the parameters' order
    assert three.loc[wt.PLAIN, "max |Δ|"] == pytest.approx(0.01 * np.abs(g).max(), rel=1e-9)
    adam_moves = np.abs(g[g != 0]) / (np.abs(g[g != 0]) + 1e-8)  # |delta| / eta of Adam's first step
    share = float(np.mean(np.abs(adam_moves - 1) <= 0.01))
    opt_text = infos(at)[1]
    assert "made exactly the same first step" in opt_text
    assert f"with a nonzero gradient ({wt.share_text(share)}) moved by within 1% of η = 0.01" in opt_text
    if name == "digits-0-99":  # the exposing case: almost no weight moves by η on Adam's first step
        assert share < 0.5 and "most of this example's gradient is that small" in opt_text
    hist = next(f for spec, (f, *_) in charts(at) if "of the weights that moved" in str(spec.get("title")))
    p = np.concatenate([v.reshape(-1) for v in net.params.values()])  # [P]
    moved = np.count_nonzero((p - 0.01 * g) != p)  # a step below half an ulp of its weight does not move it
    assert hist.groupby("optimiser")["weights"].sum()[wt.PLAIN] == moved
    # no run in this session: the Train page's default schedule, and a note that a run adds its gradient norms
    assert "A run on the Train page will add its learning rate and gradient norm" in infos(at)[2]


def test_a_page_trained_model_and_its_run():
    at = set_example(open_app("../pages/train.py"), "Min ( 4 8 1 )")
    configure(at, steps=40, eval_every=20, train_clip=0.5).button(key="train_start").click().run()
    job = wait_until_done(at)
    at.selectbox(key="model_name").select(job.name).run()
    model = at.session_state["_current"].model
    before = checksum(model)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert checksum(model) == before
    assert at.slider(key="loop_step").max == 40  # the recipe this model was trained with
    snap = job.snapshot()
    clipped = int((snap.grad_norm > 0.5).sum())
    run_text = infos(at)[2]
    if clipped:
        assert f"Clipping acted on {clipped:,} of the {snap.steps_done:,} steps" in run_text
    else:
        assert "Clipping never acted" in run_text
    (lr_frame,) = next(frames for spec, frames in charts(at) if "Learning rate η_t at each step" in str(spec))
    np.testing.assert_allclose(lr_frame["learning rate"], snap.lr)  # 40 steps: every one is drawn
    np.testing.assert_array_equal(lr_frame["step"], np.arange(40))  # t from 0, as lr_at counts it
    np.testing.assert_allclose(lr_frame["learning rate"], [lr_at(t, job.train) for t in range(40)], rtol=1e-12)
    (norm_frame, *_) = next(frames for spec, frames in charts(at) if "Gradient norm at each step" in str(spec))
    np.testing.assert_allclose(norm_frame["gradient norm"], snap.grad_norm)
    # a weak 40-step model: its loss is large, and its batch sentence still matches the metric
    text = infos(at)[0]
    assert f"The batch loss {at.metric[0].value} is the mean" in text
    assert number_after(text, "The batch loss") == pytest.approx(float(at.metric[0].value))
