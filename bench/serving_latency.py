"""Serving: latency at batch 1 and throughput at batch 256 of the exports.

Each shipped model (`<family>_fashion_mnist`, or any preset named; with
`--untrained`, or in the smoke test, a default or tiny untrained model of each family) is
exported with `zoo.export.export_model`, in float32 and, on request, loaded
under the `mixed_bfloat16` policy (bfloat16 compute inside, float32 inputs
and outputs; its largest difference from the float32 reconstruction on 10,000
test images, and for discrete models the share of codes that differ, is reported;
`--differences` reports only that, without timing). A fresh process that
imports only TensorFlow (`bench/serving_worker.py`) loads every SavedModel
and times each signature: p50/p99 latency over many batch-1 calls, and
images/second over several batch-256 calls. For comparison, the same model
in this process is timed through `model.predict(x)` and a direct `model(x)`
call (eager). Repetitions are interleaved; each figure is the median over
repetitions (min-max).

Run alone: `python -m bench.serving_latency --families ae`.
"""

import argparse
import os
import tempfile
import time

import numpy as np

import zoo
from bench import common
from zoo import presets
from zoo.export import export_model

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serving_worker.py")
TARGET_P50_MS = 1.5
TARGET_IMAGES_PER_S = 4000.0


def _in_process(model, latency_calls: int, throughput_calls: int, batch: int, repeats: int):
    """Times `model.predict` and `model(x)`: name -> (p50s, p99s, rates)."""
    shape = model.image_shape
    rng = np.random.default_rng(0)
    one = rng.random((1, *shape), dtype=np.float32)
    many = rng.random((batch, *shape), dtype=np.float32)
    callers = {
        "model.predict": lambda x: model.predict(x, batch_size=len(x), verbose=0),
        "model(x)": lambda x: np.asarray(model(x, training=False)),
    }
    for call in callers.values():  # warm up
        call(one), call(many)

    def measure(call):
        def run():
            latencies = [1000.0 * common.timed(lambda: call(one)) for _ in range(latency_calls)]
            seconds = common.timed(lambda: [call(many) for _ in range(throughput_calls)])
            return (
                common.percentile(latencies, 50),
                common.percentile(latencies, 99),
                batch * throughput_calls / seconds,
            )

        return run

    results = common.interleaved({n: measure(c) for n, c in callers.items()}, repeats)
    out = {}
    for name, samples in results.items():
        if isinstance(samples, Exception):
            out[name] = samples
        else:
            out[name] = tuple(list(column) for column in zip(*samples, strict=True))
    return out


def run_worker(
    exports: dict,
    latency_calls: int,
    throughput_calls: int,
    batch: int,
    repeats: int,
    env: dict | None = None,
    **options,
) -> dict:
    """Runs `serving_worker.py` in a fresh process that cannot import the project.

    `env` adds to (or overrides) this process's environment in the worker's;
    `options` are the worker's optional request keys (`signatures`,
    `intra_op_threads`, `inter_op_threads`, `clients`).
    """
    request = {
        "exports": exports,
        "latency_calls": latency_calls,
        "throughput_calls": throughput_calls,
        "throughput_batch": batch,
        "repeats": repeats,
        **options,
    }
    return common.run_json_worker(
        [WORKER], request, common.worker_env(env), None, "Serving worker"
    )


def load_models(families, shipped: bool, precisions, model_kwargs: dict) -> dict:
    """name -> (model, precision): shipped (or untrained) models in each precision.

    With `shipped`, an entry of `families` is a family (its shipped
    `<family>_fashion_mnist`) or the name of any shipped preset.
    """
    import keras

    models = {}
    for family in families:
        for precision in precisions:
            keras.mixed_precision.set_global_policy(precision)
            try:
                if shipped:
                    name = f"{family}_fashion_mnist" if family in zoo.FAMILIES else family
                    model = keras.saving.load_model(
                        presets.saved_models_dir() / name / presets.MODEL_FILE, safe_mode=True
                    )
                else:
                    name, model = family, zoo.FAMILIES[family](**model_kwargs.get(family, {}))
            finally:
                keras.mixed_precision.set_global_policy("float32")
            suffix = "" if precision == "float32" else " (bf16)"
            models[name + suffix] = (model, precision)
    return models


def _bf16_differences(models: dict) -> list[str]:
    """Notes: max |bf16 - float32| reconstruction and both test MSEs, per model."""
    from trainers import data

    test = data.load_split("fashion_mnist", "test", (28, 28, 1))
    images = np.concatenate([b.numpy() for b in data.make_dataset(test, 1000, shuffle=False)])
    notes = []
    for name, (model, precision) in models.items():
        base = name.removesuffix(" (bf16)")
        if precision == "float32" or base not in models:
            continue
        if model.image_shape != (28, 28, 1):
            continue
        reference = np.asarray(models[base][0].predict(images, batch_size=500, verbose=0))
        low = np.asarray(model.predict(images, batch_size=500, verbose=0))
        difference = np.abs(low - reference)
        codes = ""
        if hasattr(model, "num_embeddings"):  # discrete: how many positions pick another code
            changed = np.mean(_codes(model, images) != _codes(models[base][0], images))
            codes = f"; {100 * changed:.1f} % of the codes differ"
        notes.append(
            f"{name}: max |bf16 - float32| pixel difference {difference.max():.4f}, "
            f"mean {difference.mean():.5f}; test MSE {np.mean((low - images) ** 2):.5f} "
            f"(bf16) vs {np.mean((reference - images) ** 2):.5f} (float32){codes}, "
            "10,000 images."
        )
    return notes


