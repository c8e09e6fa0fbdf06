"""Grappler's remapper on the residual blocks: the error, its cause and the speed.

Until the fix, `ResidualBlock.call` began with `relu(x)`. When blocks are
stacked, `x` is the previous block's `conv + bias + add`, and that add also
feeds the residual add of the next block. Grappler's remapper matched
`Conv2D + BiasAdd + Add + Relu` and fused it although the add had a second
consumer, then failed to apply the rewrite ("remapper failed:
INVALID_ARGUMENT: Mutation::Apply error: fanout ... exist for missing node
.../res_0/add") and so dropped *every* remapper fusion of the graph. The block
now writes that ReLU as `maximum(x, 0)` (the same function), which the remapper
leaves alone, and it fuses the rest.

This benchmark builds the default VQ-VAE twice, once with the shipped block
and once with the old expression traced in its place, and times a training
step (batch 64) and an inference call (batch 256) of each, interleaved, in
float32 and mixed_bfloat16. A subprocess traces each variant with TF's C++
log on, to show which one prints the remapper error.

Run alone: `python -m bench.remapper`.
"""

import argparse
import contextlib
import os
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

import zoo
from bench import common
from zoo import blocks

_SHIPPED_CALL = blocks.ResidualBlock.call


def _legacy_call(self, x):
    h = self.conv_in(keras.ops.relu(x))
    return x + self.conv_out(keras.ops.relu(h))


@contextlib.contextmanager
def _block_call(variant: str):
    """Traces with the shipped block (`"maximum"`) or the old one (`"relu"`)."""
    blocks.ResidualBlock.call = _legacy_call if variant == "relu" else _SHIPPED_CALL
    try:
        yield
    finally:
        blocks.ResidualBlock.call = _SHIPPED_CALL


def _check(variant: str) -> None:
    """Subprocess mode: traces and runs one training step and one forward pass."""
    images = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    with _block_call(variant):
        model = zoo.VQVAE()
        model.compile(optimizer="adam")
        model.fit(images, batch_size=8, epochs=1, verbose=0)
        tf.function(lambda x: model(x))(images)


def remapper_errors(variant: str) -> int:
    """Number of "remapper failed" lines TF logs when `variant` is traced and run."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.remapper", "--check", variant],
        env=env, capture_output=True, text=True, timeout=600,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    if done.returncode != 0:
        raise RuntimeError(f"remapper check failed:\n{done.stderr[-2000:]}")
    return done.stderr.count("remapper failed")


def run(repeats: int = 5, train_steps: int = 8, infer_calls: int = 8) -> common.Table:
    """Times both block variants side by side; returns a `common.Table`."""
    rng = np.random.default_rng(0)
    batch = rng.random((64, 28, 28, 1), dtype=np.float32)
    many = tf.constant(rng.random((256, 28, 28, 1), dtype=np.float32))
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    table = common.Table(
        "Residual block ReLU and the Grappler remapper (default VQ-VAE)",
        ["block input", "precision", "remapper errors", "train images/s (batch 64)",
         "vs relu", "inference images/s (batch 256)", "vs relu"],
    )
    for precision in ("float32", "mixed_bfloat16"):
        measures = {}
        for variant in ("relu", "maximum"):
            keras.mixed_precision.set_global_policy(precision)
            try:
                model = zoo.VQVAE()
            finally:
                keras.mixed_precision.set_global_policy("float32")
            model.compile(optimizer=keras.optimizers.Adam(1e-4))
            forward = tf.function(lambda x, m=model: m(x, training=False))
            with _block_call(variant):  # the graphs are traced here, once
                model.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)
                forward(many).numpy()

            def train(m=model):
                return train_steps * 64 / common.timed(
                    lambda: m.fit(dataset, epochs=1, steps_per_epoch=train_steps, verbose=0))

            def infer(f=forward):
                return infer_calls * 256 / common.timed(
                    lambda: [f(many).numpy() for _ in range(infer_calls)])

            measures[(variant, "train")] = train
            measures[(variant, "infer")] = infer
        results = common.interleaved(measures, repeats)
        stats = {k: common.summarize(v) for k, v in results.items()}
        for variant in ("relu", "maximum"):
            train, infer = stats[(variant, "train")], stats[(variant, "infer")]
            table.add(
                f"`{variant}(x)`" + (" (shipped)" if variant == "maximum" else " (before)"),
                precision,
                remapper_errors(variant) if precision == "float32" else "",
                train.format(),
                f"{train.median / stats[('relu', 'train')].median:.2f}x",
                infer.format(),
                f"{infer.median / stats[('relu', 'infer')].median:.2f}x",
            )
    table.notes.append(
        f"{repeats} interleaved repetitions of {train_steps} training steps and "
        f"{infer_calls} inference calls; a `fit` call's set-up is inside the training figure. "
        "Remapper errors: lines `remapper failed` logged by a subprocess that traces one "
        "training step and one forward pass (float32)."
    )
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", choices=("relu", "maximum"), default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.check:
        _check(args.check)
        return
    print(f"CPU: {common.cpu_model()}; flags: {' '.join(common.cpu_flags())}; "
          f"load before: {common.loadavg()}")
    print(run(args.repeats).markdown())
    print(f"Load after: {common.loadavg()}")


if __name__ == "__main__":
    main()
