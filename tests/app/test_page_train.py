"""AppTest tests of the Train page: a background run, its live charts, its model in the sidebar, upload/download."""

from __future__ import annotations

import json
import os
import pickle
import time

import numpy as np
import pandas as pd
import pytest
from app_helpers import chart_titles, charts, open_app, set_example, shown_text

from model_core import TaskConfig, TaskModel, store
from model_core.analysis.attention import strongest_attention
from model_core.interp import probe as pr
from model_core.training import job as tj

PAGE = "../pages/train.py"
TINY = {"train_layers": 1, "train_heads": 2, "train_d_model": 16, "train_d_ff": 32}
MECHANISM = "Accuracy per operation on the probe set"  # the mechanism chart's first panel
PLAY_EVERY_S = 0.5  # pages/train.py: play shows the next snapshot this often


def configure(at, steps: int = 40, eval_every: int = 20, **numbers):
    for key, value in (TINY | {"train_steps": steps, "train_eval_every": eval_every} | numbers).items():
        at.number_input(key=key).set_value(value)
    return at


def wait_until_done(at, timeout: float = 60.0):
    """Poll like the fragment would (it does not fire by itself under AppTest) until the job has ended."""
    job = at.session_state["train_job"]
    deadline = time.perf_counter() + timeout
    while not job.done:
        assert time.perf_counter() < deadline, "training did not end in time"
        time.sleep(0.1)
        at.run()
    at.run()
    assert not at.exception, at.exception
    return job


def model_options(at) -> list[str]:
    return list(at.selectbox(key="model_name").options)


def frame(at, title: str) -> list[pd.DataFrame]:
    """The datasets of the chart with a (sub-)title starting with `title`."""

    def titles(spec: dict) -> list[str]:
        t = spec.get("title")
        t = t.get("text") if isinstance(t, dict) else t
        subs = [s for key in ("vconcat", "hconcat", "concat", "layer") for s in spec.get(key, [])]
        return ([str(t)] if t else []) + [x for s in subs for x in titles(s)]

    for spec, frames in charts(at):
        if any(t.startswith(title) for t in titles(spec)):
            return frames
    raise AssertionError(f"no chart titled {title!r} in {chart_titles(at)}")


def heads_weights(at, layer: int = 0) -> np.ndarray:
    """Layer `layer`'s attention weights drawn in the head panels, [head, query, key] flattened."""
    titles = [f"L{layer} H{h}" for h in range(8) if f"L{layer} H{h}" in chart_titles(at)]
    heads = pd.concat([f for t in titles for f in frame(at, t)])
    return heads.set_index(["head", "query_pos", "key_pos"])["weight"].sort_index().to_numpy()


def unit_sort(spec: dict, mark: str) -> list:
    """The x sort of the layer of `spec` with mark `mark`."""
    (unit,) = [
        u
        for u in spec.get("layer", [spec])
        if (u["mark"]["type"] if isinstance(u["mark"], dict) else u["mark"]) == mark
    ]
    return unit["encoding"]["x"]["sort"]


@pytest.fixture
def trained():
    """The page after a small run has finished."""
    at = set_example(open_app(PAGE), "Min ( 4 8 1 )")  # the sidebar's example becomes the probe
    empty = charts(at)
    configure(at).button(key="train_start").click().run()
    assert not at.exception, at.exception
    job = wait_until_done(at)
    # The live view's charts are the ones drawn before the run, with the same specs (the browser keeps a
    # chart whose spec is unchanged and swaps its data in); only the data is new.
    assert [spec for spec, _ in charts(at)[:2]] == [spec for spec, _ in empty]
    return at, job


