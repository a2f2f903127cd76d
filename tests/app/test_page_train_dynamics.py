"""The Train page's training dynamics (AppTest): validation loss in the curves, the order the operations were
learned in, the probe's answer at each snapshot, which weights moved, and a run on 100 training expressions that
memorises them."""

from __future__ import annotations

import numpy as np
import pytest
from app_helpers import charts, open_app, set_example, shown_text
from test_page_train import PAGE, configure, frame, wait_until_done

from explainer import format as fmt
from model_core import TaskModel
from model_core.task import make_splits
from model_core.training import job as tj
from model_core.training.trainer import restrict_train

PROBE = "Max ( 7 2 9 )"
OPTIONS = dict(n_layers=1, n_heads=2, d_model=32, d_ff=64)  # small enough to run fast, big enough to memorise


def _reference_loss(model: TaskModel, exprs) -> float:
    """Mean cross-entropy of every answer token, from the full logits and a float64 log-softmax."""
    batch = model.encode(exprs)
    z = model.transformer.forward(batch.tokens).astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    n, t = np.nonzero(batch.targets >= 0)
    return float(-log_p[n, t, batch.targets[n, t]].mean())


def _shown(at) -> str:
    return "\n".join(shown_text(e.value) for kind in ("markdown", "caption", "info", "warning", "success")
                     for e in getattr(at, kind))  # fmt: skip


@pytest.fixture(scope="module")
def memorising():
    """The page after 300 steps on the first 100 training expressions."""
    at = set_example(open_app(PAGE), PROBE)
    at.selectbox(key="train_size").select(100)
    at.selectbox(key="train_batch").select(64)
    configure(at, steps=300, eval_every=100, train_layers=1, train_heads=2, train_d_model=32, train_d_ff=64,
              train_lr=0.003).button(key="train_start").click().run()  # fmt: skip
    job = wait_until_done(at, timeout=300)
    return at, job


def test_the_train_size_control():
    at = open_app(PAGE)
    box = at.selectbox(key="train_size")
    assert list(box.options) == ["all of the training split", "the first 1,000", "the first 300", "the first 100"]
    assert box.value == "all"


def test_validation_loss_is_drawn_in_the_loss_panel(memorising):
    at, job = memorising
    snap = job.snapshot()
    (curves,) = frame(at, "Loss and accuracy")
    val = curves[(curves["metric"] == "loss") & (curves["split"] == "validation")]
    assert val["step"].tolist() == [0, 100, 200, 300] == [e.step for e in snap.validations]
    np.testing.assert_allclose(val["value"], [e.loss for e in snap.validations])
    splits = make_splits(job.task, seed=job.train.seed)
    assert val["value"].iloc[-1] == pytest.approx(_reference_loss(job.model, splits.val), rel=1e-5)
    (spec, _), = [(s, f) for s, f in charts(at) if "vconcat" in s and s.get("title") == "Loss and accuracy"]
    loss_panel = spec["vconcat"][0]
    assert loss_panel["layer"][0]["encoding"]["color"]["scale"]["domain"] == ["train", "validation"]
    assert "validation loss (the mean cross-entropy of every answer token of the 500 validation" in _shown(at)


def test_the_order_of_learning_is_the_validations(memorising):
    at, job = memorising
    snap = job.snapshot()
    (text,) = [shown_text(m.value) for m in at.markdown if "95%" in m.value]
    first, best = {}, {}  # op -> the first evaluation at >= 95%; op -> (best accuracy, its first step): from here
    for e in snap.validations:
        for op, acc in e.per_op.items():
            if acc >= 0.95 and op not in first:
                first[op] = e.step
            if op not in best or acc > best[op][0]:
                best[op] = (acc, e.step)
    for op in snap.operations:
        if op in first:
            assert f"{op} first, at step {first[op]}" in text or f"{op}, at step {first[op]}" in text \
                or f"{op} last, at step {first[op]}" in text or f"at the same evaluation, step {first[op]}" in text
        elif first:  # named with its best
            acc, step = best[op]
            assert f"{op} {acc:.1%}, at step {step:,}" in text
    if not first:  # only the closest is named
        top = max(acc for acc, _ in best.values())
        closest = "; ".join(f"{op} {acc:.1%}, at step {step:,}" for op, (acc, step) in best.items() if acc == top)
        assert text == ("No operation reached 95% validation accuracy by step 300, the last evaluation. "
                        f"Closest: {closest}.")


