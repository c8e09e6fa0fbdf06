"""Timing helpers shared by the benchmarks: statistics, tables, machine, peak.

Every comparison in the suite is made side by side in one process: the
variants are built first, then timed in interleaved repetitions (A B C A B C
...), so a burst of load from another job on this shared machine hits every
variant alike. A figure is the median of the repetitions, with min and max.
"""

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from trainers.machine import cpu_flags, cpu_model  # noqa: F401  (the benchmarks use them as common.*)

TINY_MODEL_KWARGS = {
    "ae": {"filters": 8, "num_res_blocks": 1},
    "vae": {"filters": 8, "num_res_blocks": 1},
    "vqvae": {"filters": 8, "num_res_blocks": 1, "num_embeddings": 16, "embedding_dim": 8},
    "dvae": {"filters": 8, "num_res_blocks": 1, "num_embeddings": 16, "embedding_dim": 8},
}
"""Small models for the smoke test (`--tiny`): same code paths, little compute."""


@dataclasses.dataclass
class Stat:
    """Median, min and max of repeated measurements."""

    median: float
    min: float
    max: float
    count: int

    def format(self, digits: int = 0) -> str:
        """`median (min-max)` with `digits` decimals."""
        return f"{self.median:,.{digits}f} ({self.min:,.{digits}f}-{self.max:,.{digits}f})"


def summarize(samples) -> Stat:
    """The `Stat` of a non-empty sequence of numbers."""
    samples = [float(s) for s in samples]
    if not samples:
        raise ValueError("Cannot summarize an empty list of measurements.")
    return Stat(statistics.median(samples), min(samples), max(samples), len(samples))


def percentile(samples, q: float) -> float:
    """The `q`-th percentile (0-100) of `samples`, linearly interpolated."""
    ordered = sorted(float(s) for s in samples)
    if not ordered:
        raise ValueError("Cannot take a percentile of no measurements.")
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def interleaved(measures: dict[str, Callable[[], float]], repeats: int) -> dict[str, list]:
    """Runs every measurement `repeats` times, round robin, in a fixed order.

    Args:
        measures: name -> a function that runs one repetition and returns
            its figure (a rate, a latency...). A function that raises is
            dropped from later rounds and its error kept.
        repeats: int. Rounds.

    Returns:
        name -> list of figures, or the exception that stopped it.
    """
    results: dict[str, list | Exception] = {name: [] for name in measures}
    for _ in range(repeats):
        for name, measure in measures.items():
            if isinstance(results[name], Exception):
                continue
            try:
                results[name].append(measure())
            except Exception as error:  # noqa: BLE001 - reported in the table
                results[name] = error
    return results


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call of `fn`."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclasses.dataclass
class Table:
    """A result table: a title, column names, rows of cells and notes."""

    title: str
    headers: list[str]
    rows: list[list] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def add(self, *cells) -> None:
        if len(cells) != len(self.headers):
            raise ValueError(f"Row {cells!r} has {len(cells)} cells, expected {len(self.headers)}.")
        self.rows.append(list(cells))

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(str(c) for c in row) + " |")
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines) + "\n"


def print_report(table: Table, *lines: str) -> str:
    """Prints and returns a one-table report: the CPU and its flags, `lines`, the table."""
    report = "\n".join([
        f"CPU: {cpu_model()} ({', '.join(cpu_flags()) or 'no listed SIMD flags'})",
        *lines,
        "",
        table.markdown(),
    ])
    print(report)
    return report


def error_cell(error: Exception) -> str:
    """A short table cell for a variant that failed."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"failed: {type(error).__name__} {text[:80]}".strip()


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def machine_info() -> dict:
    """CPU model, core counts, SIMD flags and library versions."""
    import keras
    import tensorflow as tf

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "flags": " ".join(cpu_flags()),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "onednn": _onednn_state(),
    }


def _onednn_state() -> str:
    """e.g. `"on (TF_ENABLE_ONEDNN_OPTS=1)"`: TensorFlow's answer and the variable."""
    from zoo import runtime

    state = {True: "on", False: "off", None: "unknown"}[runtime.onednn_enabled()]
    return f"{state} (TF_ENABLE_ONEDNN_OPTS={os.environ.get(runtime.ONEDNN_VAR, 'unset')})"


