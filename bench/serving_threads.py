"""Serving: what TensorFlow's thread pools do to latency and throughput.

At batch 1 the zoo's models run a few dozen small kernels; splitting each of
them over the intra-op pool's threads costs more in hand-offs than it saves.
TF Serving sets the pools with `--tensorflow_intra_op_parallelism` and
`--tensorflow_inter_op_parallelism`; a TensorFlow-only process with
`tf.config.threading`. This benchmark exports the shipped models (float32
and mixed_bfloat16) with `serving_default` only and times it in a fresh
TensorFlow-only process per setting (`bench/serving_worker.py`), alternating
settings: the p50 of batch-1 calls, and images/s at batch 256 with one
client and with as many clients as cores calling at once (a server answers
several requests at a time).

Run alone: `python -m bench.serving_threads`.
"""

import argparse
import os
import tempfile

from bench import common, serving_latency
from zoo.export import export_model

SETTINGS = {  # name -> (intra-op threads, inter-op threads); 0 is TensorFlow's default
    "default": (0, 0),
    "intra-op 1": (1, 0),
    "intra-op 1, inter-op 1": (1, 1),
}


def run(
    families=("ae", "vae", "vqvae", "dvae"),
    precisions=("float32", "mixed_bfloat16"),
    latency_calls: int = 100,
    throughput_calls: int = 4,
    batch: int = 256,
    repeats: int = 3,
    shipped: bool = True,
    model_kwargs: dict | None = None,
) -> common.Table:
    """Times `serving_default` under each thread setting; returns a `common.Table`.

    Args:
        families: family names, or with `shipped` also shipped preset names.
        precisions: policies to export each model in.
        latency_calls, throughput_calls, batch: calls per process and the
            large batch size.
        repeats: int. Processes per setting, alternating settings.
        shipped: bool. Serve the shipped `saved_models/<family>_fashion_mnist`
            (else untrained models built from `model_kwargs`).
        model_kwargs: family -> constructor arguments of untrained models.
    """
    clients = max(2, len(os.sched_getaffinity(0)))
    samples: dict[tuple[str, str], dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = serving_latency.load_models(families, shipped, precisions, model_kwargs or {})
        exports = {
            name: export_model(model, os.path.join(tmp, str(i)), version=1, keras_file=False)
            for i, (name, (model, _)) in enumerate(models.items())
        }
        for _ in range(repeats):
            for setting, (intra, inter) in SETTINGS.items():
                for count in (1, clients):
                    served = serving_latency.run_worker(
                        exports, latency_calls if count == 1 else 0, throughput_calls,
                        batch, 1, signatures=["serving_default"], intra_op_threads=intra,
                        inter_op_threads=inter, clients=count,
                    )
                    for name, signatures in served.items():
                        result = signatures["serving_default"]
                        if "error" in result:
                            raise RuntimeError(f"{name} failed in the worker: {result['error']}")
                        cell = samples.setdefault((name, setting), {})
                        if count == 1:
                            cell.setdefault("p50", []).extend(result["p50_ms"])
                        cell.setdefault(count, []).extend(result["images_per_s"])
    table = common.Table(
        "Serving threads (`serving_default`), median (min-max)",
        ["model", "threads", "p50 ms (batch 1)", f"images/s (batch {batch}, 1 client)",
         f"images/s (batch {batch}, {clients} clients)", "targets"],
    )
    for (name, setting), cell in samples.items():
        p50, one, many = (common.summarize(cell[key]) for key in ("p50", 1, clients))
        best = max(one.median, many.median)
        table.add(
            name, setting, p50.format(2), one.format(), many.format(),
            f"p50 <= {serving_latency.TARGET_P50_MS:g} ms: "
            f"{'met' if p50.median <= serving_latency.TARGET_P50_MS else 'missed'}; "
            f">= {serving_latency.TARGET_IMAGES_PER_S:,.0f}/s: "
            f"{'met' if best >= serving_latency.TARGET_IMAGES_PER_S else 'missed'}",
        )
    table.notes.append(
        f"{repeats} fresh TensorFlow-only processes per setting and client count, "
        f"alternating; each makes {latency_calls} batch-1 calls (one client) and "
        f"{throughput_calls} batch-{batch} calls per client. Threads: TensorFlow's "
        "`tf.config.threading` (TF Serving: `--tensorflow_intra_op_parallelism`, "
        "`--tensorflow_inter_op_parallelism`); default is one thread per core in each pool. "
        f"{clients} clients: as many Python threads calling at once, each with one request "
        "in flight at a time. "
        "The throughput target is read on the better client count."
    )
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["ae", "vae", "vqvae", "dvae"],
                        help="families (their shipped <family>_fashion_mnist) or "
                             "shipped preset names")
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"CPU: {common.cpu_model()}; flags: {' '.join(common.cpu_flags())}; "
          f"load before: {common.loadavg()}")
    table = run(args.families, args.precisions, repeats=args.repeats)
    print(table.markdown())


if __name__ == "__main__":
    main()
