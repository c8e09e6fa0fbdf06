"""Generation: the exported `generate` signature, with and without the key/value cache.

An `ImageGenerator` of the default sizes (a default `DVAE` and a default
`TransformerPrior` for its 7x7 grid of 512 codes; untrained: the cost of a
draw does not depend on the weights) is exported twice: by
`zoo.export.export_model` (the served model: the cached loop) and as an
archive whose `generate` runs the uncached loop (the whole sequence through
the network at every step), for comparison. A fresh process that imports
only TensorFlow (`bench/generation_worker.py`) times `generate` with images
returned (so the decoder pass is included): p50/p99 latency over batch-1
calls and images/second over batch-256 calls, repetitions interleaved.

Run alone: `python -m bench.generation`.
"""

import argparse
import os
import tempfile
import time

import zoo
from bench import common
from zoo.export import build_archive, export_model

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "generation_worker.py")
TARGET_P50_MS = 50.0
TARGET_IMAGES_PER_S = 500.0
GUIDANCE_SCALE = 2.0
"""The shipped generators' own guidance scale; any scale other than 1 costs the same."""
CLASS_NAMES = [f"class {i}" for i in range(10)]
TINY = {
    "autoencoder": {"filters": 8, "num_res_blocks": 1, "num_embeddings": 16, "embedding_dim": 8},
    "prior": {"embed_dim": 16, "num_layers": 1, "num_heads": 2, "mlp_dim": 32},
}
"""Sizes for the smoke test (`--tiny`): the same code paths, little compute."""


def build_generator(model_kwargs: dict | None = None) -> zoo.ImageGenerator:
    """A generator of the default sizes (or `model_kwargs` {"autoencoder", "prior"})."""
    model_kwargs = model_kwargs or {}
    autoencoder = zoo.DVAE(**model_kwargs.get("autoencoder", {}))
    prior = zoo.TransformerPrior(
        num_embeddings=autoencoder.num_embeddings,
        grid_shape=autoencoder.latent_grid,
        num_classes=len(CLASS_NAMES),
        **model_kwargs.get("prior", {}),
    )
    return zoo.ImageGenerator(autoencoder, prior, CLASS_NAMES)


def run_worker(request: dict, env: dict | None = None) -> dict:
    """Runs `generation_worker.py` in a fresh process that cannot import the project.

    `env` adds to (or overrides) this process's environment in the worker's.
    """
    return common.run_json_worker(
        [WORKER], request, common.worker_env(env), None, "Generation worker"
    )


def run(
    latency_calls: int = 20,
    throughput_calls: int = 1,
    batch: int = 256,
    repeats: int = 3,
    model_kwargs: dict | None = None,
) -> common.Table:
    """Exports the two variants and times them; returns a `common.Table`."""
    generator = build_generator(model_kwargs)
    table = common.Table(
        "Generation through the SavedModel (`generate`, decoder included), median (min-max)",
        [
            "variant",
            "p50 ms (batch 1)",
            "p99 ms (batch 1)",
            "CPU ms (batch 1)",
            f"images/s (batch {batch})",
            "images per CPU-s",
            "targets",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        cached = export_model(generator, os.path.join(tmp, "cached"), version=1, keras_file=False)
        uncached = os.path.join(tmp, "uncached")
        signature = generator.serving_signatures(use_cache=False)["generate"]
        build_archive(generator, {"generate": signature}).write_out(uncached, verbose=False)
        variants = {
            "KV cache (served)": {"export": cached, "guidance_scale": 1.0},
            f"KV cache, guidance_scale={GUIDANCE_SCALE:g}": {
                "export": cached, "guidance_scale": GUIDANCE_SCALE,
            },
            "no cache": {"export": uncached, "guidance_scale": 1.0},
        }
        request = {
            "variants": {k: {**v, "signature": "generate"} for k, v in variants.items()},
            "latency_calls": latency_calls,
            "throughput_calls": throughput_calls,
            "batch": batch,
            "repeats": repeats,
        }
        start = time.perf_counter()
        served = run_worker(request)
        seconds = time.perf_counter() - start
    for name, result in served.items():
        if "error" in result:
            table.add(name, f"failed: {result['error'][:80]}", "", "", "", "", "")
            continue
        p50, p99, cpu_ms, rate, cpu_rate = (
            common.summarize(result[k])
            for k in ("p50_ms", "p99_ms", "cpu_ms_batch1", "images_per_s", "images_per_cpu_s")
        )
        target = ""
        if name == "KV cache (served)":
            latency = "met" if p50.median <= TARGET_P50_MS else "missed"
            throughput = "met" if rate.median >= TARGET_IMAGES_PER_S else "missed"
            target = (
                f"p50 <= {TARGET_P50_MS:g} ms: {latency}; "
                f">= {TARGET_IMAGES_PER_S:g}/s: {throughput}"
            )
        table.add(
            name, p50.format(1), p99.format(1), cpu_ms.format(1), rate.format(1),
            cpu_rate.format(1), target,
        )  # fmt: skip
    prior = generator.prior
    table.notes.append(
        f"Prior: {prior.num_layers} blocks, width {prior.embed_dim}, "
        f"{prior.count_params():,} parameters, {prior.sequence_length} sampling steps; "
        f"autoencoder: {generator.autoencoder.count_params():,} parameters. "
        f"`tf.saved_model.load` in a fresh TensorFlow-only process (worker wall time "
        f"{seconds:.0f} s); labels all 0, seed 0, temperature 1, top_k 0."
    )
    table.notes.append(
        f"{latency_calls} batch-1 calls and {throughput_calls} batch-{batch} call(s) per "
        f"repetition. `guidance_scale={GUIDANCE_SCALE:g}` (the shipped generators' scale) "
        "samples the conditional and unconditional streams in one batch of 2N. Targets "
        "(served variant): p50 <= 50 ms at batch 1, >= 500 images/s at batch 256."
    )
    table.notes.append(
        "CPU columns: the serving process's CPU time (all its threads) per batch-1 call and "
        "images per CPU-second at the large batch. On a shared machine they move less than "
        "wall time. On an idle 2-core machine the batch-1 wall latency would be at least "
        "CPU ms / 2 (about CPU ms if one thread does the work) and the rate at most 2x "
        "images per CPU-s: bounds, not measurements."
    )
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency_calls", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="smoke-test sizes")
    args = parser.parse_args(argv)
    table = run(args.latency_calls, repeats=args.repeats, model_kwargs=TINY if args.tiny else None)
    print(table.markdown())


if __name__ == "__main__":
    main()
