"""Times every signature of exported SavedModels, importing only TensorFlow.

Run by `bench.serving_latency` as a script in a fresh process, from a
temporary working directory, so the project cannot be imported: this is what
a serving process sees. Reads a JSON request from argv[1] and writes a JSON
answer to argv[2]:

request: {"exports": {family: version_dir}, "latency_calls": int,
          "throughput_calls": int, "throughput_batch": int, "repeats": int}
answer:  {family: {signature: {"p50_ms": [...], "p99_ms": [...],
          "images_per_s": [...]}}} (one value per repetition) or
          {family: {signature: {"error": "..."}}}.
"""

import json
import sys
import time

import numpy as np
import tensorflow as tf


def _inputs(signature, batch: int, png: bytes) -> dict:
    """Request tensors of `batch` items for a signature, from its input specs."""
    _, specs = signature.structured_input_signature
    inputs = {}
    rng = np.random.default_rng(0)
    for name, spec in specs.items():
        if spec.dtype == tf.string:
            inputs[name] = tf.constant([png] * batch)
        elif spec.shape.rank == 0:  # sample: num_samples, seed
            inputs[name] = tf.constant(batch if name == "num_samples" else 0, spec.dtype)
        elif spec.dtype.is_integer:  # codes
            shape = [batch, *spec.shape[1:]]
            inputs[name] = tf.zeros(shape, spec.dtype)
        else:
            shape = [batch, *spec.shape[1:]]
            inputs[name] = tf.constant(rng.random(shape, dtype=np.float32))
    return inputs


def _call(fn, inputs) -> None:
    for value in fn(**inputs).values():
        value.numpy()


def main() -> None:
    with open(sys.argv[1]) as f:
        request = json.load(f)
    if "zoo" in sys.modules or "trainers" in sys.modules:
        raise RuntimeError("The serving worker must not import the project.")
    png = tf.io.encode_png(np.full((28, 28, 1), 128, np.uint8)).numpy()
    batch = request["throughput_batch"]
    answer = {}
    measures = {}
    for family, path in request["exports"].items():
        loaded = tf.saved_model.load(path)
        answer[family] = {}
        for name, signature in loaded.signatures.items():
            try:
                one = _inputs(signature, 1, png)
                many = _inputs(signature, batch, png)
                for _ in range(3):  # warm up both shapes
                    _call(signature, one)
                    _call(signature, many)
            except Exception as error:  # noqa: BLE001 - reported in the table
                answer[family][name] = {"error": f"{type(error).__name__}: {error}"[:200]}
                continue
            answer[family][name] = {"p50_ms": [], "p99_ms": [], "images_per_s": []}
            measures[(family, name)] = (signature, one, many)
    for _ in range(request["repeats"]):  # interleaved over every signature
        for (family, name), (signature, one, many) in measures.items():
            latencies = []
            for _ in range(request["latency_calls"]):
                start = time.perf_counter()
                _call(signature, one)
                latencies.append(1000.0 * (time.perf_counter() - start))
            start = time.perf_counter()
            for _ in range(request["throughput_calls"]):
                _call(signature, many)
            rate = batch * request["throughput_calls"] / (time.perf_counter() - start)
            result = answer[family][name]
            result["p50_ms"].append(float(np.percentile(latencies, 50)))
            result["p99_ms"].append(float(np.percentile(latencies, 99)))
            result["images_per_s"].append(rate)
    with open(sys.argv[2], "w") as f:
        json.dump(answer, f)


if __name__ == "__main__":
    main()
