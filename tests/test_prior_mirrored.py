"""`TransformerPrior.fit` under MirroredStrategy on 2 logical CPUs.

As in tests/test_distribution_mirrored.py, the CPU is split before
TensorFlow starts, so the fits run once in a subprocess (this file as a
script) and the tests assert on what it measured. With plain SGD and no
dropout, two SGD steps on two replicas must equal the same steps on one
device (a gradient scaled wrongly by the replica count would show). With
condition dropout on, each replica draws its own stateless mask.
"""

import json
import os
import sys
import warnings

import numpy as np
import pytest

TINY = {
    "num_embeddings": 16,
    "grid_shape": (3, 4),
    "num_classes": 4,
    "embed_dim": 16,
    "num_layers": 1,
    "num_heads": 2,
    "mlp_dim": 32,
}
TOLERANCE = 1e-5


def _measure(out_path: str) -> None:  # runs in the subprocess
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from trainers import distribute

    distribute.split_cpu(2)
    import keras
    import tensorflow as tf

    import zoo

    warnings.simplefilter("always")
    caught = warnings.catch_warnings(record=True)
    recorded = caught.__enter__()
    mirrored = distribute.make_strategy("mirrored")
    one = distribute.make_strategy("one_device")
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, (32, 3, 4), dtype=np.int32)
    labels = rng.integers(0, 4, 32, dtype=np.int32)

    def make(strategy, weights=None, **kwargs):
        keras.utils.set_random_seed(1)
        with strategy.scope():
            prior = zoo.TransformerPrior(**TINY, **kwargs)
            prior.compile(optimizer=keras.optimizers.SGD(0.5))
        if weights is not None:
            prior.set_weights(weights)
        return prior

    def weights(model):
        return [np.asarray(v) for v in model.weights]

    def max_diff(a, b):
        return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))

    def fit(model, x, y):
        return model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history

    exact = {"dropout": 0.0, "condition_dropout": 0.0}
    reference = make(one, **exact)
    initial = weights(reference)
    one_logs = fit(reference, codes[:16], labels[:16])
    model = make(mirrored, initial, **exact)
    logs = fit(model, codes[:16], labels[:16])
    results = {
        "replicas": mirrored.num_replicas_in_sync,
        "diff": max_diff(weights(model), weights(reference)),
        "update": max_diff(weights(reference), initial),
        "logs": {k: v[-1] for k, v in logs.items()},
        "one_device_logs": {k: v[-1] for k, v in one_logs.items()},
    }
    dropped = make(mirrored, condition_dropout=0.5, dropout=0.1)
    dataset = tf.data.Dataset.from_tensor_slices((codes, labels.astype(np.int64))).batch(8)
    dropped_logs = dropped.fit(dataset, epochs=2, verbose=0, shuffle=False).history
    per_replica = [
        [np.asarray(t) for t in mirrored.experimental_local_results(v.value)]
        for v in dropped.trainable_variables
    ]
    conditions = mirrored.run(
        tf.function(lambda: dropped._drop_conditions(tf.zeros([256], tf.int32)))
    )
    a, b = (np.asarray(t) for t in mirrored.experimental_local_results(conditions))
    results["dropout"] = {
        "finite": all(np.isfinite(v[-1]) for v in dropped_logs.values()),
        "replica_spread": max(float(np.max(np.abs(r[0] - r[1]))) for r in per_replica),
        "masks_differ": bool((a != b).any()),
        "dropped_fraction": float(np.mean(np.concatenate([a, b]) == 4)),
    }
    caught.__exit__(None, None, None)
    results["warnings"] = [str(w.message) for w in recorded]
    with open(out_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    _measure(sys.argv[1])
    sys.exit(0)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    # Imported here: as a script, this file splits the CPU before anything imports TensorFlow.
    from tests.helpers import measure_in_fresh_process

    return measure_in_fresh_process(__file__, tmp_path_factory.mktemp("prior_mirrored"))


def test_two_replica_sgd_steps_equal_one_device(measured):
    assert measured["replicas"] == 2
    assert measured["update"] > 1e-3  # the steps moved the weights
    assert measured["diff"] < TOLERANCE, measured
    for name in ("loss", "accuracy", "bits_per_image"):
        np.testing.assert_allclose(
            measured["logs"][name], measured["one_device_logs"][name], rtol=1e-4, err_msg=name
        )


def test_condition_dropout_under_the_strategy(measured):
    entry = measured["dropout"]
    assert entry["finite"]
    assert entry["replica_spread"] == 0.0  # replicas hold the same weights
    assert entry["masks_differ"]  # each replica draws its own mask
    assert 0.35 < entry["dropped_fraction"] < 0.65


def test_no_stateful_random_op(measured):
    from tests.helpers import stateful_random_messages

    assert not stateful_random_messages(measured)
