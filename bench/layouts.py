"""Layouts, precision and schedule: FLOPs per image against test MSE at equal bits.

Every variant is a VQ-VAE with a 7x7 grid of K=8 codes (147 bits per image,
the time-to-quality setting) trained for the same number of steps on
Fashion-MNIST (the train command's data code: `trainers.data`), then
evaluated on the 10,000 test images. A variant changes the encoder/decoder
layout (the `Encoder`/`Decoder` arguments), the precision policy, or the
schedule (learning rate, warm-up, decay, batch size, EMA decay, dead-code
restarts). FLOPs are the TF profiler's count (`common.training_flops`).
Variants run one after the other in one process; the images/s column is
noisy on a shared machine (the load average is printed), the MSE column is
deterministic up to thread-order round-off.

Profiles: `--quick` (what `make bench` runs: FLOPs of every layout, training
of three of them for 150 steps) and the default full sweep (every variant
for 400 steps, about 15 minutes on 2 cores).

Run alone: `python -m bench.layouts [--quick] [--steps N] [--only name ...]`.
"""

import argparse
import dataclasses
import time

import keras
import numpy as np

import zoo
from bench import common
from zoo.blocks import LEGACY_LAYOUT

BASE_MODEL = {"num_embeddings": 8, "embedding_dim": 64}
BASE_TRAINING = {"batch_size": 64, "learning_rate": 1e-3, "lr_schedule": "cosine",
                 "warmup_steps": 0, "precision": "mixed_bfloat16"}
NEW_LAYOUT = {}  # the constructor defaults
LEGACY = dict(LEGACY_LAYOUT)


@dataclasses.dataclass
class Variant:
    name: str
    model: dict
    training: dict = dataclasses.field(default_factory=dict)
    group: str = "layout"


STRIDED = {"strided_stem": True, "resample_kernel_size": 4, "residual_hidden_ratio": 0.5}
VARIANTS = [
    Variant("legacy (3x3 stem at 28x28)", LEGACY),
    Variant("legacy, filters 16", {**LEGACY, "filters": 16}),
    Variant("strided stem", STRIDED),
    Variant("strided stem, resample kernel 2", {**STRIDED, "resample_kernel_size": 2}),
    Variant("strided stem, resample kernel 3", {**STRIDED, "resample_kernel_size": 3}),
    Variant("strided stem, separable residual", {**STRIDED, "separable_residual": True}),
    Variant("strided stem, residual inner 1.0 (default)", NEW_LAYOUT),
    Variant("strided stem, 4 residual blocks", {**STRIDED, "num_res_blocks": 4}),
    Variant("strided stem, kernel 2, residual inner 1.0",
            {**STRIDED, "resample_kernel_size": 2, "residual_hidden_ratio": 1.0}),
    Variant("strided stem, filters 16", {**STRIDED, "filters": 16}),
    Variant("strided stem, filters 16, 4 blocks",
            {**STRIDED, "filters": 16, "num_res_blocks": 4}),
    Variant("legacy, float32", LEGACY, {"precision": "float32"}, "precision"),
    Variant("strided stem, float32", STRIDED, {"precision": "float32"}, "precision"),
    Variant("default, float32", NEW_LAYOUT, {"precision": "float32"}, "precision"),
    Variant("lr 2e-3", STRIDED, {"learning_rate": 2e-3}, "schedule"),
    Variant("lr 3e-3", STRIDED, {"learning_rate": 3e-3}, "schedule"),
    Variant("lr 2e-3, constant", STRIDED, {"learning_rate": 2e-3, "lr_schedule": "constant"},
            "schedule"),
    Variant("lr 3e-3, 10 % warm-up (one-cycle)", STRIDED,
            {"learning_rate": 3e-3, "warmup_steps": 0.1}, "schedule"),
    Variant("batch 32", STRIDED, {"batch_size": 32}, "schedule"),
    Variant("batch 128, lr 2e-3", STRIDED, {"batch_size": 128, "learning_rate": 2e-3},
            "schedule"),
    Variant("EMA decay 0.95", {**STRIDED, "decay": 0.95}, {}, "schedule"),
    Variant("lr 2e-3, EMA decay 0.95", {**STRIDED, "decay": 0.95}, {"learning_rate": 2e-3},
            "schedule"),
    Variant("no dead-code restarts", {**STRIDED, "dead_code_threshold": 0.0}, {}, "schedule"),
]
QUICK = ("legacy (3x3 stem at 28x28)", "strided stem, residual inner 1.0 (default)",
         "default, float32")


def learning_rate(training: dict, steps: int):
    """Cosine (to 5 %) or constant, with an optional linear warm-up (a fraction of steps)."""
    rate = training["learning_rate"]
    warmup = int(round(training["warmup_steps"] * steps))
    if training["lr_schedule"] == "constant":
        return rate
    return keras.optimizers.schedules.CosineDecay(
        rate / 10 if warmup else rate, max(steps - warmup, 1), alpha=0.05,
        warmup_target=rate if warmup else None, warmup_steps=warmup,
    )


def train_and_test(variant: Variant, steps: int, train_split, test_split) -> dict:
    """Trains one variant for `steps` steps; returns its images/s and test MSE."""
    from trainers import data

    training = {**BASE_TRAINING, **variant.training}
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(training["precision"])
    try:
        model = zoo.VQVAE(**BASE_MODEL, **variant.model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate(training, steps)))
    batch = training["batch_size"]
    dataset = data.make_dataset(train_split, batch, repeat=True, seed=0)
    started = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    seconds = time.perf_counter() - started
    results = model.evaluate(data.make_dataset(test_split, 500, shuffle=False), verbose=0,
                             return_dict=True)
    return {"seconds": seconds, "images_per_s": steps * batch / seconds, "mse": results["mse"],
            "usage": results["codebook_usage"]}


