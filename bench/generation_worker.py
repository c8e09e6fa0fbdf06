"""Times the `generate` signature of exported generators, importing only TensorFlow.

Run by `bench.generation` as a script in a fresh process from a temporary
working directory, so the project cannot be imported: this is what a serving
process sees. Reads a JSON request from argv[1], writes a JSON answer to argv[2]:

request: {"variants": {name: {"export": version_dir, "signature": str,
          "guidance_scale": float}}, "latency_calls": int,
          "throughput_calls": int, "batch": int, "repeats": int}
answer:  {name: {"p50_ms": [...], "p99_ms": [...], "images_per_s": [...],
          "cpu_ms_batch1": [...], "images_per_cpu_s": [...]}} (one value per
          repetition) or {name: {"error": "..."}}. The CPU figures are this
          process's CPU time (all threads), less sensitive than wall time to
          other jobs on a shared machine.
"""

import json
import sys
import time

import numpy as np
import tensorflow as tf


def _inputs(batch: int, guidance_scale: float) -> dict:
    return {
        "labels": tf.zeros([batch], tf.int32),
        "seed": tf.constant(0, tf.int32),
        "temperature": tf.constant(1.0, tf.float32),
        "top_k": tf.constant(0, tf.int32),
        "guidance_scale": tf.constant(guidance_scale, tf.float32),
    }


def _call(fn, inputs) -> None:
    for value in fn(**inputs).values():
        value.numpy()


def main() -> None:
    with open(sys.argv[1]) as f:
        request = json.load(f)
    if "zoo" in sys.modules or "trainers" in sys.modules:
        raise RuntimeError("The generation worker must not import the project.")
    batch, answer, measures, loaded = request["batch"], {}, {}, {}
    for name, variant in request["variants"].items():
        try:
            if variant["export"] not in loaded:
                loaded[variant["export"]] = tf.saved_model.load(variant["export"])
            fn = loaded[variant["export"]].signatures[variant["signature"]]
            one = _inputs(1, variant["guidance_scale"])
            many = _inputs(batch, variant["guidance_scale"])
            _call(fn, one)  # warm up both shapes
            _call(fn, many)
        except Exception as error:  # noqa: BLE001 - reported in the table
            answer[name] = {"error": f"{type(error).__name__}: {error}"[:200]}
            continue
        answer[name] = {
            "p50_ms": [],
            "p99_ms": [],
            "images_per_s": [],
            "cpu_ms_batch1": [],
            "images_per_cpu_s": [],
        }
        measures[name] = (fn, one, many)
    for _ in range(request["repeats"]):  # interleaved over the variants
        for name, (fn, one, many) in measures.items():
            latencies = []
            cpu_start = time.process_time()
            for _ in range(request["latency_calls"]):
                start = time.perf_counter()
                _call(fn, one)
                latencies.append(1000.0 * (time.perf_counter() - start))
            cpu_per_call = (time.process_time() - cpu_start) / request["latency_calls"]
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(request["throughput_calls"]):
                _call(fn, many)
            rate = batch * request["throughput_calls"] / (time.perf_counter() - start)
            cpu_rate = batch * request["throughput_calls"] / (time.process_time() - cpu_start)
            answer[name]["cpu_ms_batch1"].append(1000.0 * cpu_per_call)
            answer[name]["images_per_cpu_s"].append(cpu_rate)
            answer[name]["p50_ms"].append(float(np.percentile(latencies, 50)))
            answer[name]["p99_ms"].append(float(np.percentile(latencies, 99)))
            answer[name]["images_per_s"].append(rate)
    with open(sys.argv[2], "w") as f:
        json.dump(answer, f)


if __name__ == "__main__":
    main()
