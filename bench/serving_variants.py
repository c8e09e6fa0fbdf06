"""What the serving changes buy: the zoo's layers and frozen weights, one at a time.

Exports of the shipped VQ-VAE and dVAE are written three ways, each with the
`serving_default` signature only:

- `Keras layers, variables` (before): plain `Conv2D`/`Conv2DTranspose` in
  place of `zoo.convolutions`' `PointwiseConv2D` (1x1 convolutions as one
  `MatMul`) and `SubpixelConv2DTranspose` (the image head by phases), weights
  as variables;
- `zoo layers, variables`;
- `zoo layers, frozen` (shipped): the weights folded into the graph as
  constants (`zoo.export.frozen_function`).

Every variant holds the same weights; a fresh process that imports only
TensorFlow times them interleaved (`bench/serving_worker.py`): the p50 of
batch-1 calls and images/s at batch 256, in float32 and mixed_bfloat16.

Run alone: `python -m bench.serving_variants`.
"""

import argparse
import contextlib
import os
import tempfile

import keras
import numpy as np

import zoo
from bench import common, serving_latency
from zoo import blocks
from zoo.export import build_archive, model_signatures

_ZOO_LAYERS = (blocks.PointwiseConv2D, blocks.SubpixelConv2DTranspose)
VARIANTS = {  # name -> (Keras layers, frozen)
    "Keras layers, variables (before)": (True, False),
    "zoo layers, variables": (False, False),
    "zoo layers, frozen (shipped)": (False, True),
}


def _plain_pointwise(filters, **kwargs):
    return keras.layers.Conv2D(filters, 1, **kwargs)


@contextlib.contextmanager
def _keras_layers():
    """Models built inside use plain Keras convolutions for the zoo's layers."""
    blocks.PointwiseConv2D, blocks.SubpixelConv2DTranspose = (
        _plain_pointwise, keras.layers.Conv2DTranspose)
    try:
        yield
    finally:
        blocks.PointwiseConv2D, blocks.SubpixelConv2DTranspose = _ZOO_LAYERS


def _model(name: str, precision: str, keras_layers: bool):
    keras.mixed_precision.set_global_policy(precision)
    try:
        shipped = zoo.load(name)
        if not keras_layers:
            return shipped
        with _keras_layers():
            model = type(shipped).from_config(shipped.get_config())
        model.set_weights(shipped.get_weights())
        return model
    finally:
        keras.mixed_precision.set_global_policy("float32")


def run(names=("vqvae_fashion_mnist", "dvae_fashion_mnist"), latency_calls: int = 100,
        throughput_calls: int = 4, repeats: int = 3) -> common.Table:
    """Exports and times every variant; returns a `common.Table`."""
    table = common.Table(
        "Serving changes one at a time (`serving_default`), median (min-max)",
        ["model", "precision", "variant", "max |difference|", "p50 ms (batch 1)",
         "images/s (batch 256)"],
    )
    images = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        exports, rows = {}, []
        for name in names:
            for precision in ("float32", "mixed_bfloat16"):
                reference = None
                for variant, (keras_layers, frozen) in VARIANTS.items():
                    model = _model(name, precision, keras_layers)
                    signature = {"serving_default": model_signatures(model)["serving_default"]}
                    path = os.path.join(tmp, str(len(exports)))
                    build_archive(model, signature, frozen).write_out(path, verbose=False)
                    output = np.asarray(model(images, training=False), np.float64)
                    reference = output if reference is None else reference
                    key = f"{name} {precision} {variant}"
                    exports[key] = path
                    rows.append((key, name, precision, variant, np.abs(output - reference).max()))
        served = serving_latency.run_worker(exports, latency_calls, throughput_calls, 256, repeats)
    for key, name, precision, variant, difference in rows:
        result = served[key]["serving_default"]
        if "error" in result:
            table.add(name, precision, variant, "", f"failed: {result['error'][:80]}", "")
            continue
        table.add(name, precision, variant, "" if "before" in variant else f"{difference:.1e}",
                  common.summarize(result["p50_ms"]).format(2),
                  common.summarize(result["images_per_s"]).format())
    table.notes.append(
        f"{repeats} interleaved repetitions of {latency_calls} batch-1 and {throughput_calls} "
        "batch-256 calls in a TensorFlow-only process. Max |difference|: reconstructions of 64 "
        "random images against the first variant, through `model(x)` (the same graph "
        "code as the exports). The quantizers' inference changes (VQ distances without the "
        "row norm, the dVAE's lookup) are in every variant."
    )
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"CPU: {common.cpu_model()}; flags: {' '.join(common.cpu_flags())}; "
          f"load before: {common.loadavg()}")
    print(run(repeats=args.repeats).markdown())
    print(f"Load after: {common.loadavg()}")


if __name__ == "__main__":
    main()