def test_page_before_training():
    at = open_app(PAGE)
    assert at.title[0].value == "Train your own model"
    assert any("Limits on this shared machine" in c.value and "2,000,000 parameters" in c.value for c in at.caption)
    assert not at.button(key="train_start").disabled and at.button(key="train_stop").disabled
    assert not at.error
    # The live view is there before the run, empty: the curves, and a bar slot for each chosen operation.
    (_, (curves,)), (bars_spec, (bars,)) = charts(at)
    assert curves.empty and bars.empty
    assert unit_sort(bars_spec, "bar") == ["First", "Second", "Last", "Max", "Min"]
    at.multiselect(key="train_ops").set_value(["Max", "Min"]).run()
    assert unit_sort(charts(at)[1][0], "bar") == ["Max", "Min"]
    assert any("fill in as the model trains" in c.value for c in at.caption)
    assert at.number_input(key="train_d_model").value == 64 and at.selectbox(key="train_optimizer").value == "adamw"


def test_a_small_run_joins_the_model_list_and_opens_in_other_pages(trained):
    at, job = trained
    name = "trained: 0-9, 1×2 d16 (seed 0)"
    assert job.status == "finished" and job.name == name
    assert name in model_options(at) and "digits-0-9" in model_options(at)
    # a 40-step tiny model is weak: its ending is a warning (tests/app/test_page_train_text.py), not a success
    boxes = at.success if job.snapshot().held_out_accuracy >= 0.99 else at.warning
    assert any(name in shown_text(s.value) and "Trained for 40 steps" in shown_text(s.value) for s in boxes)
    assert at.progress[0].value == 100
    snap = job.snapshot()
    # The charts draw the job's own records.
    (curves,) = frame(at, "Loss and accuracy")
    assert list(curves["metric"].dtype.categories) == ["loss", "accuracy"]  # sent as categories (see the page)
    curves = curves.astype({"metric": str, "split": str}).reset_index(drop=True)
    pd.testing.assert_frame_equal(curves, pd.DataFrame(snap.curves())[curves.columns], check_dtype=False)
    (bars,) = frame(at, "Validation accuracy per operation")
    assert dict(zip(bars["operation"], bars["accuracy"], strict=True)) == snap.evals[-1].per_op
    assert [e.step for e in snap.validations] == [0, 20, 40]
    assert {"L0 H0", "L0 H1"} <= set(chart_titles(at))
    # Scrub back to the first snapshot: the heads show that snapshot's patterns (every 10 steps early on).
    assert list(at.select_slider(key="train_snapshot").options) == ["0", "10", "20", "30", "40"]
    at.select_slider(key="train_snapshot").set_value(0).run()
    first = snap.evals[0].attention[0]  # [head, q, k]
    np.testing.assert_allclose(heads_weights(at), first.reshape(-1), rtol=1e-6)
    h, k, w = strongest_attention(first, query=8)  # `=` is the probe's 9th token
    assert any(f"probe **Min ( 4 8 1 )** at step 0, the strongest attention from `=` in layer 0 is head {h}'s "
               f"**{w:.2f}**" in i.value for i in at.info)  # fmt: skip
    assert snap.probe_tokens == ("Min", "(", "4", ",", "8", ",", "1", ")", "=")
    # The checkpoint offered for download is the trained model.
    data = at.session_state["train_checkpoint"][1]
    assert [b.proto.label for b in at.get("download_button") if b.key == "train_download"] == [
        "Download the trained model (.safetensors)"]  # the sidebar's Export offers the run's own files too
    loaded = store.from_checkpoint(data)
    assert all(np.array_equal(loaded.transformer.params[k], v) for k, v in job.model.transformer.params.items())
    # Every explainer page opens the new model.
    at.selectbox(key="model_name").select(name).run()
    for page in ("../pages/attention.py", "../pages/overview.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert any(name in shown_text(c.value) for c in at.caption) or page.endswith("attention.py")
    assert at.session_state["_current"].model is job.model


def test_running_then_stop_and_navigation_keep_the_job():
    at = open_app(PAGE)
    configure(at, steps=20_000, eval_every=1000).button(key="train_start").click().run()
    job = at.session_state["train_job"]
    assert job.status == "running"
    assert at.button(key="train_start").disabled and not at.button(key="train_stop").disabled
    at.switch_page("../pages/overview.py").run()  # leave: the run goes on
    deadline = time.perf_counter() + 15  # its worker may take a while to start on a busy machine
    while job.snapshot().steps_done == 0 and time.perf_counter() < deadline:
        time.sleep(0.1)
    assert not job.done and job.snapshot().steps_done > 0
    at.switch_page(PAGE).run()
    assert at.session_state["train_job"] is job and len(at.progress) == 1
    assert at.number_input(key="train_steps").value == 20_000  # the settings survived the page switch
    at.button(key="train_stop").click().run()
    wait_until_done(at, timeout=20)
    assert job.status == "stopped"
    assert any("Stopped after" in i.value for i in at.info)
    assert "trained: 0-9, 1×2 d16 (seed 0)" in model_options(at)  # a stopped model is kept too
    assert not at.button(key="train_start").disabled


def test_bad_hyperparameters_end_with_a_message():
    at = open_app(PAGE)
    before = model_options(at)
    configure(at, train_d_model=30, train_heads=4).button(key="train_start").click().run()
    assert not at.exception
    assert any("d_model (30) must be divisible by n_heads (4)" in shown_text(e.value) for e in at.error)
    at = open_app(PAGE)
    at.selectbox(key="train_optimizer").select("sgd")
    configure(at, steps=500, train_lr=10.0, train_clip=0.0, train_warmup=0).button(key="train_start").click().run()
    job = wait_until_done(at)
    assert job.status == "diverged"
    assert any("Try a smaller learning rate" in e.value and "not added" in e.value for e in at.error)
    assert model_options(at) == before


def test_values_above_nine_force_a_causal_model():
    at = open_app(PAGE)
    at.selectbox(key="train_max_value").select(99).run()
    radio = at.radio(key="train_causal")
    assert radio.value == "causal" and radio.disabled
    assert any("need a **causal** model" in c.value for c in at.caption)


def test_upload_good_and_bad_checkpoints():
    at = open_app(PAGE)
    before = model_options(at)
    good = store.to_bytes(TaskModel.new(TaskConfig(), "tiny-upload", n_layers=1, n_heads=2, d_model=16, d_ff=32))
    bad = {
        "random.safetensors": os.urandom(2000),
        "truncated.safetensors": good[: len(good) // 2],
        "pickle.safetensors": pickle.dumps({"embed.W_E": [1.0]}),
        "empty.safetensors": b"",
    }
    messages = {
        "random.safetensors": "not a safetensors checkpoint",
        "truncated.safetensors": "truncated",
        "pickle.safetensors": "pickle",
        "empty.safetensors": "empty",
    }
    for name, data in bad.items():
        at.file_uploader(key="train_upload").set_value((name, data, "application/octet-stream")).run()
        assert not at.exception
        shown = [shown_text(e.value) for e in at.error]  # the message is escaped Markdown: compare what it shows
        assert shown and messages[name] in shown[0] and name in shown[0]
        assert model_options(at) == before and not at.success
    at.file_uploader(key="train_upload").set_value(("good.safetensors", good, "application/octet-stream")).run()
    assert not at.exception and not at.error
    assert model_options(at) == before + ["uploaded: tiny-upload"]
    assert "uploaded: tiny-upload" in shown_text(at.success[0].value)
    at.selectbox(key="model_name").select("uploaded: tiny-upload").run()
    at.switch_page("../pages/overview.py").run()
    assert not at.exception and at.session_state["_current"].model.name == "tiny-upload"


def test_two_sessions_keep_their_own_jobs_and_models():
    a, b = open_app(PAGE), open_app(PAGE)
    configure(a).button(key="train_start").click().run()
    configure(b, train_seed=1).button(key="train_start").click().run()
    job_a, job_b = wait_until_done(a), wait_until_done(b)
    assert job_a is not job_b
    assert "trained: 0-9, 1×2 d16 (seed 0)" in model_options(
        a
    ) and "trained: 0-9, 1×2 d16 (seed 1)" not in model_options(a)
    assert "trained: 0-9, 1×2 d16 (seed 1)" in model_options(
        b
    ) and "trained: 0-9, 1×2 d16 (seed 0)" not in model_options(b)


def test_a_closed_tab_stops_its_job_once_nobody_has_watched_it_for_the_grace(monkeypatch):
    """Streamlit clears a session's `scope="session"` caches when its tab disconnects; simulate that. The run
    then waits out the grace a reload would need (shortened here) and stops."""
    from streamlit.runtime.caching import cache_resource_api as cra

    from model_core.training.watchers import WATCHERS

    monkeypatch.setattr(WATCHERS, "grace_s", 0.5)
    at = open_app(PAGE)
    configure(at, steps=20_000, eval_every=1000).button(key="train_start").click().run()
    job = at.session_state["train_job"]
    caches = cra._resource_caches._function_caches  # {session id: {function key: ResourceCache}}
    (session,) = [sid for sid, per_fn in caches.items() if sid is not None for cache in per_fn.values()
                  if any(entry.value[0] == job.id for entry in cache._mem_cache.values()
                         if isinstance(entry.value, tuple))]  # fmt: skip
    assert not job.done
    cra.clear_session_cache(session)
    assert WATCHERS.watched(job.id) == 0 and not job.done  # a reload may still take it up
    assert job.join(10) and job.status == "stopped"
    assert WATCHERS.find(job.id) is None


def test_a_run_that_ends_while_the_user_is_elsewhere_joins_the_list_there():
    at = open_app(PAGE)
    configure(at).button(key="train_start").click().run()
    job = at.session_state["train_job"]
    at.switch_page("../pages/overview.py").run()  # from here on only the Overview runs
    assert job.join(60), "training did not end in time"
    at.run()  # any rerun of any page: the sidebar adopts the finished model
    assert not at.exception, at.exception
    assert job.name in model_options(at)
    assert at.session_state["train_added"] == {job.id: job.name}


def test_snapshot_layer_the_browser_still_shows_from_a_deeper_run(trained):
    """A layer label of an earlier, deeper run (the browser still shows it) falls back to layer 0."""
    at, job = trained  # one block
    node = at.selectbox(key="train_layer")
    node.options.append("layer 2")  # what the browser's list held for a three-block run
    node.set_value("2")  # shown as "layer 2": the label the browser sends back
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="train_layer").value == 0
    assert {"L0 H0", "L0 H1"} <= set(chart_titles(at))


def mechanism_frame(at) -> pd.DataFrame:
    (df,) = frame(at, MECHANISM)
    return df.astype({"panel": str, "series": str}).reset_index(drop=True)


def test_the_mechanism_chart_draws_mechanism_metrics_of_each_snapshots_weights(trained):
    at, job = trained
    snap = job.snapshot()
    df = mechanism_frame(at)
    # the chart's one dataset is the job's record, the shown snapshot (the last) marked
    want = pd.DataFrame(snap.mechanism_columns(shown=40))
    pd.testing.assert_frame_equal(df, want[df.columns], check_dtype=False)
    assert df.loc[df["panel"] == tj.SHOWN, "step"].tolist() == [40]
    # ... and those are `mechanism_metrics` on the probe set with the weights of that snapshot: the untrained
    # model at step 0 (the same seed), the trained model at the last step
    cfg = job.model_config
    keys = ("n_layers", "n_heads", "d_model", "d_ff", "causal", "norm", "seed", "qk_init")
    untrained = TaskModel.new(job.task, **{k: getattr(cfg, k) for k in keys})
    for step, model in ((0, untrained), (40, job.model)):
        m = pr.mechanism_metrics(model, job.probe_set)
        at_step = df[df["step"] == step]
        acc = at_step[at_step["panel"] == tj.PANEL_ACCURACY]
        assert dict(zip(acc["series"], acc["value"], strict=True)) == m.per_op
        for panel, table in ((tj.PANEL_TO_OP, m.to_op), (tj.PANEL_TO_SLOT, m.to_answer_slot)):
            rows = at_step[at_step["panel"] == panel]
            assert rows["series"].tolist() == m.heads
            np.testing.assert_allclose(rows["value"], table.mean(axis=1), rtol=1e-12)
            np.testing.assert_allclose(rows[list(m.operations)], table, rtol=1e-12)
        (top,) = at_step[at_step["panel"] == tj.PANEL_TOP].itertuples()
        assert (top.series, top.value, top.clean, top.without) == (
            m.top_component, m.top_drop, m.accuracy, m.ablated_accuracy[m.top])
    lr = df[df["panel"] == tj.PANEL_LR]
    np.testing.assert_array_equal(lr["step"], snap.step)
    np.testing.assert_array_equal(lr["value"], snap.lr)
    np.testing.assert_array_equal(df.loc[df["panel"] == tj.PANEL_GRAD, "value"], snap.grad_norm)
    # its builder's spec is valid Vega-Lite (the page skips validation: live_charts)
    from explainer.charts.training import mechanism_over_training

    mechanism_over_training(want, panels=tj.MECHANISM_PANELS, shown=tj.SHOWN, operations=list(snap.operations),
                            heads=list(snap.heads), components=list(snap.components)).to_dict(validate=True)
    # the sentences under it are computed from the same numbers
    steps, metrics = zip(*snap.mechanism, strict=True)
    text = next(m.value for m in at.markdown if "What the curves show" in m.value)
    for line in pr.describe_history(steps, metrics):
        assert f"- {line}" in text
    assert any("Probe set: 50 expressions, 10 per operation; held-out" in c.value for c in at.caption)


def test_play_shows_each_snapshot_in_turn_then_stops(trained):
    at, job = trained
    snap = job.snapshot()
    steps = [e.step for e in snap.evals]
    assert at.session_state["train_snapshot"] == 40 and at.button(key="train_play").label == "Play"
    at.button(key="train_play").click().run()  # at the last snapshot: play starts from the first
    assert not at.exception, at.exception
    assert at.session_state["train_snapshot"] == 0 and at.button(key="train_play").label == "Pause"
    shown = []
    for _ in range(10):  # the fragment reruns every PLAY_EVERY_S in a browser; here each at.run() polls it
        time.sleep(PLAY_EVERY_S)
        at.run()
        assert not at.exception, at.exception
        shown.append(at.session_state["train_snapshot"])
        i = steps.index(shown[-1])
        # the views that follow the scrubber follow play: the heads, the marked step, the note
        np.testing.assert_allclose(heads_weights(at), snap.evals[i].attention[0].reshape(-1), rtol=1e-6)
        df = mechanism_frame(at)
        assert df.loc[df["panel"] == tj.SHOWN, "step"].tolist() == [shown[-1]]
        assert any(f"at step {shown[-1]}," in n.value for n in at.info)
        if not at.session_state["train_playing"]:
            break
    assert shown == [10, 20, 30, 40]  # one snapshot per tick, then it stops at the last
    assert at.button(key="train_play").label == "Play"


def test_pause_and_the_step_buttons(trained):
    at, job = trained
    snap = job.snapshot()
    assert at.button(key="train_next").disabled and not at.button(key="train_prev").disabled
    at.button(key="train_prev").click().run()
    at.button(key="train_prev").click().run()
    assert at.session_state["train_snapshot"] == 20
    np.testing.assert_allclose(heads_weights(at), snap.evals[2].attention[0].reshape(-1), rtol=1e-6)
    at.button(key="train_next").click().run()
    assert at.session_state["train_snapshot"] == 30 and not at.exception
    at.select_slider(key="train_snapshot").set_value(0).run()
    assert at.button(key="train_prev").disabled
    df = mechanism_frame(at)
    assert df.loc[df["panel"] == tj.SHOWN, "step"].tolist() == [0]
    at.button(key="train_play").click().run()  # play from step 0 ...
    time.sleep(PLAY_EVERY_S)
    at.run()
    assert at.session_state["train_snapshot"] == 10 and at.button(key="train_play").label == "Pause"
    at.button(key="train_play").click().run()  # ... pause
    assert not at.session_state["train_playing"] and at.button(key="train_play").label == "Play"
    time.sleep(PLAY_EVERY_S)
    at.run()
    assert at.session_state["train_snapshot"] == 10
    at.button(key="train_play").click().run()  # play again, then a step button pauses it
    at.button(key="train_next").click().run()
    assert not at.session_state["train_playing"] and at.session_state["train_snapshot"] == 20
    time.sleep(PLAY_EVERY_S)
    at.run()
    assert at.session_state["train_snapshot"] == 20 and not at.exception


def test_a_0_99_run_probes_mostly_two_digit_values():
    at = open_app(PAGE)
    at.selectbox(key="train_max_value").select(99).run()
    configure(at, steps=20, eval_every=20).button(key="train_start").click().run()
    job = wait_until_done(at)
    assert job.status == "finished" and job.model_config.causal
    probe = job.probe_set
    two = (probe.values >= 10).all(axis=1)
    assert len(probe) == 50 and two.sum() == 40 and (probe.values[~two] < 10).any(axis=1).all()
    assert any("40 with only two-digit values, 10 with a one-digit value" in c.value for c in at.caption)
    df = mechanism_frame(at)
    assert sorted(set(df.loc[df["panel"] == tj.PANEL_ACCURACY, "step"])) == [0, 10, 20]


def test_upload_of_hostile_checkpoints_shows_a_message_never_a_traceback(monkeypatch):
    """The handler's message is read from the session state: the page may show it escaped as Markdown."""
    at = open_app(PAGE)
    before = model_options(at)
    good = store.to_bytes(TaskModel.new(TaskConfig(), "tiny-upload", n_layers=1, n_heads=2, d_model=16, d_ff=32))
    n = int.from_bytes(good[:8], "little")
    header = json.loads(good[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["transformer_explainer"])
    meta["model_config"]["max_len"] = 10**12  # the sinusoid table once took terabytes: a MemoryError
    header["__metadata__"]["transformer_explainer"] = json.dumps(meta)
    huge = json.dumps(header).encode()
    hostile = {
        "huge.safetensors": (len(huge).to_bytes(8, "little") + huge + good[8 + n :], "Positions (max_len) is 1,0"),
        "deep.safetensors": ((200_000).to_bytes(8, "little") + b"[" * 100_000 + b"]" * 100_000, "levels deep"),
    }
    for name, (data, phrase) in hostile.items():
        at.file_uploader(key="train_upload").set_value((name, data, "application/octet-stream")).run()
        kind, text = at.session_state["train_upload_result"]
        assert not at.exception and len(at.error) == 1 and kind == "error" and phrase in text and name in text
        assert model_options(at) == before and not at.success

    def broken(*args, **kwargs):  # an error the loader did not turn into a CheckpointError
        raise RuntimeError("/srv/app/secret")

    monkeypatch.setattr(store, "from_checkpoint", broken)
    at.file_uploader(key="train_upload").set_value(("odd.safetensors", good, "application/octet-stream")).run()
    assert not at.exception and len(at.error) == 1 and model_options(at) == before
    assert at.session_state["train_upload_result"] == (
        "error", "odd.safetensors was not loaded: could not load this file: RuntimeError")
    monkeypatch.undo()
    at.file_uploader(key="train_upload").set_value(("good.safetensors", good, "application/octet-stream")).run()
    assert not at.exception and model_options(at) == before + ["uploaded: tiny-upload"]  # the app keeps working


def test_a_second_session_waits_in_line_then_trains(monkeypatch):
    """The server trains one job at a time: another session's job is queued, told its place, then runs."""
    from model_core.training import queue as tq

    monkeypatch.setattr(tq, "MAX_RUNNING_JOBS", 1)
    a, b, c = open_app(PAGE), open_app(PAGE), open_app(PAGE)  # browser sessions, all open before any starts
    configure(a, steps=1000, eval_every=500).button(key="train_start").click().run()
    configure(b, train_seed=1).button(key="train_start").click().run()
    configure(c, train_seed=2).button(key="train_start").click().run()  # 2nd in line; its Stop leaves the line
    assert any("Queued: 2nd in line" in shown_text(i.value) for i in c.info)
    c.button(key="train_stop").click().run()
    assert c.session_state["train_job"].status == "stopped" and not tq.QUEUE.waiting()[1:]
    assert any(tj.NEVER_STARTED in shown_text(i.value) for i in c.info) and not c.button(key="train_start").disabled
    job_a, job_b = a.session_state["train_job"], b.session_state["train_job"]
    assert job_a.status == "running" and job_b.status == "queued", (job_a.status, job_b.status)
    snap = job_b.snapshot()
    assert snap.queue_position == 1
    shown = [shown_text(i.value) for i in b.info]
    assert any(t.startswith("Queued: 1st in line for the trainer (the server trains 1 model at a time);")
               and "Stop takes it out of the line" in t for t in shown), shown  # fmt: skip
    assert "waiting in line" in b.progress[0].proto.text
    assert b.button(key="train_start").disabled and not b.button(key="train_stop").disabled  # Stop leaves the line
    wait_until_done(a)
    job_b = wait_until_done(b)
    assert job_b.status == "finished" and job_b._started_at >= job_a._ended_at  # it ran once the first had ended
    assert "trained: 0-9, 1×2 d16 (seed 1)" in model_options(b)
    assert not any("Queued" in shown_text(i.value) for i in b.info)


def test_shorter_lists_train_a_task_of_every_length_and_the_cap_follows_the_range():
    at = open_app(PAGE)
    at.slider(key="train_n_args").set_value(10).run()
    at.checkbox(key="train_vary").check().run()
    assert at.slider(key="train_n_args").label == "Most values"
    configure(at, steps=20, eval_every=20).button(key="train_start").click().run()
    job = wait_until_done(at)
    assert not at.exception and job.status == "finished"
    assert (job.task.min_args, job.task.n_args) == (2, 10)
    lengths = np.bincount(job.probe_set.lengths, minlength=11)[2:]
    assert (lengths > 0).sum() >= 5  # the probe spans the lengths, not only the long lists
    assert "2-10 values" in job.name
    # two-digit values: at most 5 of them, and the slider comes down to that
    at.selectbox(key="train_max_value").select(99).run()
    slider = at.slider(key="train_n_args")
    assert not at.exception and slider.value == tj.MAX_ARGS_WIDE == slider.max


def test_a_sum_makes_the_model_causal_and_trains():
    at = open_app(PAGE)
    at.multiselect(key="train_ops").set_value(["Max", "Sum"]).run()
    radio = at.radio(key="train_causal")
    assert radio.value == "causal" and radio.disabled
    assert any("A Sum needs a **causal** model" in c.value for c in at.caption)
    configure(at, steps=20, eval_every=10).button(key="train_start").click().run()
    job = wait_until_done(at)
    assert not at.exception and job.status == "finished", job.message
    assert job.task.operations == ("Max", "Sum") and job.model_config.vocab_size == 22
    assert "Sum" in job.snapshot().validations[-1].per_op
