"""One worker of a two-worker `MultiWorkerMirroredStrategy` test job.

Run by tests/test_distribution_multiworker.py as a subprocess with `TF_CONFIG`
set. Trains tiny models of the requested families with plain `model.fit`,
writes checkpoints and `.keras` files the way the train command must (real
paths on the chief, a private temporary path elsewhere, then removed), and
dumps its final weights to `<out>/weights_<task>_<family>.npz` so the test
can compare the workers.

With `--backup`, trains one family under a `WorkerBackupAndRestore` callback
and appends every epoch it begins, and the optimizer step at train begin, to
`<out>/progress_<task>.jsonl`.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import zoo  # noqa: E402
from trainers import distribute  # noqa: E402
from trainers.callbacks import TemperatureAnnealing  # noqa: E402

TINY = {"filters": 8, "num_res_blocks": 1, "num_downsamples": 1}
FAMILY_KWARGS = {
    "ae": {},
    "vae": {},
    "vqvae": {"num_embeddings": 16, "embedding_dim": 8},
    "dvae": {"num_embeddings": 16, "embedding_dim": 8},
}
IMAGE_SHAPE = (8, 8, 1)
GLOBAL_BATCH = 8


def build(family: str, strategy):
    with strategy.scope():
        model = zoo.FAMILIES[family](image_shape=IMAGE_SHAPE, **TINY, **FAMILY_KWARGS[family])
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def images(steps: int) -> np.ndarray:
    return np.random.default_rng(0).random((GLOBAL_BATCH * steps, *IMAGE_SHAPE), "float32")


def labelled_dataset(steps: int) -> tf.data.Dataset:
    """`(images, labels)` batches, as `tfds` gives with `as_supervised=True`."""
    labels = np.arange(GLOBAL_BATCH * steps, dtype="int64")
    return tf.data.Dataset.from_tensor_slices((images(steps), labels)).batch(GLOBAL_BATCH)


def dump_weights(model, path: str) -> None:
    np.savez(path, *[np.asarray(v) for v in model.weights])


class Progress(keras.callbacks.Callback):
    """Records epochs begun (and optionally sleeps so a test can kill us mid-job)."""

    def __init__(self, path: str, sleep: float):
        super().__init__()
        self.path, self.sleep = path, sleep

    def _write(self, record):
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def on_train_begin(self, logs=None):
        self._write({"train_begin_step": int(self.model.optimizer.iterations.numpy())})

    def on_epoch_begin(self, epoch, logs=None):
        self._write({"epoch": epoch})

    def on_epoch_end(self, epoch, logs=None):
        time.sleep(self.sleep)


def train_families(args, strategy, task: int) -> None:
    for family in args.families.split(","):
        model = build(family, strategy)
        ckpt = os.path.join(args.out, f"{family}.weights.h5")
        callbacks = [keras.callbacks.ModelCheckpoint(distribute.write_path(ckpt, strategy),
                                                     save_weights_only=True)]
        if family == "dvae":
            callbacks.append(TemperatureAnnealing(start=1.0, end=0.5, steps=args.steps))
        # Arrays for the continuous families, an (images, labels) dataset for
        # the discrete ones: both input paths of `fit` run under the strategy.
        if family in ("ae", "vae"):
            history = model.fit(images(args.steps), batch_size=GLOBAL_BATCH, epochs=1,
                                verbose=0, callbacks=callbacks, shuffle=False)
        else:
            history = model.fit(labelled_dataset(args.steps), epochs=1, verbose=0,
                                callbacks=callbacks)
        export = os.path.join(args.out, f"{family}.keras")
        model.save(distribute.write_path(export, strategy))
        distribute.remove_temporary(ckpt, strategy)
        distribute.remove_temporary(export, strategy)
        dump_weights(model, os.path.join(args.out, f"weights_{task}_{family}.npz"))
        logs = {k: float(np.asarray(v[-1]).reshape(-1)[0]) for k, v in history.history.items()}
        with open(os.path.join(args.out, f"logs_{task}_{family}.json"), "w") as f:
            json.dump({"logs": logs, "steps": int(model.optimizer.iterations.numpy())}, f)


def train_with_backup(args, strategy, task: int) -> None:
    model = build("vqvae", strategy)
    backup = distribute.WorkerBackupAndRestore(os.path.join(args.out, "backup"), strategy)
    progress = Progress(os.path.join(args.out, f"progress_{task}.jsonl"), args.sleep)
    model.fit(images(args.steps), batch_size=GLOBAL_BATCH, epochs=args.epochs, verbose=0,
              callbacks=[backup, progress], shuffle=False)
    dump_weights(model, os.path.join(args.out, f"weights_{task}_backup.npz"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--families", default="ae,vae,vqvae,dvae")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--backup", action="store_true")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()
    strategy = distribute.make_strategy("multi_worker")
    keras.utils.set_random_seed(1234)
    task = strategy.cluster_resolver.task_id
    if args.backup:
        train_with_backup(args, strategy, task)
    else:
        train_families(args, strategy, task)
    with open(os.path.join(args.out, f"done_{task}"), "w") as f:
        f.write("ok")


if __name__ == "__main__":
    main()
