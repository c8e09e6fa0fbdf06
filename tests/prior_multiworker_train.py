"""One worker of a two-worker `MultiWorkerMirroredStrategy` job training a TransformerPrior.

Run by tests/test_prior_multiworker.py as a subprocess with `TF_CONFIG` set:
fits a tiny prior with plain `fit` on a dataset of `(codes, labels)` (2 global
batches of 8) and writes its final weights and logs to `<out>`.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import zoo  # noqa: E402
from trainers import distribute  # noqa: E402


def main() -> None:
    out = sys.argv[1]
    strategy = distribute.make_strategy("multi_worker")
    keras.utils.set_random_seed(1234)
    task = strategy.cluster_resolver.task_id
    with strategy.scope():
        prior = zoo.TransformerPrior(
            num_embeddings=16, grid_shape=(3, 4), num_classes=4, embed_dim=16,
            num_layers=1, num_heads=2, mlp_dim=32,
        )  # fmt: skip
        prior.compile(optimizer=keras.optimizers.Adam(1e-3))
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, (16, 3, 4), dtype=np.int32)
    labels = rng.integers(0, 4, 16).astype(np.int64)
    dataset = tf.data.Dataset.from_tensor_slices((codes, labels)).batch(8)
    history = prior.fit(dataset, epochs=1, verbose=0, shuffle=False)
    np.savez(os.path.join(out, f"weights_{task}.npz"), *[np.asarray(v) for v in prior.weights])
    logs = {k: float(np.asarray(v[-1]).reshape(-1)[0]) for k, v in history.history.items()}
    with open(os.path.join(out, f"logs_{task}.json"), "w") as f:
        json.dump({"logs": logs, "steps": int(prior.optimizer.iterations.numpy())}, f)


if __name__ == "__main__":
    main()