def _codes(model, images: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(model.encode(images[i:i + 500]))
                           for i in range(0, len(images), 500)])


def run(
    families=tuple(zoo.FAMILIES),
    latency_calls: int = 100,
    throughput_calls: int = 4,
    batch: int = 256,
    repeats: int = 3,
    model_kwargs: dict | None = None,
    shipped: bool = False,
    precisions=("float32",),
) -> common.Table:
    """Exports each model and times every signature; returns a `common.Table`.

    Args:
        families: family names, or with `shipped` also shipped preset names.
        latency_calls, throughput_calls, batch, repeats: sizes of the timing.
        model_kwargs: family -> constructor arguments of untrained models.
        shipped: bool. Time shipped models: a family's `<family>_fashion_mnist`,
            or the preset an entry names.
        precisions: policies to export each model in (`"float32"`,
            `"mixed_bfloat16"`).
    """
    model_kwargs = model_kwargs or {}
    table = common.Table(
        "Serving latency (batch 1) and throughput (batch 256), median (min-max)",
        [
            "model",
            "endpoint",
            "p50 ms (batch 1)",
            "p99 ms (batch 1)",
            f"images/s (batch {batch})",
            "targets",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        models = load_models(families, shipped, precisions, model_kwargs)
        exports = {}
        for i, (name, (model, _)) in enumerate(models.items()):
            exports[name] = export_model(
                model, os.path.join(tmp, str(i)), version=1, keras_file=False
            )
        start = time.perf_counter()
        served = run_worker(exports, latency_calls, throughput_calls, batch, repeats)
        worker_seconds = time.perf_counter() - start
        for family, (model, precision) in models.items():
            rows = [(f"SavedModel `{n}`", r) for n, r in sorted(served[family].items())]
            if precision == "float32":
                local = _in_process(model, latency_calls, throughput_calls, batch, repeats)
                rows += [(name, r) for name, r in local.items()]
            for endpoint, result in rows:
                if isinstance(result, Exception) or "error" in result:
                    message = result if isinstance(result, Exception) else result["error"]
                    table.add(family, endpoint, f"failed: {str(message)[:80]}", "", "", "")
                    continue
                if isinstance(result, dict):
                    p50, p99, rate = result["p50_ms"], result["p99_ms"], result["images_per_s"]
                else:
                    p50, p99, rate = result
                p50, p99, rate = (common.summarize(v) for v in (p50, p99, rate))
                target = ""
                if endpoint in ("SavedModel `serving_default`",):
                    ok_latency = "met" if p50.median <= TARGET_P50_MS else "missed"
                    ok_rate = "met" if rate.median >= TARGET_IMAGES_PER_S else "missed"
                    target = (f"p50 <= {TARGET_P50_MS:g} ms: {ok_latency}; "
                              f">= {TARGET_IMAGES_PER_S:,.0f}/s: {ok_rate}")
                table.add(family, endpoint, p50.format(2), p99.format(2), rate.format(), target)
    table.notes.append(
        f"SavedModel rows: `tf.saved_model.load` in a fresh process that imports only "
        f"TensorFlow (worker wall time {worker_seconds:.0f} s); each call converts its outputs "
        "to numpy. `sample` draws `num_samples` images (1 or the batch); "
        "`reconstruct_image_bytes` decodes and re-encodes PNGs. `model.predict` and "
        "`model(x)` are the same model in the benchmark process."
    )
    table.notes.append(
        f"{latency_calls} batch-1 calls and {throughput_calls} batch-{batch} calls "
        "per repetition; targets (serving_default, i.e. reconstruct): "
        f"p50 <= {TARGET_P50_MS:g} ms at batch 1, >= {TARGET_IMAGES_PER_S:,.0f} images/s at "
        f"batch {batch}."
    )
    if "mixed_bfloat16" in precisions and shipped:
        table.notes.extend(_bf16_differences(models))
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(zoo.FAMILIES),
                        help="families (their shipped <family>_fashion_mnist) or "
                             "shipped preset names")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency_calls", type=int, default=100)
    parser.add_argument("--untrained", action="store_true", help="default untrained models")
    parser.add_argument("--bf16", action="store_true", help="also export in mixed_bfloat16")
    parser.add_argument("--differences", action="store_true",
                        help="only compare the shipped models' bf16 outputs and codes with "
                             "float32 on the test set (no timing)")
    args = parser.parse_args(argv)
    precisions = ("float32", "mixed_bfloat16") if args.bf16 else ("float32",)
    print(f"CPU: {common.cpu_model()}; flags: {' '.join(common.cpu_flags())}; "
          f"load before: {common.loadavg()}")
    if args.differences:
        models = load_models(args.families, True, ("float32", "mixed_bfloat16"), {})
        print("\n".join(_bf16_differences(models)))
        return
    table = run(args.families, args.latency_calls, repeats=args.repeats,
                shipped=not args.untrained, precisions=precisions)
    print(table.markdown())


if __name__ == "__main__":
    main()
