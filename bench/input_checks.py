"""Serving cost of the image checks: the same model exported with and without them.

`zoo.tensor_checks.check_images` runs inside every exported image signature
(values in [0, 1], no NaN/Inf, a non-empty batch under the model's limit).
Each family (default config, untrained weights) is exported twice, once as
shipped and once with `check_images` replaced by a plain conversion, and
`bench/serving_worker.py` times both in one fresh TensorFlow-only process,
interleaved: p50 latency at batch 1 and images/s at batch 256 of
`serving_default` and `encode`. Each figure is the median over repetitions.

Run: `python -m bench.input_checks` (or `--families dvae --repeats 3`).
"""

import argparse
import tempfile
from unittest import mock

import numpy as np
import tensorflow as tf

import zoo
from bench import common
from bench.serving_latency import run_worker
from zoo import tensor_checks
from zoo.export import export_model

SIGNATURES = ("serving_default", "encode")


def _unchecked(images, *args, **kwargs):
    return tf.convert_to_tensor(images)


def run(families, latency_calls: int, throughput_calls: int, batch: int, repeats: int):
    exports = {}
    with tempfile.TemporaryDirectory() as tmp:
        for family in families:
            model = zoo.FAMILIES[family]()
            exports[f"{family} checked"] = export_model(model, f"{tmp}/{family}_checked")
            with mock.patch.object(tensor_checks, "check_images", _unchecked):
                exports[f"{family} unchecked"] = export_model(model, f"{tmp}/{family}_unchecked")
        answer = run_worker(exports, latency_calls, throughput_calls, batch, repeats)
    table = common.Table(
        "Serving cost of the image checks (TF-only process)",
        ["family", "signature", "p50 batch 1 (ms) checked / unchecked",
         f"images/s batch {batch} checked / unchecked", "throughput cost"]
    )
    for family in families:
        for name in SIGNATURES:
            on, off = answer[f"{family} checked"][name], answer[f"{family} unchecked"][name]
            p50 = [float(np.median(r["p50_ms"])) for r in (on, off)]
            rate = [float(np.median(r["images_per_s"])) for r in (on, off)]
            table.add(family, name, f"{p50[0]:.2f} / {p50[1]:.2f}",
                      f"{rate[0]:,.0f} / {rate[1]:,.0f}", f"{100 * (1 - rate[0] / rate[1]):+.1f} %")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["ae", "dvae"])
    parser.add_argument("--latency_calls", type=int, default=200)
    parser.add_argument("--throughput_calls", type=int, default=8)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"Load average before: {common.loadavg()}")
    table = run(args.families, args.latency_calls, args.throughput_calls, args.batch, args.repeats)
    print(table.markdown())


if __name__ == "__main__":
    main()
