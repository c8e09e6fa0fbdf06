"""oneDNN against TensorFlow's Eigen kernels: training, serving and generation.

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it loads, and on Linux
x86-64 leaves oneDNN off by default on CPUs without AVX512-VNNI, AVX512-BF16
or AMX. `zoo.runtime.prefer_onednn` turns it on when the zoo is imported
first; this benchmark measures what that buys on the machine at hand. Every
figure comes from fresh processes started with `TF_ENABLE_ONEDNN_OPTS=0`
and `=1`, alternating (off, on, off, on, ...):

- training: a training child process (`--train_worker`) fits each family's
  default model for a few steps (`bench.train_throughput`'s graph mode, one
  synthetic batch repeated) and reports images/second and whether TensorFlow
  reports oneDNN on;
- serving: the shipped models' float32 exports in `bench.serving_latency`'s
  TensorFlow-only worker, `serving_default` at batch 1 and at batch 256;
- generation: an untrained default `ImageGenerator`'s export (the served,
  cached `generate`) in `bench.generation`'s TensorFlow-only worker.

Run alone: `python -m bench.onednn` (about 6 minutes on 2 cores).
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from bench import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {"off": "0", "on": "1"}
"""Column -> the `TF_ENABLE_ONEDNN_OPTS` value of its processes."""


def _train_worker(request: dict) -> dict:
    """In the child: images/second of each family, and TensorFlow's oneDNN state."""
    import tensorflow as tf

    from bench import train_throughput
    from zoo import runtime

    batch, rates = request["batch"], {}
    rng = np.random.default_rng(0)
    for family in request["families"]:
        model = train_throughput._build(family, "graph", request["model_kwargs"].get(family, {}))
        images = rng.random((batch, *model.image_shape), dtype=np.float32)
        dataset = tf.data.Dataset.from_tensors(images).repeat()
        train_throughput._fit_rate(model, dataset, 2, batch)  # trace and warm up
        rates[family] = train_throughput._fit_rate(model, dataset, request["steps"], batch)
    return {"onednn": runtime.onednn_enabled(), "images_per_s": rates}


def _exports(tmp: str, families, shipped: bool, model_kwargs: dict, generation: bool,
             generation_kwargs: dict | None):
    """Float32 SavedModels of the served models and (with `generation`) of a generator."""
    from bench.generation import build_generator
    from bench.serving_latency import load_models
    from zoo.export import export_model

    models = load_models(families, shipped, ("float32",), model_kwargs)
    exports = {
        name: export_model(model, os.path.join(tmp, name), version=1, keras_file=False)
        for name, (model, _) in models.items()
    }
    generator = None
    if generation:
        generator = export_model(
            build_generator(generation_kwargs),
            os.path.join(tmp, "generator"), version=1, keras_file=False,
        )
    return exports, generator