def speeds(layouts: dict, repeats: int = 3) -> dict:
    """Side-by-side speeds of layouts: name -> {column: median images/s}.

    Training steps (batch 64, mixed_bfloat16, synthetic data) and inference
    calls (batch 256, float32 and mixed_bfloat16) of every layout are timed
    in interleaved repetitions, so load from other jobs hits them alike.
    """
    import tensorflow as tf

    from bench import train_throughput

    rng = np.random.default_rng(0)
    batch = rng.random((64, 28, 28, 1), dtype=np.float32)
    many = tf.constant(rng.random((256, 28, 28, 1), dtype=np.float32))
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    measures = {}
    for name, layout in layouts.items():
        kwargs = {**BASE_MODEL, **layout}
        model = train_throughput._build("vqvae", "bf16", kwargs)
        train_throughput._fit_rate(model, dataset, 2, 64)
        measures[(name, "train")] = (
            lambda m=model: train_throughput._fit_rate(m, dataset, 8, 64))
        for precision in ("float32", "mixed_bfloat16"):
            keras.mixed_precision.set_global_policy(precision)
            try:
                model = zoo.VQVAE(**kwargs)
            finally:
                keras.mixed_precision.set_global_policy("float32")
            forward = tf.function(lambda x, m=model: m(x, training=False))
            forward(many).numpy()
            measures[(name, precision)] = lambda f=forward: 4 * 256 / common.timed(
                lambda: [f(many).numpy() for _ in range(4)])
    results = common.interleaved(measures, repeats)
    out = {}
    for (name, column), samples in results.items():
        value = "failed" if isinstance(samples, Exception) else common.summarize(samples).median
        out.setdefault(name, {})[column] = value
    return out


def run(steps: int = 400, only=None, quick: bool = False, train: bool = True) -> common.Table:
    """Builds the FLOPs-versus-test-MSE table (training only the selected variants).

    Args:
        steps: int. Training steps per variant.
        only: variant names to train (default: all, or `QUICK` with `quick`).
        quick: bool. Layout rows (FLOPs) and the `QUICK` variants only.
        train: bool. `False` gives the FLOPs columns only (smoke test).
    """
    from trainers import data

    trained = set(QUICK) if quick else {v.name for v in VARIANTS}
    if not train:
        trained = set()
    if only:
        trained &= set(only)
    table = common.Table(
        f"Layouts, precision and schedule at 147 bits (VQ-VAE, 7x7 codes of K=8), "
        f"{steps} training steps",
        ["group", "variant", "parameters", "forward MFLOP/image", "train MFLOP/image",
         "train images/s (bf16, b64)", "inference images/s (fp32, b256)",
         "inference images/s (bf16, b256)", "test MSE", "codes used"],
    )
    layout_rows = {v.name: v.model for v in VARIANTS
                   if v.group == "layout" and v.name in trained}
    speed = speeds(layout_rows) if train else {}
    train_split = test_split = None
    if trained:
        train_split = data.load_split("fashion_mnist", "train", (28, 28, 1), 0.1)
        test_split = data.load_split("fashion_mnist", "test", (28, 28, 1))
    flops_cache = {}
    for variant in VARIANTS:
        if quick and variant.group != "layout" and variant.name not in trained:
            continue
        key = tuple(sorted(variant.model.items()))
        if key not in flops_cache:
            model = zoo.VQVAE(**BASE_MODEL, **variant.model)
            flops_cache[key] = (model.count_params(), *common.training_flops(model))
        params, forward, train = flops_cache[key]
        rates = speed.get(variant.name, {})
        rate_cells = [
            f"{rates[c]:,.0f}" if isinstance(rates.get(c), float) else rates.get(c, "")
            for c in ("train", "float32", "mixed_bfloat16")
        ]
        cells = ["not trained", ""]
        if variant.name in trained:
            result = train_and_test(variant, steps, train_split, test_split)
            cells = [f"{result['mse']:.5f}", f"{result['usage']:.0%}"]
            print(variant.name, cells, f"{result['seconds']:.0f} s", "load", common.loadavg(),
                  flush=True)
        table.add(variant.group, variant.name, f"{params:,}", f"{forward / 1e6:.1f}",
                  f"{train / 1e6:.0f}", *rate_cells, *cells)
    table.notes.append(
        f"Common settings unless the variant says otherwise: {BASE_TRAINING}, VQ-VAE "
        f"{BASE_MODEL} with EMA decay 0.99 and dead-code restarts; layout = the constructor "
        "defaults (strided stem, resample kernel 4, residual inner 1.0); "
        f"`legacy` = {LEGACY}; "
        f"`strided stem` = {STRIDED}. Precision and schedule variants use the layout they name "
        "or `strided stem` (the sweep ran before the default was chosen)."
    )
    table.notes.append(
        "Speeds: layout rows only, timed side by side in interleaved repetitions (3 rounds "
        "of 8 training steps on synthetic data and 4 inference calls; median). Test MSE: "
        f"after {steps} steps from the same seed, on the 10,000 test images."
    )
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--only", nargs="+", default=None)
    args = parser.parse_args(argv)
    steps = args.steps or (150 if args.quick else 400)
    print(f"CPU: {common.cpu_model()}; flags: {' '.join(common.cpu_flags())}; "
          f"load before: {common.loadavg()}")
    table = run(steps, args.only, args.quick)
    print(table.markdown())
    print(f"Load after: {common.loadavg()}")


if __name__ == "__main__":
    main()
