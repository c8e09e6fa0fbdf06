"""Time to quality: training seconds until the test MSE crosses a threshold.

The run goes through the train command's code path (`trainers.config.resolve`
with the flags a user would give, then `trainers.training.train`) with one
extra callback. Every `interval` steps the callback evaluates the MSE on
the 10,000 Fashion-MNIST test images, and every `fine_interval` steps once
the last evaluation came within `NEAR` of the threshold (the crossing is
then known to 10 steps, not 50, without evaluating all along); once it is
at or below the threshold, training stops. The clock counts the training
steps (from the start of the first step to the end of the last, the loss
fetched so the step has finished, data and step callbacks included) and
excludes the test evaluations and what the train command does at epoch ends (validation,
checkpoints, images).

The setting is the one the PyTorch reference was measured at: about 147
bits per image (7x7 codes of K=8 = 147 bits; the reference used 4x4 codes of
K=512 = 144 bits), threshold 0.0115 (the reference's test MSE after 2
epochs, 103 s on this machine's kind of CPU). Commands, as a user would
type them:

    python -m trainers.train --model=vqvae --set num_embeddings=8 --set decay=0.95 \
        --batch_size=64 --learning_rate=0.002 --epochs=1 --model_dir=runs/vq147
    python -m trainers.train --model=dvae --set num_embeddings=8 --set kl_weight=0.01 \
        --set diversity_weight=0.01 --batch_size=64 --learning_rate=0.002 --epochs=1 \
        --model_dir=runs/dvae147

and the VQ-VAE's command again at `--batch_size=16` (row `vqvae_batch16`): on a CPU
without bf16 it reached the threshold in about 0.6x the time of batch 64.

Each family trains from several seeds (`--seed`, default 0, 1 and 2): the
crossing step moved from 350 to 550 between seeds of the same command, more
than any flag did, so the table gives the median with the range. `decay=0.95`
(the EMA codebook's decay; default 0.99) suits K=8 codes, whose assignments
move fast: over three seeds it crossed at 300-350 steps against 350-550.

Run alone: `python -m bench.time_to_quality [--families vqvae vqvae_batch16 dvae]
[--seeds 0 1 2]`; a one-off arm replaces the runs' train flags or adds model options,
e.g. `--flags learning_rate=0.003` or `--set commitment_cost=0.5`.
"""

import argparse
import json
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from bench import common

THRESHOLD = 0.0115
NEAR = 1.1  # evaluate every `fine_interval` steps once the test MSE is below NEAR x threshold
REFERENCE = "pythae 0.1.2 VQ-VAE (PyTorch, 4x4 codes of K=512 = 144 bits): 103 s, 1,173 images/s"
TARGET_SECONDS = 50.0
_VQVAE = {"model": "vqvae", "config_file": None,
          "flags": {"batch_size": 64, "learning_rate": 2e-3, "epochs": 1},
          "set": ["num_embeddings=8", "decay=0.95"]}
RUNS = {
    "vqvae": _VQVAE,
    # The same at batch 16: on a CPU without bf16 it needs half the images at 0.75x the
    # rate (docs/MEASUREMENTS.md); in bf16 the rate falls faster with the batch.
    "vqvae_batch16": {**_VQVAE, "flags": {**_VQVAE["flags"], "batch_size": 16}},
    # The default dVAE with the recipe's objective (KL and diversity weights); the recipe
    # itself pins the shipped model's legacy layout in float32.
    "dvae": {"model": "dvae", "config_file": None,
             "flags": {"batch_size": 64, "learning_rate": 2e-3, "epochs": 1},
             "set": ["num_embeddings=8", "kl_weight=0.01", "diversity_weight=0.01"]},
}


