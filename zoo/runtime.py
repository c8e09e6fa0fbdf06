"""TensorFlow runtime defaults the zoo sets before TensorFlow loads.

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it loads. On Linux x86-64
its own default turns oneDNN's kernels on only for CPUs with AVX512-VNNI,
AVX512-BF16 or AMX, and leaves older CPUs (AVX2 only) on its Eigen kernels.
Side by side on an AVX2-only EPYC, oneDNN trained the zoo's autoencoders
about twice as fast and served them somewhat faster at large batches
(BENCHMARKS.md's oneDNN section, `python -m bench.onednn`), so
`zoo/__init__.py` calls `prefer_onednn()` first:
`import zoo` before TensorFlow gives every x86-64 Linux CPU the oneDNN
kernels. `TF_ENABLE_ONEDNN_OPTS=0` (or any value the user sets) wins. This
module imports no TensorFlow.
"""

import os
import platform
import sys

ONEDNN_VAR = "TF_ENABLE_ONEDNN_OPTS"


def prefer_onednn() -> bool:
    """Sets `TF_ENABLE_ONEDNN_OPTS=1` unless it is set or TensorFlow is loaded.

    Only on Linux x86-64, where TensorFlow's wheels carry oneDNN and its own
    default already turns it on for CPUs with AVX512-VNNI, AVX512-BF16 or AMX.
    Child processes inherit the variable.

    Returns:
        `True` when this call set the variable.

    Example:
    >>> from zoo import runtime
    >>> runtime.prefer_onednn()  # TensorFlow is loaded by now: too late, no change
    False
    """
    if ONEDNN_VAR in os.environ or "tensorflow" in sys.modules:
        return False
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return False
    os.environ[ONEDNN_VAR] = "1"
    return True


def onednn_enabled() -> bool | None:
    """Whether this process's TensorFlow runs oneDNN's kernels (`None`: unknown).

    Reads TensorFlow's own answer (a private function; `None` if it moves).
    Imports TensorFlow.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None
