"""Training throughput: images/second per family, batch size and execution mode.

Modes (every one computes the same model; only how TF runs it changes):
- `graph`: `model.compile(optimizer)` as the train command does (Keras's
  default on CPU: a `tf.function`, no XLA).
- `xla`: `compile(..., jit_compile=True)`.
- `spe8`: `compile(..., steps_per_execution=8)`: 8 steps per call into the
  graph, so Python and callback overhead is paid once per 8 steps.
- `bf16`: the `mixed_bfloat16` policy (bfloat16 compute, float32 variables);
  oneDNN uses the AVX512_BF16 instructions where the CPU has them.

Data is one synthetic batch repeated (`Dataset.from_tensors(batch).repeat()`),
so the figures are the model's speed; the input pipeline has its own benchmark.
A repetition is one `model.fit` call of a few steps, timed from call to return.

Run alone: `python -m bench.train_throughput --families ae --batch_sizes 64`.
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

import zoo
from bench import common

MODES = ("graph", "xla", "spe8", "bf16")


def _build(family: str, mode: str, model_kwargs: dict) -> keras.Model:
    previous = keras.mixed_precision.global_policy().name
    if mode == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = zoo.FAMILIES[family](**model_kwargs)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        jit_compile=mode == "xla",
        steps_per_execution=8 if mode == "spe8" else 1,
    )
    return model


class _StepClock(keras.callbacks.Callback):
    """Time stamps at the end of each step, after the step's loss is on the host."""

    def __init__(self):
        super().__init__()
        self.stamps = []

    def on_train_batch_end(self, batch, logs=None):
        float(np.asarray(logs["loss"]).reshape(-1)[0])  # wait for the step to finish
        # With steps_per_execution > 1, `batch` is the last step of the chunk.
        self.stamps.append((batch, time.perf_counter()))


def _fit_rate(model, dataset, steps: int, batch_size: int) -> float:
    """Images/second of the steps of one `fit` call after its first step (or chunk).

    Timing from the end of the first step to the end of the last leaves out
    `fit`'s per-call set-up (iterator, callbacks), which would otherwise
    weigh heavily on runs of a few steps.
    """
    clock = _StepClock()
    model.fit(
        dataset, epochs=1, steps_per_epoch=steps + 1, verbose=0, shuffle=False, callbacks=[clock]
    )
    (first_step, first_time), (last_step, last_time) = clock.stamps[0], clock.stamps[-1]
    return (last_step - first_step) * batch_size / (last_time - first_time)


def run(
    families=tuple(zoo.FAMILIES),
    batch_sizes=(64, 128, 256),
    modes=MODES,
    images_per_repeat: int = 512,
    repeats: int = 3,
    peak_gflops: float | None = None,
    model_kwargs: dict | None = None,
) -> common.Table:
    """Measures training images/second; one row per (family, batch, mode).

    Args:
        families: family names (keys of `zoo.FAMILIES`).
        batch_sizes: batch sizes.
        modes: a subset of `MODES`.
        images_per_repeat: int. Images per timed `fit` call (at least 8
            steps for `spe8`, 2 otherwise).
        repeats: int. Interleaved repetitions per variant.
        peak_gflops: float. The machine's measured fp32 matmul rate; adds
            the achieved GFLOP/s and the fraction of that peak.
        model_kwargs: family -> constructor arguments (default config when
            missing).

    Returns:
        A `common.Table`.
    """
    model_kwargs = model_kwargs or {}
    table = common.Table(
        "Training throughput (images/s, median (min-max))",
        [
            "family",
            "batch",
            "mode",
            "images/s",
            "vs graph",
            "train GFLOP/image",
            "GFLOP/s",
            "% of fp32 peak",
        ],
    )
    rng = np.random.default_rng(0)
    for family in families:
        kwargs = model_kwargs.get(family, {})
        _, train_flops = common.training_flops(zoo.FAMILIES[family](**kwargs))
        for batch_size in batch_sizes:
            shape = tuple(kwargs.get("image_shape", (28, 28, 1)))
            batch = rng.random((batch_size, *shape), dtype=np.float32)
            dataset = tf.data.Dataset.from_tensors(batch).repeat()
            measures, errors = {}, {}
            run_modes = [m for m in modes if m != "spe8" or batch_size == min(batch_sizes)]
            for mode in run_modes:
                minimum = 8 if mode == "spe8" else 2
                # XLA runs 3-4x slower on this CPU: half the images keeps the run short.
                images = images_per_repeat // 2 if mode == "xla" else images_per_repeat
                steps = max(images // batch_size, minimum)
                steps = -(-steps // 8) * 8 if mode == "spe8" else steps
                try:
                    model = _build(family, mode, kwargs)
                    _fit_rate(model, dataset, minimum, batch_size)  # trace, compile, warm up
                except Exception as error:  # noqa: BLE001 - reported in the table
                    errors[mode] = error
                    continue
                measures[mode] = lambda m=model, s=steps, d=dataset, b=batch_size: _fit_rate(
                    m, d, s, b
                )
            results = common.interleaved(measures, repeats)
            results.update(errors)
            base = results.get("graph")
            for mode in run_modes:
                samples = results[mode]
                if isinstance(samples, Exception):
                    table.add(family, batch_size, mode, common.error_cell(samples), "", "", "", "")
                    continue
                stat = common.summarize(samples)
                ratio = (
                    f"{stat.median / common.summarize(base).median:.2f}x"
                    if isinstance(base, list) and base
                    else ""
                )
                gflops = stat.median * train_flops / 1e9
                share = f"{100 * gflops / peak_gflops:.0f} %" if peak_gflops else ""
                table.add(
                    family,
                    batch_size,
                    mode,
                    stat.format(),
                    ratio,
                    f"{train_flops / 1e9:.3f}",
                    f"{gflops:.0f}",
                    share,
                )
    table.notes.append(
        "FLOPs per image: TF profiler count of the forward + backward graph "
        "(`tf.GradientTape` gradient of the loss, no optimizer update) at a fixed batch; "
        "it is 2.9-3.0x the forward count, as the 3x rule of thumb says."
    )
    table.notes.append(
        "Modes: graph = `compile(optimizer)` as the train command does; xla = "
        "`jit_compile=True`; spe8 = `steps_per_execution=8` (smallest batch only: that is "
        "where per-step overhead weighs most); bf16 = `mixed_bfloat16` policy."
    )
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(zoo.FAMILIES))
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[64, 128, 256])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images_per_repeat", type=int, default=512)
    args = parser.parse_args(argv)
    peak = common.matmul_peak()
    print(f"fp32 matmul peak: {peak.format(1)} GFLOP/s\n")
    table = run(
        args.families, args.batch_sizes, args.modes, args.images_per_repeat, args.repeats, peak.max
    )
    print(table.markdown())


if __name__ == "__main__":
    main()
