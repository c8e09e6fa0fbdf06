"""Feature matching (`zoo.perceptual.FeatureMatching`) as a compile option of every family."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.helpers import FAMILY_NAMES, random_images, tiny_model
from zoo.perceptual import FeatureMatching


def feature_network(image_shape=(28, 28, 1)) -> keras.Model:
    inputs = keras.Input(image_shape)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv_1")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv_2")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))


def test_distance_is_zero_for_the_images_themselves_and_scales_with_the_weight():
    network = feature_network()
    images = tf.constant(random_images(4))
    other = tf.constant(random_images(4, seed=1))
    one = FeatureMatching(network, ["conv_1", "conv_2"], weight=1.0)
    tenth = FeatureMatching(network, ["conv_1", "conv_2"], weight=0.1)
    assert one(images, images).shape == (4,)
    np.testing.assert_allclose(one(images, images), 0.0, atol=1e-6)
    assert float(tf.reduce_min(one(images, other))) > 0.0
    np.testing.assert_allclose(tenth(images, other), 0.1 * one(images, other), rtol=1e-5)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_compiled_term_is_in_the_loss_trains_the_decoder_and_leaves_the_network(family):
    network = feature_network()
    frozen = [w.numpy() for w in network.weights]
    images = random_images(16)
    matching = FeatureMatching(network, ["conv_1", "conv_2"], weight=1.0)
    plain, perceptual = tiny_model(family), tiny_model(family)
    perceptual.set_weights(plain.get_weights())
    plain.compile(optimizer=keras.optimizers.SGD(0.1))
    perceptual.compile(optimizer=keras.optimizers.SGD(0.1), feature_matching=matching)
    # No noise in evaluation: the losses differ by exactly the mean distance.
    logs = [m.evaluate(images, batch_size=16, verbose=0, return_dict=True) for m in
            (plain, perceptual)]
    reconstructions = plain.predict(images, verbose=0)
    expected = float(tf.reduce_mean(matching(tf.constant(images), tf.constant(reconstructions))))
    assert expected > 0
    np.testing.assert_allclose(logs[1]["loss"] - logs[0]["loss"], expected, rtol=1e-3)
    np.testing.assert_allclose(logs[1]["mse"], logs[0]["mse"], rtol=1e-6)
    # One step from the same weights: the term's gradient moves the decoder differently.
    for model in (plain, perceptual):
        model.fit(images, batch_size=16, epochs=1, shuffle=False, verbose=0)
    kernels = [m.decoder.trainable_weights[0].numpy() for m in (plain, perceptual)]
    assert np.abs(kernels[1] - kernels[0]).max() > 1e-6
    for before, after in zip(frozen, network.weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())
    assert len(perceptual.weights) == len(plain.weights)  # not part of the model
    assert network.trainable  # the caller's object is left as it was


def test_feature_matching_is_not_saved_with_the_model(tmp_path):
    model = tiny_model("ae")
    model.compile(optimizer="adam",
                  feature_matching=FeatureMatching(feature_network(), ["conv_1"], weight=1.0))
    images = random_images(8)
    model.fit(images, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras warns when it cannot restore the compile state
        loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.feature_matching is None
    # Loaded compiled, with the optimizer's state, ready to fine-tune.
    assert loaded.compiled and int(loaded.optimizer.iterations) == 1
    np.testing.assert_allclose(loaded.optimizer.variables[-1], model.optimizer.variables[-1])
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=1e-6)


def test_bad_feature_matching_arguments_are_refused_clearly():
    network = feature_network()
    with pytest.raises(ValueError, match=r"no layer named \['conv_9'\].*conv_1"):
        FeatureMatching(network, ["conv_9"])
    with pytest.raises(ValueError, match="non-empty list"):
        FeatureMatching(network, "conv_1")
    with pytest.raises(ValueError, match="weight"):
        FeatureMatching(network, ["conv_1"], weight=0.0)
    with pytest.raises(TypeError, match="keras.Model"):
        FeatureMatching(lambda x: x, ["conv_1"])
    model = tiny_model("ae")
    with pytest.raises(TypeError, match="FeatureMatching"):
        model.compile(optimizer="adam", feature_matching=lambda x, y: 0.0)
    rgb = FeatureMatching(feature_network((28, 28, 3)), ["conv_1"])
    with pytest.raises(ValueError, match=r"\(28, 28, 3\).*\(28, 28, 1\)"):
        model.compile(optimizer="adam", feature_matching=rgb)


def test_feature_matching_fits_under_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = zoo.VQVAE(filters=8, num_embeddings=16, embedding_dim=4)
    model.compile(optimizer="adam",
                  feature_matching=FeatureMatching(feature_network(), ["conv_1", "conv_2"]))
    history = model.fit(random_images(16), batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_the_train_command_trains_with_the_shipped_feature_network(tmp_path):
    from trainers import config as config_lib
    from trainers.training import train

    np.save(tmp_path / "images.npy", (random_images(40) * 255).astype("uint8"))
    overrides = {"dataset": str(tmp_path / "images.npy"), "epochs": 1, "batch_size": 8,
                 "steps_per_epoch": 2, "feature_matching_weight": 0.5}
    config = config_lib.resolve("ae", training_overrides=overrides,
                                assignments=["filters=8", "num_res_blocks=1"])
    model, history = train(config, tmp_path / "run", verbose=0)
    assert model.feature_matching.layers == ["stage_1", "stage_2"]
    # The AE's loss is its reconstruction loss alone, but for the term.
    logs = history.history
    assert logs["loss"][0] > logs["reconstruction_loss"][0] + 1e-4
    assert logs["val_loss"][0] > logs["val_reconstruction_loss"][0] + 1e-4
    saved = config_lib.load(tmp_path / "run" / "config.json")["training"]
    assert saved["feature_matching_weight"] == 0.5 and saved["feature_network"] is None


def test_train_classifier_command_writes_a_feature_network(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tests.helpers import REPO_ROOT
    from trainers import sample_quality

    output = tmp_path / "features.weights.h5"
    result = subprocess.run(
        [sys.executable, "-m", "trainers.train_classifier", "--architecture=features",
         "--epochs=1", "--max_images=256", "--image_shape=28,28,1", f"--output={output}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads(sample_quality.info_path(output).read_text())
    assert info["architecture"] == "features" and "--architecture=features" in info["command"]
    network = sample_quality.load_classifier(output)
    assert sample_quality.feature_map_layers(network) == ["stage_1", "stage_2"]
    FeatureMatching(network, ["stage_1", "stage_2"]).check_image_shape((28, 28, 1))


def test_the_deep_feature_network_compares_its_three_stages_and_others_are_refused():
    from trainers import sample_quality

    deep = sample_quality.ARCHITECTURES["features_deep"]((28, 28, 1), 10)
    assert sample_quality.feature_map_layers(deep) == ["stage_1", "stage_2", "stage_3"]
    assert [tuple(deep.get_layer(f"stage_{i}").output.shape[1:]) for i in (1, 2, 3)] == [
        (28, 28, 32), (14, 14, 64), (7, 7, 128)]
    with pytest.raises(ValueError, match="not a feature network"):
        sample_quality.feature_map_layers(sample_quality.build_classifier())


def test_the_network_runs_in_inference_mode_even_inside_a_training_call():
    inputs = keras.Input((28, 28, 1))
    conv = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    network = keras.Model(inputs, keras.layers.Dropout(0.9, name="drop")(conv))
    matching = FeatureMatching(network, ["drop"], weight=1.0)

    class Outer(keras.layers.Layer):  # passes training=True to the layers it calls
        def call(self, images, other, training=None):
            return matching(images, other)

    images, other = tf.constant(random_images(2)), tf.constant(random_images(2, seed=1))
    outer = Outer()
    np.testing.assert_array_equal(outer(images, other, training=True),
                                  outer(images, other, training=True))