def run(
    families=("ae", "vqvae", "dvae"),
    shipped: bool = True,
    model_kwargs: dict | None = None,
    train_batch: int = 64,
    train_steps: int = 8,
    latency_calls: int = 50,
    throughput_calls: int = 2,
    batch: int = 256,
    generation: bool = True,
    generation_kwargs: dict | None = None,
    generation_batch: int = 256,
    repeats: int = 2,
) -> common.Table:
    """Times the three workloads with oneDNN off and on; returns a `common.Table`.

    Args:
        families: family names to train and serve.
        shipped: bool. Serve the shipped `saved_models/<family>_fashion_mnist`
            (else default untrained models built from `model_kwargs`).
        model_kwargs: family -> constructor arguments (training, and serving
            when not `shipped`).
        train_batch, train_steps: the size of each timed `fit`.
        latency_calls, throughput_calls, batch: serving calls per repetition
            and the large batch size.
        generation: bool. Also time an untrained generator's `generate`.
        generation_kwargs: `bench.generation.build_generator`'s sizes
            (default sizes when `None`).
        generation_batch: the large batch of `generate`.
        repeats: int. Processes per setting, alternating off and on.
    """
    from bench import serving_latency
    from bench.generation import run_worker as run_generation_worker

    model_kwargs = model_kwargs or {}
    samples: dict[tuple[str, str], list[float]] = {}
    states = {column: set() for column in SETTINGS}

    def add(measure: str, column: str, value: float) -> None:
        samples.setdefault((measure, column), []).append(value)

    with tempfile.TemporaryDirectory() as tmp:
        exports, generator = _exports(
            tmp, families, shipped, model_kwargs, generation, generation_kwargs
        )
        for _ in range(repeats):
            for column, value in SETTINGS.items():
                env = {"TF_ENABLE_ONEDNN_OPTS": value}
                trained = common.run_json_worker(
                    ["-m", "bench.onednn", "--train_worker"],
                    {"families": list(families), "batch": train_batch, "steps": train_steps,
                     "model_kwargs": model_kwargs},
                    common.worker_env(env), ROOT, "oneDNN training worker",
                )  # fmt: skip
                states[column].add(trained["onednn"])
                for family, rate in trained["images_per_s"].items():
                    add(f"training {family}, images/s (batch {train_batch})", column, rate)
                served = serving_latency.run_worker(
                    exports, latency_calls, throughput_calls, batch, 1, env=env
                )
                for name, signatures in served.items():
                    result = _ok(signatures["serving_default"], f"{name} serving_default")
                    add(f"serving {name}, images/s (batch {batch})", column,
                        result["images_per_s"][0])
                    add(f"serving {name}, p50 ms (batch 1)", column, result["p50_ms"][0])
                if generator is not None:
                    request = {
                        "variants": {"served": {"export": generator, "signature": "generate",
                                                "guidance_scale": 1.0}},
                        "latency_calls": max(2, latency_calls // 5),
                        "throughput_calls": 1,
                        "batch": generation_batch,
                        "repeats": 1,
                    }
                    result = _ok(run_generation_worker(request, env)["served"], "generate")
                    add(f"generation, images/s (batch {generation_batch})", column,
                        result["images_per_s"][0])
                    add("generation, p50 ms (batch 1)", column, result["p50_ms"][0])
    table = common.Table(
        "TensorFlow's Eigen kernels against oneDNN's (float32), median (min-max)",
        ["measure", "oneDNN off (`=0`)", "oneDNN on (`=1`)", "speed-up with oneDNN"],
    )
    for measure in dict.fromkeys(m for m, _ in samples):
        off, on = (common.summarize(samples[(measure, c)]) for c in SETTINGS)
        latency = "ms" in measure
        speedup = off.median / on.median if latency else on.median / off.median
        digits = 2 if latency else 0
        table.add(measure, off.format(digits), on.format(digits), f"{speedup:.2f}x")
    table.notes.append(
        f"{repeats} fresh processes per setting, alternating; `TF_ENABLE_ONEDNN_OPTS` set "
        f"to 0 or 1 in each. TensorFlow reported oneDNN {_state(states['off'])} in the `=0` "
        f"processes and {_state(states['on'])} in the `=1` ones. Its own default (variable "
        "unset) on Linux x86-64 is on only for CPUs with AVX512-VNNI, AVX512-BF16 or AMX; "
        f"this CPU's SIMD flags: {' '.join(common.cpu_flags()) or 'none listed'}."
    )
    table.notes.append(
        f"Training: the default model of each family, graph mode, {train_steps} steps of "
        f"batch {train_batch} per process after a warm-up. Serving: "
        f"{'the shipped' if shipped else 'untrained'} models' float32 exports, "
        f"`serving_default`, {latency_calls} batch-1 and {throughput_calls} batch-{batch} "
        "calls per process in a TensorFlow-only process."
        + (" Generation: an untrained generator's cached `generate` (guidance 1), in "
           "`bench.generation`'s TensorFlow-only worker." if generation else "")
        + " For latencies the speed-up is off / on."
    )
    return table


def _ok(result: dict, name: str) -> dict:
    """A worker's timing of one signature; raises its error instead."""
    if "error" in result:
        raise RuntimeError(f"{name} failed in the worker: {result['error']}")
    return result


def _state(values: set) -> str:
    names = {True: "on", False: "off", None: "unknown"}
    return " and ".join(sorted(names[v] for v in values)) or "n/a"


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--train_worker"]:
        with open(argv[1]) as f:
            answer = _train_worker(json.load(f))
        with open(argv[2], "w") as f:
            json.dump(answer, f)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["ae", "vqvae", "dvae"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no_generation", action="store_true")
    args = parser.parse_args(argv)
    print(f"{common.cpu_model()}, SIMD {' '.join(common.cpu_flags())}")
    start = time.perf_counter()
    table = run(args.families, repeats=args.repeats, generation=not args.no_generation)
    print(table.markdown())
    print(f"({(time.perf_counter() - start) / 60:.1f} minutes)")


if __name__ == "__main__":
    main()
