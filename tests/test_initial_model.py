"""Fine-tuning runs (`--init_from`) given model options: what they change, what is refused."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import random_images, tiny_model
from trainers import config as config_lib
from trainers import initial_model
from trainers import train as train_command
from trainers.config import ConfigError
from trainers.training import train


@pytest.fixture(scope="module")
def initial_dvae(tmp_path_factory):
    """A tiny trained dVAE saved as a `.keras` file: (the model, its path)."""
    path = tmp_path_factory.mktemp("initial") / "dvae.keras"
    model = tiny_model("dvae", kl_weight=0.5)
    model.compile(optimizer="adam")
    model.fit(random_images(16), batch_size=8, epochs=1, verbose=0)
    model.temperature.assign(0.25)  # as if annealed
    model.save(path)
    return model, str(path)


def resolved(init_from: str, *assignments: str, **training) -> dict:
    config = config_lib.resolve(None, None, {"init_from": init_from, **training}, assignments)
    return initial_model.resolve(config)


def test_options_that_keep_the_weights_change_the_objective_and_nothing_else(initial_dvae):
    model, path = initial_dvae
    config = resolved(path, "kl_weight=0", "straight_through=true")
    assert config["model"] == "dvae"
    expected = {**initial_model.settings(model), "kl_weight": 0, "straight_through": True}
    assert config["model_config"] == expected
    tuned = initial_model.load_with(path, config["model_config"], config["model"])
    assert tuned.kl_weight == 0 and tuned.quantizer.straight_through
    for new, old in zip(tuned.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(new, old)
    images = tf.constant(random_images(4))
    np.testing.assert_array_equal(tuned.encode(images), model.encode(images))
    # Inference is the same function; the loss no longer counts the KL.
    old_terms = model.compute_terms(images, training=False)
    new_terms = tuned.compute_terms(images, training=False)
    np.testing.assert_allclose(new_terms["reconstructions"], old_terms["reconstructions"])
    np.testing.assert_allclose(new_terms["loss"], new_terms["reconstruction_loss"])
    assert np.all(old_terms["loss"] > old_terms["reconstruction_loss"])


def test_without_options_the_initial_model_is_used_as_it_is(initial_dvae):
    model, path = initial_dvae
    config = resolved(path)
    assert config["model_config"] == initial_model.settings(model)
    assert config["model_config"]["kl_weight"] == 0.5


def test_warm_up_and_temperature_come_from_the_initial_model_unless_the_run_gives_them(
        initial_dvae):
    _, path = initial_dvae
    training = resolved(path)["training"]
    assert training["kl_warmup_steps"] == 0
    assert training["temperature_schedule"]["start"] == 0.25
    training = resolved(path, "training.kl_warmup_steps=500",
                        "training.temperature_schedule.start=1.0")["training"]
    assert training["kl_warmup_steps"] == 500
    assert training["temperature_schedule"]["start"] == 1.0


@pytest.mark.parametrize("assignments, message", [
    (["num_embeddings=32"], r"with num_embeddings=32: its weights do not fit the model these "
                            r"options describe \(num_embeddings=16 there\)"),
    (["filters=4", "kl_weight=0"], r"with filters=4, kl_weight=0: its weights do not fit .*"
                                   r"\(filters=8, kl_weight=0.5 there\)"),
    (["commitment_cost=0.5"], r"Unknown model option\(s\) commitment_cost for --init_from=.*, "
                              r"a DVAE\. Known: .*kl_weight"),
    (["filtrs=4"], r"Unknown model option\(s\) filtrs"),
    # RGB data on a grayscale model: the channels are what does not fit, the size may change.
    (["image_shape=[32,48,3]"], r"with image_shape=\[32, 48, 3\]: .*made for 1 channel\(s\), "
                                r"not 3; .*--set 'image_shape=\[32,48,1\]' keeps 1 channel"),
    (["kl_weight=-1"], r"with kl_weight=-1: `kl_weight` must be a finite number >= 0"),
])
def test_options_the_initial_model_cannot_take_are_refused(initial_dvae, assignments, message):
    _, path = initial_dvae
    with pytest.raises(ConfigError, match=message):
        resolved(path, *assignments)


def test_a_run_trains_with_the_options_and_a_rerun_with_others_is_refused(initial_dvae,
                                                                           tmp_path):
    model, path = initial_dvae
    np.save(tmp_path / "images.npy", (random_images(24) * 255).astype(np.uint8))
    training = {"dataset": str(tmp_path / "images.npy"), "epochs": 1, "batch_size": 8,
                "precision": "float32"}
    config = config_lib.resolve(None, None, {"init_from": path, **training}, ["kl_weight=0"])
    train(config, tmp_path / "run", verbose=0)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model_config"] == {**initial_model.settings(model), "kl_weight": 0}
    train_command._check_model_dir(tmp_path / "run", config)  # the same command: resumes
    resume = config_lib.resolve(None, str(tmp_path / "run" / "config.json"), {}, [])
    train_command._check_model_dir(tmp_path / "run", resume)
    for assignments, differing in [
            (["kl_weight=0.1"], "model_config.kl_weight"),
            (["kl_weight=0", "training.kl_warmup_steps=5"], "training.kl_warmup_steps"),
            (["kl_weight=0", "training.temperature_schedule.start=1.0"],
             "training.temperature_schedule.start")]:
        other = config_lib.resolve(None, None, {"init_from": path, **training}, assignments)
        with pytest.raises(ValueError, match=rf"different config .*differing: {differing}\b"):
            train_command._check_model_dir(tmp_path / "run", other)



def test_a_prior_as_initial_model_points_to_train_prior(tmp_path):
    from tests.test_transformer_prior import tiny_prior

    path = tmp_path / "prior.keras"
    tiny_prior().save(path)
    with pytest.raises(ConfigError, match="TransformerPrior, not one of the zoo's autoencoders"
                       ".*trainers.train_prior"):
        resolved(str(path))


def test_a_vqvae_starts_a_dvae_run_as_the_dvae_that_gives_its_codes(tmp_path):
    import keras

    import zoo

    vqvae = tiny_model("vqvae")
    vqvae.save(tmp_path / "vqvae.keras")
    np.save(tmp_path / "images.npy", (random_images(16) * 255).astype(np.uint8))
    training = {"init_from": str(tmp_path / "vqvae.keras"), "dataset": str(tmp_path / "images.npy"),
                "epochs": 1, "batch_size": 8, "precision": "float32"}
    config = config_lib.resolve("dvae", None, training, ["kl_weight=0.01", "temperature=0.0625"])
    resolved_config = initial_model.resolve(config)
    assert resolved_config["model"] == "dvae"
    assert resolved_config["model_config"]["filters"] == vqvae.filters
    assert resolved_config["training"]["temperature_schedule"]["start"] == 0.0625
    dvae = initial_model.load_with(training["init_from"], resolved_config["model_config"], "dvae")
    assert type(dvae) is zoo.DVAE and dvae.kl_weight == 0.01
    images = random_images(8, seed=1)
    np.testing.assert_array_equal(dvae.encode(images), vqvae.encode(images))
    train(config, tmp_path / "run", verbose=0)
    tuned = keras.saving.load_model(tmp_path / "run" / "last.keras", compile=False)
    assert type(tuned) is zoo.DVAE and tuned.get_config()["temperature"] == 0.0625
    # Without a temperature the schedule starts at the converted model's, 1/16.
    default = initial_model.resolve(config_lib.resolve("dvae", None, training, []))
    assert default["training"]["temperature_schedule"]["start"] == 0.0625
    with pytest.raises(ConfigError, match=r"--model=ae contradicts --init_from=.*, which is a vq"
                       r".*--model=dvae converts it"):
        initial_model.resolve(config_lib.resolve("ae", None, training, []))


@pytest.fixture
def initial_dalle(tmp_path):
    """A tiny `zoo.DalleDVAE` saved as a `.keras` file: (the model, its path)."""
    import zoo

    model = zoo.DalleDVAE(image_shape=(32, 32, 3), n_hid=8, n_blk_per_group=1, vocab_size=32,
                          n_init=8)
    model.save(tmp_path / "dalle.keras")
    return model, str(tmp_path / "dalle.keras")


def test_a_dalle_dvae_is_a_dvae_with_its_own_options(initial_dalle):
    model, path = initial_dalle
    config = resolved(path, "kl_weight=0")
    assert config["model"] == "dvae" and config["model_config"]["n_hid"] == 8
    tuned = initial_model.load_with(path, config["model_config"], config["model"])
    assert type(tuned) is type(model) and tuned.kl_weight == 0
    for new, old in zip(tuned.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(new, old)
    with pytest.raises(ConfigError, match=r"with vocab_size=64: its weights do not fit"):
        resolved(path, "vocab_size=64")


@pytest.mark.slow
def test_the_train_command_fine_tunes_a_dalle_dvae(initial_dalle, tmp_path):
    import keras

    _, path = initial_dalle
    np.save(tmp_path / "images.npy", (random_images(16, (32, 32, 3)) * 255).astype(np.uint8))
    config = config_lib.resolve(None, None, {
        "init_from": path, "dataset": str(tmp_path / "images.npy"), "epochs": 1,
        "batch_size": 8, "precision": "float32"}, ["kl_weight=0"])
    train(config, tmp_path / "run", verbose=0)
    tuned = keras.saving.load_model(tmp_path / "run" / "last.keras", compile=False)
    assert type(tuned).__name__ == "DalleDVAE" and tuned.kl_weight == 0
