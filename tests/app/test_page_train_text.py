"""The Train page's formulas and sentences follow the settings and the run (AppTest)."""

from __future__ import annotations

import numpy as np
from app_helpers import open_app, shown_text
from test_page_train import PAGE, configure, wait_until_done

from model_core.presets import DEFAULT_LR


def latex(at) -> list[str]:
    return [e.value for e in at.latex]


def captions(at) -> str:
    return "\n".join(shown_text(c.value) for c in at.caption)


def test_the_formulas_follow_the_settings():
    at = open_app(PAGE)
    loss, update, schedule, clip = latex(at)[:4]
    assert r"\frac{1}{N}" in loss and "y_{b,<t}" not in loss  # bidirectional: it reads the whole expression
    assert "0.98" in update and "0.01" in update  # AdamW's beta2 and weight decay
    assert r"\frac{t + 1}{50}" in schedule  # the page's default warm-up (the digits-0-9 recipe)
    assert "min" in clip and "N = B" in captions(at)
    at.radio(key="train_causal").set_value("causal").run()
    assert "y_{b,<t}" in latex(at)[0] and "each digit of the answer" in captions(at)

    at.selectbox(key="train_optimizer").set_value("sgd").run()
    assert not at.exception
    assert at.number_input(key="train_lr").value == DEFAULT_LR["sgd"]  # the default followed the optimiser
    assert r"v_t = 0.9\, v_{t-1} + g_t" in latex(at)[1] and "10 times as far" in captions(at)
    at.number_input(key="train_lr").set_value(0.05).run()
    at.selectbox(key="train_optimizer").set_value("adam").run()
    assert at.number_input(key="train_lr").value == 0.05  # a rate the user chose is kept
    assert "Weight decay" not in captions(at) and "0.01" not in latex(at)[1]

    at.number_input(key="train_clip").set_value(0.0).run()
    assert not any("lVert g_t" in x for x in latex(at)) and "clipping is off" in captions(at).lower()


def test_a_weak_run_is_a_warning_and_says_how_often_clipping_acted():
    at = open_app(PAGE)
    configure(at, steps=30, eval_every=10).button(key="train_start").click().run()
    job = wait_until_done(at)
    snap = job.snapshot()
    assert snap.done and snap.held_out_accuracy is not None and snap.held_out_accuracy < 0.99
    assert not at.success, [s.value for s in at.success]
    (warning,) = [w for w in at.warning if "below 99%" in w.value]
    assert f"{round((1 - snap.held_out_accuracy) * 100)} in 100" in warning.value
    clipped = int((snap.grad_norm > job.train.grad_clip).sum())  # the run's own norms, before clipping
    text = captions(at)
    if clipped:
        assert f"Clipping acted on {clipped:,} of the {snap.steps_done:,} steps" in text
    else:
        assert "Clipping never acted" in text
    assert f"Curves show all {snap.steps_done} training steps" in text
    per_op = snap.latest_eval.per_op
    worst = min(per_op.values())
    if worst == max(per_op.values()):
        assert "Every operation at" in text
    else:
        hardest = [op for op, acc in per_op.items() if acc == worst]
        assert f"Hardest: {' and '.join(hardest)}" in text
    assert np.isfinite(snap.grad_norm).all()


def test_the_page_says_how_long_a_run_takes_and_refuses_one_too_long_for_its_size():
    from model_core import TaskConfig, TrainConfig
    from model_core.training import job as tj

    at = open_app(PAGE)
    default = tj.duration_text(TaskConfig(), tj.model_config({}), TrainConfig(
        steps=at.number_input(key="train_steps").value, batch_size=at.selectbox(key="train_batch").value))
    assert default in captions(at) and "up to 20,000 steps" in default
    at.selectbox(key="train_max_value").select(99).run()
    at.selectbox(key="train_batch").select(tj.MAX_BATCH)
    big = {"train_layers": 4, "train_heads": 8, "train_d_model": 256, "train_d_ff": 448}
    for key, value in (big | {"train_steps": tj.MAX_STEPS}).items():
        at.number_input(key=key).set_value(value)
    at.run()
    model = tj.model_config({"n_layers": 4, "n_heads": 8, "d_model": 256, "d_ff": 448, "causal": True})
    most = tj.max_steps_for(TaskConfig(max_value=99), model, tj.MAX_BATCH)
    assert most < tj.MAX_STEPS and f"At this size a run may have up to {most:,} steps." in captions(at)
    at.button(key="train_start").click().run()
    assert not at.exception
    assert any(f"Training steps is {tj.MAX_STEPS:,}" in shown_text(e.value) and f"at most {most:,} steps" in
               shown_text(e.value) for e in at.error), [e.value for e in at.error]  # fmt: skip
    at.number_input(key="train_steps").set_value(most).run()
    assert f"{most:,} steps, about" in captions(at)
