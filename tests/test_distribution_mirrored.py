"""MirroredStrategy over 2 logical CPUs against one device, and mixed precision.

The CPU can only be split into logical devices before TensorFlow starts, so
the measurements run once, in a fresh subprocess (this file run as a script),
and the tests below assert on what it measured. The rest of the suite keeps
its single CPU. Optimizer: plain SGD, whose update is linear in the gradient,
so a gradient scaled wrongly by the number of replicas shows up (Adam's first
step would hide it).
"""

import json
import os
import sys
import warnings

import numpy as np
import pytest

IMAGE_SHAPE = (8, 8, 1)
TINY = {"image_shape": IMAGE_SHAPE, "filters": 8, "num_res_blocks": 1, "num_downsamples": 1}
DISCRETE = {"num_embeddings": 16, "embedding_dim": 8}
TOLERANCE = 1e-5  # max |w_mirrored - w_one_device| after SGD steps, float32


def _measure(out_path: str) -> None:  # runs in the subprocess
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from trainers import distribute

    distribute.split_cpu(2)
    import keras
    import tensorflow as tf

    import zoo
    from trainers.callbacks import TemperatureAnnealing
    from zoo import distribution
    from zoo.perceptual import FeatureMatching
    from zoo.quantizers import code_statistics

    warnings.simplefilter("always")
    caught = warnings.catch_warnings(record=True)
    recorded = caught.__enter__()
    mirrored = distribute.make_strategy("mirrored")
    one = distribute.make_strategy("one_device")
    results = {"replicas": mirrored.num_replicas_in_sync}
    images = np.random.default_rng(0).random((24, *IMAGE_SHAPE), "float32")

    def make(family, strategy, weights=None, feature_matching=None, **kwargs):
        keras.utils.set_random_seed(1)
        with strategy.scope():
            model = zoo.FAMILIES[family](**TINY, **kwargs)
            model.compile(optimizer=keras.optimizers.SGD(0.5), feature_matching=feature_matching)
        if weights is not None:
            model.set_weights(weights)
        return model

    def weights(model):
        return [np.asarray(v) for v in model.weights]

    def max_diff(a, b):
        pairs = zip(a, b, strict=True)
        return max(float(np.max(np.abs(x.astype("float64") - y))) for x, y in pairs)

    def fit(model, x, **kwargs):
        return model.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0, **kwargs).history

    # AE and VQ-VAE: the global batch on one device is the reference.
    for family, kwargs, steps in (("ae", {}, 1), ("vqvae", DISCRETE, 3)):
        reference = make(family, one, **kwargs)
        initial = weights(reference)
        one_logs = fit(reference, images[: 8 * steps])
        model = make(family, mirrored, initial, **kwargs)
        logs = fit(model, images[: 8 * steps])
        results[family] = {
            "diff": max_diff(weights(model), weights(reference)),
            "update": max_diff(weights(reference), initial),
            "logs": {k: v[-1] for k, v in logs.items()},
            "one_device_logs": {k: v[-1] for k, v in one_logs.items()},
        }
        if family == "vqvae":
            q = model.quantizer
            per_replica = {
                v.name: [np.asarray(t) for t in mirrored.experimental_local_results(v.value)]
                for v in (q.embeddings, q.ema_cluster_size, q.ema_embedding_sum)
            }
            results[family]["replica_spread"] = max(
                max_diff([vals[0]], [vals[1]]) for vals in per_replica.values()
            )
            results[family]["codebook_diff"] = max_diff(
                per_replica[q.embeddings.name], [np.asarray(reference.quantizer.embeddings)] * 2
            )

    # A last global batch of one image leaves replica 1's shard empty (9 images,
    # batch 8): fit, evaluate and predict run, and the deterministic families
    # take the one-device steps.
    results["empty_shard"] = {}
    for family, kwargs in (("ae", {}), ("vqvae", DISCRETE), ("vae", {}), ("dvae", DISCRETE)):
        reference = make(family, one, **kwargs)
        initial = weights(reference)
        fit(reference, images[:9])
        model = make(family, mirrored, initial, **kwargs)
        entry = {"finite": all(np.isfinite(v[-1]) for v in fit(model, images[:9]).values())}
        entry["evaluate"] = model.evaluate(images[:9], batch_size=8, verbose=0)
        predicted = model.predict(images[:9], batch_size=8, verbose=0)
        entry["predict_diff"] = float(np.max(np.abs(predicted - np.asarray(model(images[:9])))))
        entry["predict_one"] = list(model.predict(images[:1], verbose=0).shape)
        if family in ("ae", "vqvae"):
            entry["diff"] = max_diff(weights(model), weights(reference))
        results["empty_shard"][family] = entry
    inputs = keras.Input(IMAGE_SHAPE)  # the user's feature network (convolutions) too
    hidden = keras.layers.Conv2D(8, 3, padding="same", name="conv_0")(inputs)
    network = keras.Model(inputs, keras.layers.Conv2D(8, 3, name="conv_1")(hidden))
    matching = FeatureMatching(network, ["conv_1"], weight=1.0)
    reference = make("ae", one, feature_matching=matching)
    initial = weights(reference)
    fit(reference, images[:9])
    model = make("ae", mirrored, initial, feature_matching=matching)
    logs = fit(model, images[:9])
    results["empty_shard"]["ae_feature_matching"] = {
        "finite": all(np.isfinite(v[-1]) for v in logs.values()),
        "evaluate": model.evaluate(images[:9], batch_size=8, verbose=0),
        "predict_diff": 0.0,
        "predict_one": list(model.predict(images[:1], verbose=0).shape),
        "diff": max_diff(weights(model), weights(reference)),
    }
    with mirrored.scope():  # DALL-E's own encoder and decoder stacks
        dalle = zoo.DalleDVAE(image_shape=(8, 8, 1), n_hid=4, n_blk_per_group=1, vocab_size=16,
                              n_init=8)
        dalle.compile(optimizer="sgd")
    results["empty_shard"]["dalle"] = {
        "finite": all(np.isfinite(v[-1]) for v in fit(dalle, images[:9]).values()),
        "evaluate": dalle.evaluate(images[:9], batch_size=8, verbose=0),
        "predict_diff": float(np.max(np.abs(
            dalle.predict(images[:9], batch_size=8, verbose=0) - np.asarray(dalle(images[:9]))))),
        "predict_one": list(dalle.predict(images[:1], verbose=0).shape),
    }

    # VAE: replica r draws its noise from the seed folded with r, so the
    # reference is built from the same per-replica seeds: one-device steps on
    # each half of the batch with replica_id patched to r. SGD is linear in the
    # gradient, so the global step is the mean of the two half steps.
    reference = make("vae", one)
    initial = weights(reference)
    halves = []
    true_replica_id = distribution.replica_id
    for r in range(2):
        half = make("vae", one, initial)
        distribution.replica_id = lambda r=r: tf.constant(r, tf.int32)
        fit(half, images[4 * r : 4 * r + 4])
        halves.append(weights(half))
    distribution.replica_id = true_replica_id
    expected = [(a + b) / 2 if a.dtype.kind == "f" else a for a, b in zip(*halves, strict=True)]
    model = make("vae", mirrored, initial)
    fit(model, images[:8])
    results["vae"] = {
        "diff": max_diff(weights(model), expected),
        "update": max_diff(expected, initial),
        "halves_diff": max_diff(halves[0], halves[1]),
    }

    # Code statistics over the global batch: replica 0 uses codes {0, 1},
    # replica 1 codes {2, 3}; globally 4 of 16 codes, used equally.
    local = tf.constant([[[0, 1]], [[2, 3]]], tf.int32)  # (2, 1, 2)
    dataset = tf.data.Dataset.from_tensor_slices(local).batch(2)
    batch = next(iter(mirrored.experimental_distribute_dataset(dataset)))
    stats = mirrored.run(tf.function(lambda x: code_statistics(x, 16)), args=(batch,))
    results["code_statistics"] = {
        k: [float(t) for t in mirrored.experimental_local_results(v)] for k, v in stats.items()
    }

    # dVAE: replicas draw different Gumbel noise for the same logits, and the
    # temperature callback drives every replica.
    model = make("dvae", mirrored, **DISCRETE)
    logits = tf.zeros((2, 4, 4, 16))
    draws = mirrored.run(tf.function(lambda: model.quantizer.sample(logits)))
    a, b = (np.asarray(t) for t in mirrored.experimental_local_results(draws))
    annealing = TemperatureAnnealing(start=1.0, end=0.25, steps=2, schedule="linear")
    logs = fit(model, images[:16], callbacks=[annealing])
    results["dvae"] = {
        "replica_draw_diff": float(np.max(np.abs(a - b))),
        "temperature_log": logs["temperature"][-1],
        "expected_temperature_log": (annealing.value_at(0) + annealing.value_at(1)) / 2,
        "replica_temperatures": [
            float(t) for t in mirrored.experimental_local_results(model.temperature.value)
        ],
        "expected_temperature": annealing.value_at(1),
        "finite": all(np.isfinite(v[-1]) for v in logs.values()),
    }

    # Feature matching: the compiled term, its network built outside any strategy scope.
    inputs = keras.Input(IMAGE_SHAPE)
    conv = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    matching = FeatureMatching(keras.Model(inputs, conv), ["conv"], weight=1.0)
    plain = make("ae", one)
    initial = weights(plain)
    fit(plain, images[:8])
    reference = make("ae", one, initial, feature_matching=matching)
    fit(reference, images[:8])
    model = make("ae", mirrored, initial, feature_matching=matching)
    fit(model, images[:8])
    results["ae_feature_matching"] = {
        "diff": max_diff(weights(model), weights(reference)),
        "update": max_diff(weights(reference), initial),
        "term_effect": max_diff(weights(reference), weights(plain)),
    }

    # Mixed precision: compute in float16, losses and quantizer outputs in float32.
    distribute.set_precision("mixed_float16")
    results["mixed"] = {}
    for family in ("ae", "vae", "vqvae", "dvae"):
        kwargs = DISCRETE if family in ("vqvae", "dvae") else {}
        model = make(family, one, **kwargs)
        terms = model.compute_terms(tf.constant(images[:4]), training=True)
        entry = {k: v.dtype.name for k, v in terms.items() if k != "reconstructions"}
        entry["compute_dtype"] = model.encoder.compute_dtype
        if family in ("vqvae", "dvae"):
            z = model.encoder(images[:4])
            entry["encoder_output"] = z.dtype.name
            out = model.quantizer(z, training=True)
            entry.update({f"quantizer_{k}": v.dtype.name for k, v in out.items()
                          if k != "encoding_indices"})
        logs = fit(model, images[:8])
        entry["finite"] = all(np.isfinite(v[-1]) for v in logs.values())
        results["mixed"][family] = entry
    distribute.set_precision("float32")

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

    return measure_in_fresh_process(__file__, tmp_path_factory.mktemp("mirrored"))