class TimeToQuality(keras.callbacks.Callback):
    """Stops training when the test MSE is <= `threshold`, timing the steps only.

    Args:
        test_images: float32 array (N, H, W, C) in [0, 1].
        threshold: float. Test MSE to reach.
        interval: int. Training steps between evaluations.
        fine_interval: int. Training steps between evaluations once the last
            one was within `NEAR` of the threshold (at most `interval`). Defaults to
            `interval`.
    """

    def __init__(self, test_images: np.ndarray, threshold: float, interval: int,
                 fine_interval: int | None = None):
        super().__init__()
        self.test = tf.data.Dataset.from_tensor_slices(test_images).batch(1000).cache()
        self.threshold, self.interval = threshold, interval
        self.fine_interval = min(fine_interval or interval, interval)
        self.seconds, self.steps, self.reached = 0.0, 0, False
        self.curve: list[tuple[int, float, float]] = []  # (steps, seconds, test MSE)
        self._opened = self._last_end = None

    def on_train_begin(self, logs=None):
        model = self.model

        @tf.function
        def squared_error(images):
            out = tf.cast(model(images, training=False), tf.float32)
            return tf.reduce_sum(tf.math.squared_difference(images, out))

        self._squared_error = squared_error

    def test_mse(self) -> float:
        total = sum(float(self._squared_error(batch)) for batch in self.test)
        count = sum(int(np.prod(batch.shape)) for batch in self.test)
        return total / count

    def _close(self):
        if self._opened is not None:
            self.seconds += self._last_end - self._opened
            self._opened = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._opened is None:
            self._opened = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        float(np.asarray(logs["loss"]).reshape(-1)[0])  # the step has finished
        self._last_end = time.perf_counter()
        self.steps += 1
        near = bool(self.curve) and self.curve[-1][2] <= NEAR * self.threshold
        if self.steps % (self.fine_interval if near else self.interval) == 0:
            self._close()
            mse = self.test_mse()
            self.curve.append((self.steps, self.seconds, mse))
            if mse <= self.threshold:
                self.reached = True
                self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self._close()  # validation and checkpoints ran after the last step


def variant(family: str, flags: dict | None = None, assignments=()) -> dict:
    """A family's run (`RUNS`) with train-command flags replaced and `--set` options added."""
    spec = RUNS[family]
    return {**spec, "flags": {**spec["flags"], **(flags or {})},
            "set": [*spec["set"], *assignments]}


def run_one(family: str, interval: int, tiny: bool = False, seed: int = 0,
            fine_interval: int | None = None, spec: dict | None = None) -> dict:
    """Trains one family (`spec`, default `RUNS[family]`) with the train command's code;
    returns the clock's figures."""
    from trainers import config as config_lib
    from trainers import data
    from trainers.training import train

    spec = spec or RUNS[family]
    flags = {**spec["flags"], "seed": seed}
    assignments = list(spec["set"])
    if tiny:
        flags.update(steps_per_epoch=4)
        assignments += ["filters=8", "num_res_blocks=1"]
    config = config_lib.resolve(spec["model"], spec["config_file"], flags, assignments)
    test = data.load_split("fashion_mnist", "test", (28, 28, 1))
    test_images = np.concatenate([b.numpy() for b in data.make_dataset(test, 1000, shuffle=False)])
    if tiny:
        test_images = test_images[:200]
    clock = TimeToQuality(test_images, THRESHOLD, interval, fine_interval)
    with tempfile.TemporaryDirectory() as model_dir:
        try:
            train(config, model_dir, verbose=0, callbacks=[clock])
        finally:
            keras.mixed_precision.set_global_policy("float32")
    model_config = config["model_config"]
    bits = 49 * np.log2(model_config["num_embeddings"])
    return {
        "family": family, "config": config, "bits": bits, "reached": clock.reached,
        "seconds": clock.seconds, "steps": clock.steps,
        "images_per_s": clock.steps * flags["batch_size"] / max(clock.seconds, 1e-9),
        "mse": clock.curve[-1][2] if clock.curve else float("nan"), "curve": clock.curve,
    }


def _flags_text(spec: dict) -> str:
    parts = [f"--model={spec['model']}"] if spec["model"] else [f"--config={spec['config_file']}"]
    parts += [f"--set {a}" for a in spec["set"]]
    parts += [f"--{k}={v}" for k, v in spec["flags"].items()]
    return " ".join(parts)


