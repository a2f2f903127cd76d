import pytest

from model_core import load_model


@pytest.fixture(scope="package")
def shipped():
    """Both shipped models by name, loaded once for the interp tests."""
    return {name: load_model(name) for name in ("digits-0-9", "digits-0-99")}
