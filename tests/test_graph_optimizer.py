"""Grappler's remapper must not fail on the zoo's residual stacks.

When it fails ("remapper failed: ... fanout ... exist for missing node"), the
meta-optimizer drops the remapper's output for the whole graph, so every
Conv2D + BiasAdd + Relu fusion is lost too (BUILD_NOTES.md, Speed). Both
residual blocks (`zoo.blocks.ResidualBlock`, `zoo.dalle_blocks.DalleBlock`)
start with `maximum(x, 0)` to avoid the failing pattern; these tests train
stacks of two blocks, the smallest that trigger it, with TensorFlow's log on.
"""

import os
import subprocess
import sys
import textwrap

from tests.helpers import REPO_ROOT

_FIT = """
import numpy as np
import zoo
for model in ({models}):
    model.compile(optimizer="adam")
    images = np.random.default_rng(0).random((8, *model.image_shape)).astype("float32")
    model.fit(images, epochs=1, batch_size=4, verbose=0)
    model.predict(images, verbose=0)
    print("fitted", type(model).__name__)
"""

MODELS = (
    "zoo.AE(image_shape=(16, 16, 1), filters=8, num_res_blocks=2)",  # stacked ResidualBlocks
    "zoo.DalleDVAE(image_shape=(32, 32, 3), n_hid=16, n_blk_per_group=2,"  # stacked DalleBlocks
    " vocab_size=32, n_init=8)",
)


def test_remapper_does_not_fail_on_stacked_residual_blocks():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "PYTHONPATH": str(REPO_ROOT)}
    code = textwrap.dedent(_FIT.format(models=", ".join(MODELS)))
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["fitted", "AE", "fitted", "DalleDVAE"]
    # A failure names the node, e.g. ".../decoder_1/group_1_block_1_1/add".
    failures = [line for line in result.stderr.splitlines() if "remapper failed" in line]
    assert not failures, failures