def test_the_probes_answer_at_each_snapshot(memorising):
    at, job = memorising
    snap = job.snapshot()
    (table,) = [d.value for d in at.dataframe if "answer" in d.value.columns]
    assert table["step"].tolist() == [e.step for e in snap.evals]
    assert table["answer"].tolist() == [e.probe_answer.written for e in snap.evals]
    final = job.model.answer(PROBE)  # recomputed on the trained model
    assert table["answer"].iloc[-1] == " ".join(final.answer_tokens)
    assert table["confidence"].iloc[-1] == pytest.approx(final.confidence, rel=1e-6)
    assert table["right"].iloc[-1] == (final.value == 9)
    right = table["right"].tolist()
    text = _shown(at)
    if right[-1] and True in right[1:]:  # right at the end: from which snapshot on, computed here
        since = next(i for i in range(len(right)) if all(right[i:]))
        if since == right.index(True) and since > 0:
            assert f"first became right (9) at step {table['step'][since]} and stayed right" in text
        elif since > 0:
            assert f"has been right since step {table['step'][since]}" in text
    elif not any(right):
        assert "never answered the probe **Max ( 7 2 9 )** right" in text
    confidence = fmt.percent(final.confidence)  # the sentence and the info write it as the page's other numbers
    assert f"at the last snapshot (step 300) it answers {table['answer'].iloc[-1]}, confidence {confidence}" in text
    assert f"At this step the model answers {table['answer'].iloc[-1]} (" in text  # the info under the heads
    assert f"confidence {confidence})" in text


def test_which_weights_moved(memorising):
    at, job = memorising
    (bars,) = frame(at, "How far each kind of weight moved in training")
    start = TaskModel.new(job.task, **OPTIONS, seed=job.train.seed,  # the run's initial weights
                          qk_init=job.model_config.qk_init).transformer.params
    end = job.model.transformer.params
    kinds = {}
    for name in end:
        kinds.setdefault(tj.weight_kind(name), []).append(name)
    def norm(arrays) -> float:
        return float(np.sqrt(sum((a.astype(np.float64) ** 2).sum() for a in arrays)))

    expected = {kind: norm(end[n] - start[n] for n in names) / norm(start[n] for n in names)
                for kind, names in kinds.items()}  # fmt: skip
    assert bars["name"].tolist() == list(expected)
    np.testing.assert_allclose(bars["relative"], list(expected.values()), rtol=1e-6)
    top = max(expected, key=expected.get)
    assert f"Moved most: the **{top}** weights, by {expected[top]:.0%}" in "\n".join(m.value for m in at.markdown)


def test_a_run_on_100_expressions_memorises_them(memorising):
    at, job = memorising
    assert job.train_size == 100
    splits = make_splits(job.task, seed=job.train.seed)
    train = job.model.evaluate(restrict_train(splits, 100, seed=job.train.seed))["accuracy"]
    held_out = job.model.evaluate(splits.test)["accuracy"]
    assert train >= 0.95 and held_out < train - 0.1  # this run memorises (else the test's settings need changing)
    (warning,) = [w for w in at.warning if "memorised" in w.value]
    assert shown_text(warning.value).startswith(
        f"The model memorised its 100 training expressions: {train:.1%} right on them, but {held_out:.1%} on the "
        f"{len(splits.test):,} held-out expressions it never saw")


def test_this_sessions_runs_are_overlaid_once_there_are_two():
    """Two short runs: one line per run on the validation curves, equal to each run's own validations, and a
    sentence that says which reached 100% first, computed from those numbers."""
    from explainer import state

    at = open_app(PAGE)
    configure(at, steps=40, eval_every=20).button(key="train_start").click().run()
    first = wait_until_done(at)
    at.run()
    assert "This session's runs" not in [s.value for s in at.subheader]  # one run: nothing to overlay
    configure(at, steps=60, eval_every=20, train_seed=1).button(key="train_start").click().run()
    second = wait_until_done(at)
    at.run()
    assert not at.exception
    assert "This session's runs" in [s.value for s in at.subheader]
    runs = at.session_state[state.RUNS]
    assert [r["steps"] for r in runs] == [first.snapshot().steps_done, second.snapshot().steps_done]
    _, df = [(s, f[0]) for s, f in charts(at) if "Validation accuracy of each run" in str(s.get("title"))][0]
    for r, job in zip(runs, (first, second), strict=True):
        mine = df[(df["split"] == r["name"]) & (df["metric"] == "accuracy")]
        assert list(mine["step"]) == [e.step for e in job.snapshot().validations]
        assert list(mine["value"]) == [e.accuracy for e in job.snapshot().validations]
    want = tj.runs_text(runs, name=lambda n: f"**{fmt.literal(n)}**", pct=fmt.percent)
    assert want in [m.value for m in at.markdown]