def run(families=("vqvae", "vqvae_batch16", "dvae"), interval: int = 50, tiny: bool = False,
        seeds=(0, 1, 2), fine_interval: int = 10, flags: dict | None = None,
        assignments=()) -> common.Table:
    """Returns the time-to-quality table (one row per family, medians over `seeds`).

    `flags` (train-command flags such as `{"batch_size": 32}`) and `assignments`
    (`--set` options) change every family's run, for one-off arms; the table
    names the flags each row ran with.
    """
    from trainers import distribute

    table = common.Table(
        f"Time to test MSE <= {THRESHOLD} at 147 bits per image (7x7 codes of K=8), "
        f"median over seeds {', '.join(map(str, seeds))} (min-max)",
        ["family", "train command flags", "precision", "reached", "training s", "steps",
         "images/s", "test MSE at stop", f"target <= {TARGET_SECONDS:g} s"],
    )
    for family in families:
        spec = variant(family, flags, assignments)
        results = []
        for seed in seeds:
            load = common.loadavg()
            result = run_one(family, interval, tiny, seed, fine_interval, spec)
            results.append(result)
            curve = ", ".join(f"{s}: {mse:.4f} ({t:.0f} s)" for s, t, mse in result["curve"])
            table.notes.append(
                f"{family}, seed {seed} (load before {load}): test MSE by step: {curve}.")
        reached = [r for r in results if r["reached"]]
        seconds = common.summarize([r["seconds"] for r in results])
        precision = distribute.resolve_precision(results[0]["config"]["training"]["precision"])
        met = ("met" if len(reached) == len(results) and seconds.median <= TARGET_SECONDS
               else "missed")
        table.add(
            family, f"`{_flags_text(spec)}`", precision,
            f"{len(reached)} of {len(results)}", seconds.format(1),
            common.summarize([r["steps"] for r in results]).format(),
            common.summarize([r["images_per_s"] for r in results]).format(),
            common.summarize([r["mse"] for r in results]).format(5),
            met if spec["model"] == "vqvae" else "",
        )
    table.notes.append(
        f"The test MSE is evaluated every {interval} steps on the 10,000 test images, every "
        f"{fine_interval} once it is within {NEAR:g}x the threshold; "
        "evaluations, validation and checkpoints are outside the clock. The planned run is "
        "one epoch (cosine decay over it); training stops at the first evaluation at or "
        "below the threshold; a seed is a `--seed` (weights, shuffling, noise). "
        f"Reference: {REFERENCE}."
    )
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["vqvae", "vqvae_batch16", "dvae"],
                        choices=list(RUNS))
    parser.add_argument("--interval", type=int, default=50)
    parser.add_argument("--fine_interval", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--flags", nargs="*", default=[], metavar="KEY=VALUE",
                        help="train-command flags replacing the runs' (a one-off arm), "
                        "e.g. batch_size=32 learning_rate=0.003")
    parser.add_argument("--set", nargs="*", default=[], dest="assignments",
                        metavar="KEY=VALUE", help="model options added to the runs' --set")
    args = parser.parse_args(argv)
    flags = {}
    for item in args.flags:
        key, equals, value = item.partition("=")
        if not equals or key not in ("batch_size", "learning_rate", "epochs", "steps_per_epoch",
                                     "lr_schedule", "precision"):
            parser.error(f"--flags expects KEY=VALUE with KEY a train flag of the runs. "
                         f"Received: {item!r}")
        flags[key] = json.loads(value) if value[:1].isdigit() else value
    print(f"CPU: {common.cpu_model()}; flags: {' '.join(common.cpu_flags())}; "
          f"load before: {common.loadavg()}")
    print(run(args.families, args.interval, seeds=tuple(args.seeds),
              fine_interval=args.fine_interval, flags=flags,
              assignments=args.assignments).markdown())
    print(f"Load after: {common.loadavg()}")


if __name__ == "__main__":
    main()
