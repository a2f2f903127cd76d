"""benchmarks/st_client.py against a real server (no browser), and benchmarks/classroom.py's own checks.

The client speaks Streamlit's websocket protocol; if its handshake, its widget states or its reading of the
server's messages were wrong, the runs below would not finish, would raise, or would show another example.
"""

import asyncio
import sys
from pathlib import Path

import pytest

from model_core import load_model
from model_core.config import TrainConfig
from model_core.limits import MAX_PARAMS, LimitError, count_params
from model_core.training import job as tj
from tests.browser import browser_helpers as bh

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import classroom  # noqa: E402
from st_client import StreamlitSession  # noqa: E402

PAGES = {"overview", "tokens", "attention", "residual", "output", "backprop", "mechanism", "heads", "train"}


def test_two_sessions_switch_pages_and_edit_the_example():
    model = load_model("digits-0-9")
    edited = "Min ( 3 8 1 )"
    answer = model.answer(edited).value  # the model's own answer, to find on the Overview

    async def scenario(url: str):
        async with StreamlitSession(url) as a, StreamlitSession(url) as b:
            assert a.cookie("_streamlit_xsrf")  # the health route set it; the websocket sent it back as its token
            first_a, first_b = await asyncio.gather(a.connect(), b.connect())
            edit = await a.set_widget("example_text", edited)
            switch = await a.switch_page("attention")
            back = await a.switch_page("overview")
            other = await b.set_widget("example_op", "Min")  # b's own example: its default, Max ( 7 2 9 ), as Min
            return a, first_a, first_b, edit, switch, back, other

    with bh.running_app() as url:
        a, first_a, first_b, edit, switch, back, other = asyncio.run(scenario(url))

    for run in (first_a, first_b, edit, switch, back, other):
        assert run.status == "finished" and run.ok, (run.exceptions, run.errors)
        assert run.elapsed_s > 0
    assert PAGES <= set(a.pages)
    assert first_a.page == "overview" and switch.page == "attention" and back.page == "overview"
    assert f"Example: {edited}" in edit.texts and f"Model's answer: {answer}" in edit.texts
    assert f"Example: {edited}" in back.texts  # the sidebar's example outlived the page switches
    assert "Example: Min ( 7 2 9 )" in other.texts and f"Example: {edited}" not in other.texts  # sessions apart


def test_trainer_settings_are_the_largest_model_the_limits_allow():
    s = classroom.trainer_settings("largest")
    model = {"n_layers": s["train_layers"], "n_heads": s["train_heads"], "d_model": s["train_d_model"],
             "causal": True, "d_ff": s["train_d_ff"]}  # fmt: skip
    task = classroom.HEAVY_TASKS[classroom.heaviest_task(model)][0]
    assert s.get("train_n_args") == task.n_args and bool(s.get("train_nested")) == task.nested
    assert count_params(tj.model_config(model, task)) <= MAX_PARAMS
    assert count_params(tj.model_config({**model, "d_ff": s["train_d_ff"] + 1}, task)) > MAX_PARAMS
    train = TrainConfig(batch_size=int(s["train_batch"]), steps=s["train_steps"])
    tj.check_limits(task, tj.model_config(model, task), train)  # allowed, memory included
    with pytest.raises(LimitError):
        tj.check_limits(task, tj.model_config(model, task),
                        TrainConfig(batch_size=int(s["train_batch"]), steps=s["train_steps"] + 1))  # fmt: skip
    # every task with longer examples is refused for this model (the memory estimate): the heaviest allowed job
    from model_core.training.memory import tokens_per_example

    for other, _ in classroom.HEAVY_TASKS.values():
        if tokens_per_example(other, tj.model_config(model, other)) > tokens_per_example(task, tj.model_config(model,
                                                                                                             task)):
            with pytest.raises(LimitError):
                tj.check_limits(other, tj.model_config(model, other), TrainConfig(batch_size=16, steps=10))


@pytest.mark.parametrize("url", ["http://10.0.0.5:8501", "http://example.com", "http://0.0.0.0:8501"])
def test_refuses_a_server_off_loopback(url):
    with pytest.raises(SystemExit):
        classroom.check_loopback(url)
    classroom.check_loopback("http://127.0.0.1:8501")
    classroom.check_loopback("http://localhost:8501")