def matmul_peak(size: int = 2048, iterations: int = 8, repeats: int = 5) -> Stat:
    """Measured fp32 matmul rate of this machine in GFLOP/s.

    A `tf.function` runs `iterations` chained (size x size) @ (size x size)
    float32 matmuls (2 * size**3 FLOPs each); a repetition's rate is FLOPs /
    wall time. This is the achievable peak that the training FLOP rates are
    compared against, measured in the same run (and under the same load).
    """
    import tensorflow as tf

    a = tf.random.uniform([size, size], dtype=tf.float32)
    b = tf.random.uniform([size, size], dtype=tf.float32) / size

    @tf.function
    def chain(x):
        for _ in range(iterations):
            x = tf.matmul(x, b)
        return x

    chain(a).numpy()  # trace and warm up
    flops = 2.0 * size**3 * iterations
    rates = [flops / timed(lambda: chain(a).numpy()) / 1e9 for _ in range(repeats)]
    return summarize(rates)


def training_flops(model, batch_size: int = 8) -> tuple[float, float]:
    """Forward and forward+backward FLOPs per image of a zoo model.

    Counted by the TF profiler (`tf.compat.v1.profiler`, float_operation) on
    the graphs of concrete functions at a fixed batch: the forward pass
    (`compute_terms(training=True)`) and the gradient of the mean loss with
    respect to the trainable variables (forward + backward, without the
    optimizer update). Convolutions, transposed convolutions (as
    Conv2DBackpropInput), matmuls and elementwise ops are counted; einsum is
    not (the dVAE's codebook lookup, under 4 % of its forward pass).

    Returns:
        `(forward_flops, training_flops)` per image.
    """
    import tensorflow as tf

    spec = tf.TensorSpec([batch_size, *model.image_shape], tf.float32)

    def forward(images):
        return model.compute_terms(images, training=True)["loss"]

    def gradients(images):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.compute_terms(images, training=True)["loss"])
        return tape.gradient(loss, model.trainable_variables)

    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    counts = []
    for fn in (forward, gradients):
        graph = tf.function(fn, autograph=False).get_concrete_function(spec).graph
        profile = tf.compat.v1.profiler.profile(graph, options=options)
        counts.append(profile.total_float_ops / batch_size)
    return counts[0], counts[1]


def worker_env(overrides: dict | None = None) -> dict:
    """The environment of a TensorFlow-only worker: this one's, without `PYTHONPATH`.

    With `TF_CPP_MIN_LOG_LEVEL=2` unless set, then `overrides` applied. The
    cwd of `run_json_worker(..., cwd=None)` is a fresh temporary folder, so
    with no `PYTHONPATH` the worker cannot import the project.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return {**env, **(overrides or {})}


def run_json_worker(args: list[str], request: dict, env: dict, cwd: str | None, label: str) -> dict:
    """Runs `python <args> request.json answer.json` in a fresh process.

    Args:
        args: interpreter arguments before the two paths (a script or `-m module`).
        request: JSON-serialisable request written for the worker.
        env: the worker's environment.
        cwd: its working directory; `None` for a new temporary one.
        label: names the worker in the error raised when it fails.

    Returns:
        The JSON answer the worker wrote.
    """
    with tempfile.TemporaryDirectory() as tmp:
        request_path = os.path.join(tmp, "request.json")
        answer_path = os.path.join(tmp, "answer.json")
        with open(request_path, "w") as f:
            json.dump(request, f)
        done = subprocess.run(
            [sys.executable, *args, request_path, answer_path],
            cwd=cwd or tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{label} failed:\n{done.stderr[-3000:]}")
        with open(answer_path) as f:
            return json.load(f)
