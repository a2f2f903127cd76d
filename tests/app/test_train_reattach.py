"""A reload or a shared link takes up the training run in its URL (?job=<id>), AppTest."""

from __future__ import annotations

from app_helpers import open_app
from test_page_train import PAGE, configure, wait_until_done

from model_core.training.watchers import WATCHERS


def toasts(at) -> str:
    return " ".join(t.value for t in at.toast)


def test_the_run_is_in_the_url_and_a_new_session_with_that_url_takes_it_up():
    at = open_app(PAGE)
    configure(at, steps=5000, eval_every=1000).button(key="train_start").click().run()
    job = at.session_state["train_job"]
    try:
        assert at.query_params["job"] == [job.id] or at.query_params["job"] == job.id
        reloaded = open_app(query_params={"job": job.id})  # a reload (on any page): a new session, the same URL
        assert reloaded.session_state["train_job"] is job and not job.done
        assert "Back to the training run" in toasts(reloaded) and "is still running" in toasts(reloaded)
        reloaded.switch_page(PAGE).run()
        assert not reloaded.button(key="train_stop").disabled  # it can stop the run it took up
        assert WATCHERS.watched(job.id) == 2
        reloaded.button(key="train_stop").click().run()
        wait_until_done(reloaded)
        assert job.status == "stopped"
    finally:
        job.stop()


def test_a_link_to_a_run_this_server_does_not_have_says_so_and_leaves_the_page_as_new():
    at = open_app(query_params={"job": "0123456789abcdef"})
    assert "no longer on this server" in toasts(at)
    at.switch_page(PAGE).run()
    assert at.session_state["train_job"] is None if "train_job" in at.session_state else True
    assert "job" not in at.query_params
    assert not at.button(key="train_start").disabled and not at.exception
