"""Frozen parts: fine-tuning the decoder keeps every image's code (`training.freeze`)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.helpers import DISCRETE_FAMILIES, FAMILY_NAMES, random_images, tiny_model
from trainers import config as config_lib
from trainers.config import ConfigError
from trainers.training import freeze_parts, train


def _code_parts(family: str) -> list[str]:
    """What decides an image's code: the encoder, and a VQ-VAE's codebook."""
    return list(zoo.FAMILIES[family].encoding_parts)


def test_encoding_parts_are_the_encoder_and_a_vqvae_codebook():
    assert {name: cls.encoding_parts for name, cls in zoo.FAMILIES.items()} == {
        "ae": ("encoder",), "vae": ("encoder",), "vqvae": ("encoder", "quantizer"),
        "dvae": ("encoder",)}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_fit_with_frozen_code_parts_moves_only_the_decoder(family):
    images = random_images(32)
    model = tiny_model(family)
    model.compile(optimizer="adam")
    model.fit(images[:8], batch_size=8, epochs=1, verbose=0)  # a codebook fitted to the data
    freeze_parts(model, _code_parts(family))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    frozen = {p: [w.numpy() for w in getattr(model, p).weights] for p in _code_parts(family)}
    decoder = [w.numpy() for w in model.decoder.weights]
    codes = model.encode(images)
    model.fit(images, batch_size=8, epochs=2, verbose=0)
    for part, before in frozen.items():  # EMA statistics included
        for old, new in zip(before, getattr(model, part).weights, strict=True):
            np.testing.assert_array_equal(old, new.numpy(), err_msg=f"{part}/{new.path}")
    assert max(np.abs(old - new.numpy()).max()
               for old, new in zip(decoder, model.decoder.weights, strict=True)) > 1e-4
    np.testing.assert_array_equal(model.encode(images), codes)


def test_unfrozen_vqvae_quantizer_does_update_its_codebook():
    """The counterpart of the frozen case: training does move the EMA codebook."""
    model = tiny_model("vqvae")
    model.compile(optimizer="adam")
    model.fit(random_images(8), batch_size=8, epochs=1, verbose=0)
    freeze_parts(model, ["encoder"])
    before = model.quantizer.embeddings.numpy()
    model.quantizer(model.encoder(random_images(8, seed=1)), training=True)
    assert np.abs(model.quantizer.embeddings.numpy() - before).max() > 1e-6


def test_dvae_with_a_frozen_encoder_trains_on_the_argmax_code():
    model = tiny_model("dvae")
    images = tf.constant(random_images(8))
    relaxed = model.compute_terms(images, training=True)["reconstructions"]
    inference = model(images)
    assert np.abs(relaxed - inference).max() > 1e-4  # a Gumbel sample, not the argmax
    freeze_parts(model, ["encoder"])
    for _ in range(2):  # no noise: the same result each time
        terms = model.compute_terms(images, training=True)
        np.testing.assert_allclose(terms["reconstructions"], inference, atol=1e-5)


def test_train_command_fine_tunes_the_decoder_of_a_model_and_keeps_its_codes(tmp_path):
    images = (random_images(48) * 255).astype(np.uint8)
    np.save(tmp_path / "images.npy", images)
    initial = tiny_model("vqvae")
    initial.compile(optimizer="adam")
    initial.fit(random_images(16), batch_size=8, epochs=1, verbose=0)
    initial.save(tmp_path / "initial.keras")
    config = config_lib.resolve(None, training_overrides={
        "dataset": str(tmp_path / "images.npy"), "epochs": 1, "batch_size": 8,
        "init_from": str(tmp_path / "initial.keras"), "freeze": ["encoder", "quantizer"],
        "learning_rate": 1e-2, "precision": "float32"})
    train(config, tmp_path / "run", verbose=0)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["training"]["freeze"] == ["encoder", "quantizer"]
    tuned = keras.saving.load_model(tmp_path / "run" / "last.keras", compile=False)
    test = random_images(16, seed=3)
    np.testing.assert_array_equal(tuned.encode(test), initial.encode(test))
    assert np.abs(tuned.decoder.weights[0].numpy() - initial.decoder.weights[0].numpy()).max() > 0
    assert tuned.encoder.trainable  # freezing belongs to the run, not to the saved model


@pytest.mark.parametrize("parts, message", [
    (["quantizer"], r"AE has no 'quantizer'; its parts are \['encoder', 'decoder'\]"),
    (["encoder", "decoder"], r"leaves nothing of the model to train"),
])
def test_freezing_what_the_model_lacks_or_all_of_it_is_refused(parts, message):
    with pytest.raises(ConfigError, match=message):
        freeze_parts(tiny_model("ae"), parts)


@pytest.mark.parametrize("value", ["encoder", ["codebook"], ["encoder", "encoder"]])
def test_config_refuses_a_freeze_list_it_cannot_apply(value):
    with pytest.raises(ConfigError, match=r"`training.freeze` must be a list of distinct parts"):
        config_lib.resolve("vqvae", training_overrides={"freeze": value})


@pytest.mark.parametrize("family", DISCRETE_FAMILIES)
def test_freezing_the_decoder_leaves_the_code_parts_training(family):
    model = tiny_model(family)
    freeze_parts(model, ["decoder"])
    assert model.decoder.trainable_weights == []
    assert model.encoder.trainable_weights


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_fit_of_a_model_with_nothing_trainable_warns_and_keeps_its_weights(family):
    """As `keras.Model`: a frozen model fits (metrics, no optimizer step) with a warning."""
    model = tiny_model(family)
    model.trainable = False
    model.compile(optimizer="adam")
    before = [w.numpy() for w in model.weights]
    with pytest.warns(UserWarning, match="does not have any trainable weights"):
        history = model.fit(random_images(8), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    for old, new in zip(before, model.weights, strict=True):
        if "seed_generator" not in new.path:
            np.testing.assert_array_equal(old, new.numpy(), err_msg=new.path)


def test_vqvae_with_only_its_ema_codebook_learning_fits():
    """Encoder and decoder frozen: no gradient step, but the EMA codebook follows the data."""
    model = tiny_model("vqvae")
    model.encoder.trainable = False
    model.decoder.trainable = False
    model.compile(optimizer="adam")
    before = model.quantizer.embeddings.numpy()
    with pytest.warns(UserWarning, match="does not have any trainable weights"):
        model.fit(random_images(8), batch_size=4, epochs=1, verbose=0)
    assert np.abs(model.quantizer.embeddings.numpy() - before).max() > 1e-6


def test_frozen_prior_fits_without_an_optimizer_step():
    prior = zoo.TransformerPrior(num_embeddings=16, grid_shape=(2, 2), num_classes=3,
                                 embed_dim=8, num_layers=1, num_heads=2, mlp_dim=8)
    prior.trainable = False
    prior.compile(optimizer="adam")
    codes = np.random.default_rng(0).integers(0, 16, (8, 2, 2))
    with pytest.warns(UserWarning, match="does not have any trainable weights"):
        history = prior.fit(codes, np.zeros(8, "int32"), batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
