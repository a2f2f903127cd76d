"""Settings for the whole test suite."""

import os

import pytest

# The app draws charts without Altair's validation (explainer/vega.py); under test every chart a page draws is
# validated, in AppTest (this process) and in the browser tests' servers (child processes inherit it).
os.environ["EXPLAINER_VALIDATE_CHARTS"] = "1"


@pytest.fixture(autouse=True)
def _no_training_job_left_running():
    """The server trains one job at a time (model_core/training/queue.py): a job a test left running or in line
    would hold up the next test's jobs. Stop whatever a test left, and wait for it to end."""
    yield
    from model_core.training.queue import QUEUE

    left = QUEUE.waiting() + QUEUE.running()
    for job in left:
        job.stop()
    for job in left:
        job.join(30)
