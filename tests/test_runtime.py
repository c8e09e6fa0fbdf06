"""`zoo.runtime`: importing the zoo before TensorFlow turns oneDNN on, unless the user chose.

Each case runs in a fresh interpreter: TensorFlow reads the variable once, when it
loads, and this test process loaded it long ago.
"""

import platform
import sys

import pytest

from tests.helpers import run_in_fresh_process

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64",
    reason="the zoo sets the oneDNN default on Linux x86-64 only",
)

REPORT = """
import os
from zoo import runtime
print(os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset"), runtime.onednn_enabled())
"""


def _report(setup: str) -> str:
    lines = run_in_fresh_process(setup + REPORT).stdout.strip().splitlines()
    return lines[-1]


def test_importing_the_zoo_first_turns_onednn_on():
    setup = 'import os\nos.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)\nimport zoo\n'
    assert _report(setup) == "1 True"


def test_the_users_setting_wins():
    setup = 'import os\nos.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"\nimport zoo\n'
    assert _report(setup) == "0 False"


def test_commands_start_tensorflow_through_the_zoo():
    setup = (
        'import os\nos.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)\n'
        "from trainers import cli\ncli.quiet_tensorflow_start()\n"
    )
    assert _report(setup) == "1 True"


def test_too_late_once_tensorflow_is_loaded():
    setup = (
        'import os\nos.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)\n'
        "import tensorflow\nimport zoo\n"
        "assert not zoo.runtime.prefer_onednn()\n"
    )
    assert _report(setup).startswith("unset ")
