"""Grappler's remapper must not fail on the zoo's residual stacks.

When it fails ("remapper failed: ... fanout ... exist for missing node"), the
meta-optimizer drops the remapper's output for the whole graph, so every
Conv2D + BiasAdd + Relu fusion is lost too (BUILD_NOTES.md, Speed). Both
residual blocks (`zoo.blocks.ResidualBlock`, `zoo.dalle_blocks.DalleBlock`)
start with `maximum(x, 0)` to avoid the failing pattern; these tests run
stacks of two blocks, the smallest that trigger it, with TensorFlow's log on:
the AE through `fit` and `predict`, the DALL-E dVAE through `predict` only
(its inference graph shows the failure as well, and tracing its training
step took 19 of the test's 41 s).
"""

import os
import subprocess
import sys
import textwrap

from tests.helpers import REPO_ROOT

_RUN = """
import numpy as np
import zoo
for model, train in ({models}):
    images = np.random.default_rng(0).random((8, *model.image_shape)).astype("float32")
    if train:
        model.compile(optimizer="adam")
        model.fit(images, epochs=1, batch_size=4, verbose=0)
    model.predict(images, verbose=0)
    print("ran", type(model).__name__)
"""

MODELS = (  # (model, whether to train it too)
    "(zoo.AE(image_shape=(16, 16, 1), filters=8, num_res_blocks=2), True)",  # ResidualBlocks
    "(zoo.DalleDVAE(image_shape=(32, 32, 3), n_hid=16, n_blk_per_group=2,"  # DalleBlocks
    " vocab_size=32, n_init=8), False)",
)


def test_remapper_does_not_fail_on_stacked_residual_blocks():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "PYTHONPATH": str(REPO_ROOT)}
    code = textwrap.dedent(_RUN.format(models=", ".join(MODELS)))
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["ran", "AE", "ran", "DalleDVAE"]
    # A failure names the node, e.g. ".../decoder_1/group_1_block_1_1/add".
    failures = [line for line in result.stderr.splitlines() if "remapper failed" in line]
    assert not failures, failures
