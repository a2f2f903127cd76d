"""What one session can hold (issue 16, item 6): at most MAX_SESSION_MODELS trained or uploaded models, and its
models' cached results in small LRUs of its own, never in the caches every session shares."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from app_helpers import open_app, render_markdown, set_example, shown_text
from streamlit.runtime.caching import cache_resource_api as cra

from explainer import state
from model_core import TaskConfig, TaskModel, store

RUNS = "explainer.state.cached_run"  # the LRUs' names in the session's SESSION_CACHES
SPACE_RUNS = "explainer.state.cached_space_run"


def tiny(name: str) -> TaskModel:
    return TaskModel.new(TaskConfig(), name, n_layers=1, n_heads=2, d_model=16, d_ff=32)


def shared_values() -> list:
    """Every result in the process-wide st.cache_resource caches (not the session-scoped ones)."""
    caches = cra._resource_caches._function_caches.get(None, {})
    return [entry.value for cache in caches.values() for entry in list(cache._mem_cache.values())]


def lru(at, name: str) -> state.LRU:
    return at.session_state[state.SESSION_CACHES][name]


def session_models(at) -> dict:
    return at.session_state[state.SESSION_MODELS]


@pytest.fixture
def run_calls(monkeypatch) -> list[tuple[str, str]]:
    """(model name, text) of every run_example the app makes."""
    calls, real = [], state.run_example

    def counting(model, text):
        calls.append((model.name, text))
        return real(model, text)

    monkeypatch.setattr(state, "run_example", counting)
    return calls


# ================================================================ the LRU
def test_lru_keeps_the_newest_and_forgets_a_model():
    made = []
    cache = state.LRU(2)

    def get(key):
        return cache.get(key, lambda: made.append(key) or key[1])

    assert get(("m", 1)) == 1 and get(("m", 2)) == 2 and get(("m", 1)) == 1  # a hit makes nothing
    assert made == [("m", 1), ("m", 2)]
    get(("n", 3))  # one past the size: the least recently used, ("m", 2), goes
    assert list(cache.entries) == [("m", 1), ("n", 3)] and len(cache) == 2
    get(("m", 2))
    assert made[-1] == ("m", 2)  # made again
    cache.drop_model("m")
    assert list(cache.entries) == [("n", 3)]


# ================================================================ the cap on session models
def test_uploads_past_the_cap_drop_the_oldest_unselected_model():
    at = open_app("../pages/train.py")
    cap = state.MAX_SESSION_MODELS

    def upload(i: int):
        data = store.to_bytes(tiny(f"budget-{i}"))
        at.file_uploader(key="train_upload").set_value((f"budget-{i}.safetensors", data, "application/octet-stream"))
        at.run()
        assert not at.exception and not at.error

    for i in range(1, cap + 1):
        upload(i)
    assert list(session_models(at)) == [f"uploaded: budget-{i}" for i in range(1, cap + 1)]
    at.selectbox(key="model_name").select("uploaded: budget-2").run()  # caches a run of budget-2 ...
    dropped_key = session_models(at)["uploaded: budget-2"][0]
    assert any(key[0] == dropped_key for key in lru(at, RUNS).entries)
    at.selectbox(key="model_name").select("uploaded: budget-1").run()  # ... then the oldest is the one selected

    upload(cap + 1)
    names = list(session_models(at))
    assert len(names) == cap and names == ["uploaded: budget-1"] + [f"uploaded: budget-{i}" for i in range(3, cap + 2)]
    assert at.selectbox(key="model_name").value == "uploaded: budget-1"  # the selected one stays
    assert not any(key[0] == dropped_key for key in lru(at, RUNS).entries)  # the dropped one's results went too
    (success,) = at.success
    assert shown_text(success.value) == (
        f"This session keeps at most {cap} trained or uploaded models, so the oldest one not selected, "
        f"uploaded: budget-2, was removed from the model list. Loaded budget-{cap + 1}.safetensors: "
        f"uploaded: budget-{cap + 1} is now in the sidebar's model list.")  # fmt: skip
    assert render_markdown(success.value).tags == ["p", "strong"]  # the new model's name, bold

    upload(cap + 2)  # and again: the count stays at the cap
    assert list(session_models(at))[:2] == ["uploaded: budget-1", "uploaded: budget-4"]
    assert len(session_models(at)) == cap and "uploaded: budget-3" in shown_text(at.success[0].value)


def test_a_trained_model_past_the_cap_drops_the_oldest_unselected_and_says_so_in_the_sidebar():
    at = open_app()
    cap = state.MAX_SESSION_MODELS
    at.session_state[state.SESSION_MODELS] = {f"old {i}": (f"session:test-budget-old-{i}", tiny(f"old {i}"))
                                               for i in range(cap)}  # fmt: skip
    at.run()
    at.selectbox(key="model_name").select("old 0").run()
    ended = SimpleNamespace(status="finished", steps_done=40, validations=(), held_out_accuracy=None)
    job = SimpleNamespace(id="test-budget-job", done=True, status="finished", name="trained: new", model=tiny("new"),
                          snapshot=lambda: ended)  # what the sidebar reads of an ended run (state.remember_run)
    at.session_state[state.TRAIN_JOB] = job  # a run that has just ended: the sidebar adopts its model
    at.run()
    assert not at.exception, at.exception
    assert list(session_models(at)) == ["old 0", "old 2", "old 3", "old 4", "trained: new"]
    assert at.selectbox(key="model_name").value == "old 0"
    notes = [shown_text(e.value) for e in at.sidebar.info]
    assert state.room_note("old 1") in notes
    at.run()
    assert state.room_note("old 1") not in [shown_text(e.value) for e in at.sidebar.info]  # said once


# ================================================================ the caches
def test_a_session_models_runs_stay_in_a_small_lru_of_the_session(run_calls):
    at = open_app()
    at.session_state[state.SESSION_MODELS] = {"tiny": ("session:test-budget-runs", tiny("tiny"))}
    at.run()
    at.selectbox(key="model_name").select("tiny").run()
    examples = ["Max ( 1 2 3 )", "Min ( 4 5 6 )", "First ( 7 8 9 )", "Last ( 1 1 1 )", "Max ( 2 2 2 )"]
    assert len(examples) > state.SESSION_RUNS
    for text in examples:
        set_example(at, text)
        at.run()  # a rerun reads the cached run
        assert not at.exception and len(lru(at, RUNS)) <= state.SESSION_RUNS
    assert [t for m, t in run_calls if m == "tiny"] == ["Max ( 7 2 9 )", *examples]  # each made once
    cached = list(lru(at, RUNS).entries.values())
    assert at.session_state["_current"].run is cached[-1]
    assert not any(v is run for v in shared_values() for run in cached)  # none in the process-wide cache

    set_example(at, examples[-2])  # still in the LRU
    assert [t for m, t in run_calls if m == "tiny"][-1] == examples[-1]
    set_example(at, examples[0])  # dropped from it: made again
    assert [t for m, t in run_calls if m == "tiny"][-1] == examples[0]
    assert len(lru(at, RUNS)) == state.SESSION_RUNS


def test_a_shipped_models_run_is_shared_by_every_session(run_calls):
    state.cached_run.clear()
    text = "Last ( 8 0 8 )"
    a, b = open_app(), open_app()
    set_example(a, text)
    set_example(b, text)
    assert not a.exception and not b.exception
    assert run_calls.count(("digits-0-9", text)) == 1
    assert a.session_state["_current"].run is b.session_state["_current"].run
    assert any(v is a.session_state["_current"].run for v in shared_values())
    own = a.session_state[state.SESSION_CACHES] if state.SESSION_CACHES in a.session_state else {}
    assert RUNS not in own  # nothing of a shipped model in the session's own caches


def test_a_session_keeps_one_space_run_of_its_models():
    at = open_app()
    at.session_state[state.SESSION_MODELS] = {"a": ("session:test-budget-space-a", tiny("a")),
                                               "b": ("session:test-budget-space-b", tiny("b"))}  # fmt: skip
    at.run()
    at.selectbox(key="model_name").select("a").run()
    at.switch_page("../pages/heads.py").run()
    assert not at.exception, at.exception
    (space_a,) = lru(at, SPACE_RUNS).entries.values()
    at.selectbox(key="model_name").select("b").run()
    assert not at.exception, at.exception
    (space_b,) = lru(at, SPACE_RUNS).entries.values()  # a's went
    assert space_b is not space_a and list(lru(at, SPACE_RUNS).entries) == [("session:test-budget-space-b",)]
    (views,) = lru(at, "__main__.views").entries.values()  # the Heads page's views, which hold the space run
    assert views["space"] is space_b
    shared = shared_values()
    assert not any(v is space_a or v is space_b for v in shared)
    assert not any(isinstance(v, dict) and (v.get("space") is space_a or v.get("space") is space_b) for v in shared)
