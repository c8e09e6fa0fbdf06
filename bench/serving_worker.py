"""Times every signature of exported SavedModels, importing only TensorFlow.

Run by `bench.serving_latency` as a script in a fresh process, from a
temporary working directory, so the project cannot be imported: this is what
a serving process sees. Reads a JSON request from argv[1] and writes a JSON
answer to argv[2]:

request: {"exports": {family: version_dir}, "latency_calls": int,
          "throughput_calls": int, "throughput_batch": int, "repeats": int,
          optional "signatures": [names] (default: all),
          "intra_op_threads": int, "inter_op_threads": int (0: TensorFlow's default),
          "clients": int (large-batch callers at once, default 1)}
answer:  {family: {signature: {"p50_ms": [...], "p99_ms": [...],
          "images_per_s": [...]}}} (one value per repetition) or
          {family: {signature: {"error": "..."}}}.
"""

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

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


def _rate(signature, many, batch: int, calls: int, clients: int) -> float:
    """Images/second of `clients` callers each making `calls` batch calls at once."""
    if clients == 1:
        start = time.perf_counter()
        for _ in range(calls):
            _call(signature, many)
        return batch * calls / (time.perf_counter() - start)
    with ThreadPoolExecutor(clients) as pool:  # TensorFlow releases the GIL while it runs
        start = time.perf_counter()
        for future in [pool.submit(lambda: [_call(signature, many) for _ in range(calls)])
                       for _ in range(clients)]:
            future.result()
        return batch * calls * clients / (time.perf_counter() - start)


def main() -> None:
    with open(sys.argv[1]) as f:
        request = json.load(f)
    if "zoo" in sys.modules or "trainers" in sys.modules:
        raise RuntimeError("The serving worker must not import the project.")
    # Thread pools are fixed when the runtime starts: set before any op runs,
    # as TF Serving's --tensorflow_intra_op_parallelism does.
    if request.get("intra_op_threads"):
        tf.config.threading.set_intra_op_parallelism_threads(request["intra_op_threads"])
    if request.get("inter_op_threads"):
        tf.config.threading.set_inter_op_parallelism_threads(request["inter_op_threads"])
    applied = (tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads())
    if applied != (request.get("intra_op_threads", 0), request.get("inter_op_threads", 0)):
        raise RuntimeError(f"Thread pools are {applied}, not as requested: {request}")
    wanted = request.get("signatures")
    clients = request.get("clients", 1)
    png = tf.io.encode_png(np.full((28, 28, 1), 128, np.uint8)).numpy()
    batch = request["throughput_batch"]
    answer = {}
    measures = {}
    for family, path in request["exports"].items():
        loaded = tf.saved_model.load(path)
        answer[family] = {}
        for name, signature in loaded.signatures.items():
            if wanted and name not in wanted:
                continue
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
            rate = _rate(signature, many, batch, request["throughput_calls"], clients)
            result = answer[family][name]
            if latencies:  # a throughput-only request makes no batch-1 calls
                result["p50_ms"].append(float(np.percentile(latencies, 50)))
                result["p99_ms"].append(float(np.percentile(latencies, 99)))
            result["images_per_s"].append(rate)
    with open(sys.argv[2], "w") as f:
        json.dump(answer, f)


if __name__ == "__main__":
    main()