def test_two_replicas(measured):
    assert measured["replicas"] == 2


@pytest.mark.parametrize("family", ["ae", "vae", "vqvae"])
def test_mirrored_steps_match_one_device(measured, family):
    entry = measured[family]
    assert entry["update"] > 1e-3  # the steps moved the weights
    assert entry["diff"] < TOLERANCE, entry


def test_mirrored_feature_matching_steps_match_one_device(measured):
    entry = measured["ae_feature_matching"]
    assert entry["update"] > 1e-3
    assert entry["term_effect"] > 1e-4  # the feature term changed the step
    assert entry["diff"] < TOLERANCE, entry


def test_vae_reference_halves_differ(measured):
    # The per-replica seeds matter: the two half-batch steps differ.
    assert measured["vae"]["halves_diff"] > 1e-4


def test_vq_ema_codebook_identical_on_replicas_and_one_device(measured):
    entry = measured["vqvae"]
    assert entry["replica_spread"] == 0.0
    assert entry["codebook_diff"] < TOLERANCE


def test_code_statistics_over_global_batch(measured):
    stats = measured["code_statistics"]
    np.testing.assert_allclose(stats["codebook_usage"], [4 / 16] * 2, rtol=1e-6)
    np.testing.assert_allclose(stats["perplexity"], [4.0] * 2, rtol=1e-5)


