"""Shared pytest setup: quiet TensorFlow logs, fixed seeds."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    # Test modules import TensorFlow before the zoo, which would leave out the zoo's
    # TensorFlow defaults (zoo.runtime: oneDNN); so the processes that run tests import
    # the zoo first, as users' code does. The pytest-xdist controller runs no test.
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        import zoo  # noqa: F401


@pytest.fixture(autouse=True)
def _seed():
    # Imported here, not at the top: under pytest-xdist the controlling process
    # loads this file too, and it runs no test, so it need not start TensorFlow.
    import keras

    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_global_policy("float32")  # no test leaks a dtype policy
