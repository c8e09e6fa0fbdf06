"""Helpers shared by the test files: tiny models, fixed images, fresh processes.

Every family-wide test loops over `FAMILY_NAMES` and builds its model with
`tiny_model(name)`, so adding a family to `zoo.FAMILIES` and to `TINY_KWARGS`
is enough to run the shared tests on it.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np

import zoo

REPO_ROOT = Path(__file__).resolve().parents[1]

FAMILY_NAMES = tuple(zoo.FAMILIES)
DISCRETE_FAMILIES = ("vqvae", "dvae")

_TINY_STACK = {"filters": 8, "num_res_blocks": 1, "max_filters": 16}
TINY_KWARGS = {
    "ae": {**_TINY_STACK, "latent_channels": 4},
    "vae": {**_TINY_STACK, "latent_channels": 4},
    "vqvae": {**_TINY_STACK, "num_embeddings": 16, "embedding_dim": 8},
    "dvae": {**_TINY_STACK, "num_embeddings": 16, "embedding_dim": 8},
}


def tiny_kwargs(family: str, **overrides) -> dict:
    """Constructor arguments of a tiny model of `family` (fast on a CPU).

    Args:
        family: str. A key of `zoo.FAMILIES`.
        **overrides: Arguments that replace or extend the tiny defaults.

    Returns:
        A new dict of keyword arguments.
    """
    return {**TINY_KWARGS[family], **overrides}


def tiny_model(family: str, **overrides) -> keras.Model:
    """A tiny, built model of `family` (see `tiny_kwargs`)."""
    return zoo.FAMILIES[family](**tiny_kwargs(family, **overrides))


def copy_model(model: keras.Model) -> keras.Model:
    """A new model from `model`'s config with its weights (a fine-tuned copy starts here)."""
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone


def random_images(n: int, shape=(28, 28, 1), seed: int = 0) -> np.ndarray:
    """`n` float32 images in [0, 1] with smooth structure (not pure noise).

    Each channel is a random plaid `0.5 + 0.5 * sin(.) * sin(.)` of low
    frequency, so a tiny model can learn to reconstruct a few of them; the
    mean pixel is about 0.5, like natural images and unlike sparse blobs
    (which let a sigmoid-output model sit at "all zeros" for many steps).
    """
    rng = np.random.default_rng(seed)
    h, w, c = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    images = np.empty((n, h, w, c), np.float32)
    for i in range(n):
        for ch in range(c):
            fy, fx = rng.uniform(0.5, 2.5, size=2) * 2 * np.pi
            py, px = rng.uniform(0, 2 * np.pi, size=2)
            images[i, :, :, ch] = 0.5 + 0.5 * np.sin(fy * yy / h + py) * np.sin(fx * xx / w + px)
    return images


def random_codes(model, n: int, seed: int = 0) -> np.ndarray:
    """An int32 code grid (n, h, w) with values in [0, model.num_embeddings)."""
    h, w = model.latent_grid
    rng = np.random.default_rng(seed)
    return rng.integers(0, model.num_embeddings, size=(n, h, w), dtype=np.int32)


def summary_text(model: keras.Model) -> str:
    """What `model.summary()` prints, as one string."""
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    return "\n".join(lines)


def variable_values(model) -> dict[str, np.ndarray]:
    """A copy of every variable of `model` (weights, seeds, EMA state), by path.

    Keys are `"<index>:<path>"`, so two variables with the same path (two seed
    generators, say) stay apart.
    """
    return {f"{i}:{v.path}": np.array(v.numpy()) for i, v in enumerate(model.variables)}


def changed_variables(before: dict, after: dict, atol: float = 0.0) -> list[str]:
    """Paths of variables whose value differs between two `variable_values`."""
    return sorted(
        path for path in before if not np.allclose(before[path], after[path], atol=atol, rtol=0.0)
    )


def run_in_fresh_process(code: str, timeout: float = 240.0) -> subprocess.CompletedProcess:
    """Runs Python `code` in a new interpreter at the repository root.

    Raises `AssertionError` with the child's output if it exits non-zero.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"Fresh process failed (exit {result.returncode}).\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result


def measure_in_fresh_process(script: str, out_dir: Path, timeout: float = 400.0) -> dict:
    """Runs a test file as a script (`python script OUT`) and returns the JSON it wrote to OUT.

    For measurements that need a process of their own (logical CPU devices
    are configured once per process). TensorFlow's log is kept at level 0 and
    returned under `"stderr"`, so tests can check what it printed.
    """
    out = str(Path(out_dir) / "results.json")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, os.path.abspath(script), out],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    with open(out) as f:
        results = json.load(f)
    results["stderr"] = proc.stderr
    return results


_STATEFUL_RANDOM = re.compile(r"\bstateful\b", re.IGNORECASE)


def stateful_random_messages(measured: dict) -> list[str]:
    """The warnings and log lines of a measuring process that report stateful randomness.

    TFP's "Falling back to stateful sampling ..." and TensorFlow's stateful random
    op messages say "stateful" as a word; op names in graph-optimizer lines
    (`StatefulPartitionedCall/...`) do not, so they are not counted.
    """
    messages = measured["warnings"] + measured["stderr"].splitlines()
    return [m for m in messages if _STATEFUL_RANDOM.search(m)]
