"""The README's "Generating images" example runs as written, in a fresh process."""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

CHECKS = """
assert pictures.shape == (2, 28, 28, 1) and pictures.dtype == "float32"
assert 0.0 <= float(pictures.numpy().min()) and float(pictures.numpy().max()) <= 1.0
assert grids.shape == (2, 7, 7) and grids.dtype == "int32"
assert (completed.numpy()[0, :3] == codes.numpy()[0, :3]).all()
assert bits.shape == (4,)
import keras
again = keras.saving.load_model("generator.keras")
assert again.class_names == generator.class_names
"""


# ~13 s; the default suite runs the same block as written (tests/test_docs.py), and
# tests/test_image_generator.py checks these shapes and the round trip.
@pytest.mark.slow
def test_readme_generation_example_runs(tmp_path):
    text = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"<!-- generation-example.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its marked generation example"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", match.group(1) + CHECKS],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert (tmp_path / "generator.keras").is_file()