def test_vq_fit_metrics_match_one_device(measured):
    entry = measured["vqvae"]
    for name in ("loss", "perplexity", "codebook_usage", "commitment_loss"):
        np.testing.assert_allclose(
            entry["logs"][name], entry["one_device_logs"][name], rtol=1e-4, err_msg=name
        )


def test_dvae_replicas_draw_different_noise(measured):
    assert measured["dvae"]["replica_draw_diff"] > 1e-3
    assert measured["dvae"]["finite"]


def test_temperature_callback_drives_every_replica(measured):
    entry = measured["dvae"]
    np.testing.assert_allclose(
        entry["replica_temperatures"], [entry["expected_temperature"]] * 2, rtol=1e-6
    )
    # The logged temperature is what the replicas used inside the steps.
    np.testing.assert_allclose(entry["temperature_log"], entry["expected_temperature_log"])


def test_no_stateful_random_warning(measured):
    from tests.helpers import stateful_random_messages

    assert not stateful_random_messages(measured)


@pytest.mark.parametrize("family", ["ae", "vae", "vqvae", "dvae"])
def test_mixed_float16_keeps_losses_float32(measured, family):
    entry = measured["mixed"][family]
    assert entry.pop("compute_dtype") == "float16"
    assert entry.pop("finite")
    if "encoder_output" in entry:
        assert entry.pop("encoder_output") == "float16"
    assert set(entry.values()) == {"float32"}, entry


@pytest.mark.parametrize("family", ["ae", "vae", "vqvae", "dvae", "dalle", "ae_feature_matching"])
def test_empty_replica_shard_of_last_batch(measured, family):
    entry = measured["empty_shard"][family]
    assert entry["finite"], entry
    assert all(np.isfinite(entry["evaluate"])), entry
    assert entry["predict_diff"] < 1e-5, entry
    assert entry["predict_one"] == [1, *IMAGE_SHAPE]
    if "diff" in entry:
        assert entry["diff"] < TOLERANCE, entry
