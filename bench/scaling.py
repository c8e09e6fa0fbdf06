"""Scaling: training steps/second with 1 and 2 replicas under MirroredStrategy.

On a CPU-only machine the replicas are logical devices that share the same
cores (`trainers.distribute.split_cpu(2)`), so this measures the overhead of
the strategy (per-replica work split, gradient all-reduce), not a speed-up.
On a machine with several GPUs the replicas are the GPUs. The global batch is
the same for 1 and 2 replicas (each replica gets half of it with 2).

The measurement runs in a subprocess (`python -m bench.scaling --worker`)
because the CPU must be split before TensorFlow initialises.
"""

import argparse
import json
import os

from bench import common


def _worker(request: dict) -> dict:
    import numpy as np
    import tensorflow as tf

    from trainers import distribute

    gpus = tf.config.list_physical_devices("GPU")
    devices = (
        [d.name for d in tf.config.list_logical_devices("GPU")]
        if len(gpus) >= 2
        else distribute.split_cpu(2)
    )
    import keras

    import zoo

    batch = request["batch_size"]
    steps = request["steps"]
    images = np.random.default_rng(0).random((batch, 28, 28, 1), dtype=np.float32)
    dataset = tf.data.Dataset.from_tensors(images).repeat()
    answer = {"devices": devices}
    for family in request["families"]:
        measures = {}
        for replicas in (1, 2):
            strategy = tf.distribute.MirroredStrategy(devices[:replicas])
            with strategy.scope():
                model = zoo.FAMILIES[family](**request["model_kwargs"].get(family, {}))
                model.compile(optimizer=keras.optimizers.Adam(1e-4))
            model.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)  # trace, warm up

            def measure(m=model):
                seconds = common.timed(
                    lambda: m.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
                )
                return steps / seconds

            measures[replicas] = measure
        results = common.interleaved(measures, request["repeats"])
        answer[family] = {
            str(r): (s if isinstance(s, list) else common.error_cell(s)) for r, s in results.items()
        }
    return answer


def _run_worker(request: dict) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return common.run_json_worker(
        ["-m", "bench.scaling", "--worker"], request, env, root, "Scaling worker"
    )


def run(
    families=("ae", "vqvae"),
    batch_size: int = 128,
    steps: int = 6,
    repeats: int = 3,
    model_kwargs: dict | None = None,
) -> common.Table:
    """Measures steps/second with 1 and 2 replicas in a subprocess; returns a table."""
    # One process per family: a second MirroredStrategy over the same logical
    # devices in one process can mismatch collective instance keys (seen as
    # "Shape mismatch in the collective instance" when a VQ-VAE followed an AE).
    answer = {}
    for family in families:
        request = {
            "families": [family],
            "batch_size": batch_size,
            "steps": steps,
            "repeats": repeats,
            "model_kwargs": model_kwargs or {},
        }
        answer.update(_run_worker(request))
    table = common.Table(
        f"MirroredStrategy scaling (global batch {batch_size}, steps/s, median (min-max))",
        ["family", "replicas", "steps/s", "images/s", "vs 1 replica"],
    )
    for family in families:
        one = answer[family]["1"]
        for replicas in ("1", "2"):
            samples = answer[family][replicas]
            if isinstance(samples, str):
                table.add(family, replicas, samples, "", "")
                continue
            stat = common.summarize(samples)
            ratio = (
                f"{stat.median / common.summarize(one).median:.2f}x"
                if isinstance(one, list)
                else ""
            )
            table.add(family, replicas, stat.format(2), f"{stat.median * batch_size:,.0f}", ratio)
    table.notes.append(f"Devices: {', '.join(answer['devices'])}.")
    if not any("GPU" in d for d in answer["devices"]):
        table.notes.append(
            "CPU logical devices share the same 2 cores: the 2-replica row shows the "
            "strategy's overhead (split batch, all-reduce), not a speed-up."
        )
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("REQUEST", "ANSWER"))
    parser.add_argument("--families", nargs="+", default=["ae", "vqvae"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.worker:
        with open(args.worker[0]) as f:
            answer = _worker(json.load(f))
        with open(args.worker[1], "w") as f:
            json.dump(answer, f)
        return
    print(run(args.families, repeats=args.repeats).markdown())


if __name__ == "__main__":
    main()
