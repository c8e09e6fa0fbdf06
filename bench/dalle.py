"""DALL-E dVAE at full size: encode/decode latency of one image, and the converter's memory.

- Latency: `zoo.DalleDVAE()` (256x256x3, K=8192, n_hid=256,
  n_blk_per_group=2; random weights, speed does not depend on them), one
  image per call through `tf.function(model.encode)` (image -> 32x32 codes)
  and `tf.function(model.decode)` (codes -> image), in float32 and under the
  `mixed_bfloat16` policy (the same weights). Variants are timed in
  interleaved repetitions; a repetition's figure is the median of `calls`.
- Conversion memory: the peak resident set (RSS) of each process of
  `python -m trainers.convert_dalle` on full-size weights: the zoo step
  (`--state=<npz>` -> preset folder) and, when `.venv-torch` exists, the
  PyTorch step (`scripts/dump_dalle_state.py`, `.pkl` -> `.npz`, on
  `dall_e` modules pickled as OpenAI's files are). Each is read from
  `getrusage(RUSAGE_CHILDREN)` of a wrapper process that runs only it.

Run alone: `python -m bench.dalle` (prints the table).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import zoo
from bench import common
from trainers import convert_dalle
from zoo import dalle_weights

FULL = {}
"""Constructor arguments of the full-size model: the defaults (the released configuration)."""

TINY = {"image_shape": (32, 32, 3), "n_hid": 8, "n_blk_per_group": 1, "vocab_size": 32, "n_init": 8}
"""For the smoke test (`bench.run_all --tiny`)."""

_PEAK_RSS = (
    "import resource, subprocess, sys; "
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "sys.stderr.write(done.stderr[-3000:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "sys.exit(done.returncode)"
)

_PICKLE_MODULES = """
import sys, dall_e, torch
arch = dict(n_hid={n_hid}, n_blk_per_group={n_blk_per_group}, vocab_size={vocab_size})
torch.save(dall_e.Encoder(**arch), sys.argv[1])
torch.save(dall_e.Decoder(n_init={n_init}, **arch), sys.argv[2])
"""


def peak_rss(command: list[str]) -> tuple[float, float]:
    """Runs `command` alone under a wrapper; returns `(peak RSS in MB, wall seconds)`."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, *command], capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return int(done.stdout.split()[-1]) / 1024.0, seconds  # ru_maxrss is in KiB


def _models(kwargs: dict) -> dict:
    """A float32 and a mixed_bfloat16 model with the same weights."""
    model = zoo.DalleDVAE(**kwargs)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        bf16 = zoo.DalleDVAE(**kwargs)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    bf16.set_weights(model.get_weights())
    return {"float32": model, "mixed_bfloat16": bf16}


def latency_rows(kwargs: dict, calls: int, repeats: int) -> tuple[list[list], int]:
    """Rows (encode and decode of one image per precision, ms) and the parameter count."""
    models = _models(kwargs)
    some = models["float32"]
    image = np.random.default_rng(0).random((1, *some.image_shape), dtype=np.float32)
    codes = some.encode(image)
    measures = {}
    for precision, model in models.items():
        for what, fn, arg in (("encode", model.encode, image), ("decode", model.decode, codes)):
            compiled = tf.function(fn)
            compiled(arg).numpy()  # trace and warm up

            def measure(compiled=compiled, arg=arg):
                times = [1000.0 * common.timed(lambda: compiled(arg).numpy()) for _ in range(calls)]
                return common.percentile(times, 50)

            measures[(what, precision)] = measure
    results = common.interleaved(measures, repeats)
    h, w, c = some.image_shape
    gh, gw = some.latent_grid
    shapes = {"encode": f"{h}x{w}x{c} image -> {gh}x{gw} codes", "decode": "codes -> image"}
    rows = []
    for (what, precision), samples in results.items():
        cell = (
            common.error_cell(samples)
            if isinstance(samples, Exception)
            else f"{common.summarize(samples).format(0)} ms"
        )
        rows.append([f"`{what}`, batch 1 ({shapes[what]})", precision, cell])
    return rows, some.count_params()


def conversion_rows(kwargs: dict) -> list[list]:
    """Rows: peak RSS and time of each step of the converter on weights of this size."""
    rows = []
    model = zoo.DalleDVAE(**kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "state.npz")
        dalle_weights.write_npz(state, *dalle_weights.state_dicts(model))
        size = model.image_shape[0]
        arch = {k: getattr(model, k) for k in ("n_hid", "n_blk_per_group", "vocab_size", "n_init")}
        del model
        torch_python = convert_dalle.TORCH_VENV_PYTHON
        if torch_python.exists():
            pkls = [os.path.join(tmp, "encoder.pkl"), os.path.join(tmp, "decoder.pkl")]
            subprocess.run(
                [str(torch_python), "-c", _PICKLE_MODULES.format(**arch), *pkls], check=True
            )
            dump = [
                str(torch_python),
                str(convert_dalle.DUMP_SCRIPT),
                f"--encoder={pkls[0]}",
                f"--decoder={pkls[1]}",
                f"--output={os.path.join(tmp, 'dumped.npz')}",
            ]
            mb, seconds = peak_rss(dump)
            rows.append(
                [
                    "conversion, PyTorch step (.pkl -> .npz)",
                    "float32",
                    f"{mb:,.0f} MB peak RSS ({seconds:.0f} s)",
                ]
            )
        else:
            rows.append(
                [
                    "conversion, PyTorch step (.pkl -> .npz)",
                    "float32",
                    "not measured: no .venv-torch (`make torch-env`)",
                ]
            )
        command = [
            sys.executable,
            "-m",
            "trainers.convert_dalle",
            f"--state={state}",
            f"--output={os.path.join(tmp, 'preset')}",
            f"--image_size={size}",
        ]
        mb, seconds = peak_rss(command)
        rows.append(
            [
                "conversion, zoo step (.npz -> preset folder)",
                "float32",
                f"{mb:,.0f} MB peak RSS ({seconds:.0f} s)",
            ]
        )
    return rows


def run(
    model_kwargs: dict | None = None, calls: int = 5, repeats: int = 3, conversion: bool = True
) -> common.Table:
    """The section's table (see the module docstring); `conversion=False` skips its rows."""
    kwargs = FULL if model_kwargs is None else model_kwargs
    title = (
        "DALL-E dVAE, full size (`zoo.DalleDVAE()`, the released configuration)"
        if kwargs == FULL
        else f"DALL-E dVAE, `zoo.DalleDVAE(**{kwargs})`"
    )
    table = common.Table(title, ["measurement", "precision", "result"])
    rows, params = latency_rows(kwargs, calls, repeats)
    for row in rows + (conversion_rows(kwargs) if conversion else []):
        table.add(*row)
    table.notes.append(
        f"{params:,} parameters; latency = median over {repeats} interleaved repetitions of the "
        f"median of {calls} calls of a `tf.function` (min-max over repetitions); random weights."
    )
    table.notes.append(
        "Conversion: each step in its own process; its weights file is "
        f"{4 * params / 1e6:,.1f} MB of float32."
    )
    return table


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = run()
    print(result.markdown())
    print(json.dumps({"rows": result.rows}))
