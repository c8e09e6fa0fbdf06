"""The contract every family shares: shapes, gradients, config, fit inputs, inference."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.helpers import (
    DISCRETE_FAMILIES,
    FAMILY_NAMES,
    changed_variables,
    random_codes,
    random_images,
    summary_text,
    tiny_kwargs,
    tiny_model,
    variable_values,
)

SHAPES = [(28, 28, 1), (32, 32, 3)]


def test_public_names():
    assert set(zoo.FAMILIES) == {"ae", "vae", "vqvae", "dvae"}
    assert (zoo.FAMILIES["ae"], zoo.FAMILIES["vae"]) == (zoo.AE, zoo.VAE)
    assert (zoo.FAMILIES["vqvae"], zoo.FAMILIES["dvae"]) == (zoo.VQVAE, zoo.DVAE)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_no_argument_defaults_suit_fashion_mnist(family):
    model = zoo.FAMILIES[family]()
    assert model.image_shape == (28, 28, 1)
    assert model.latent_grid == (7, 7)
    if family in DISCRETE_FAMILIES:
        assert model.num_embeddings == 512


@pytest.mark.parametrize("shape", SHAPES, ids=["28x28x1", "32x32x3"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_shapes(family, shape):
    model = tiny_model(family, image_shape=shape)
    images = random_images(3, shape)
    h, w = shape[0] // 4, shape[1] // 4
    assert model.latent_grid == (h, w)

    reconstructions = model(images)
    assert tuple(reconstructions.shape) == (3, *shape)
    assert reconstructions.dtype == tf.float32
    values = reconstructions.numpy()
    assert values.min() >= 0.0 and values.max() <= 1.0

    latents = model.encode(images)
    if family in DISCRETE_FAMILIES:
        assert latents.dtype == tf.int32
        assert tuple(latents.shape) == (3, h, w)
        assert 0 <= latents.numpy().min() and latents.numpy().max() < model.num_embeddings
    else:
        assert latents.dtype == tf.float32
        assert tuple(latents.shape) == (3, h, w, model.latent_channels)
    decoded = model.decode(latents)
    assert tuple(decoded.shape) == (3, *shape)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_fully_convolutional(family):
    """A model built for 28x28 accepts any size divisible by the factor (here 16x20)."""
    model = tiny_model(family)
    images = random_images(2, (16, 20, 1))
    assert tuple(model(images).shape) == (2, 16, 20, 1)
    latents = model.encode(images)
    assert tuple(latents.shape[1:3]) == (4, 5)
    assert tuple(model.decode(latents).shape) == (2, 16, 20, 1)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_inference_is_deterministic_and_equals_decode_of_encode(family):
    model = tiny_model(family)
    images = random_images(4)
    first = model(images, training=False).numpy()
    np.testing.assert_array_equal(first, model(images, training=False).numpy())
    np.testing.assert_array_equal(model.encode(images).numpy(), model.encode(images).numpy())
    # Inference reconstructs through the same latent that `encode` returns
    # (VAE: the posterior mean; VQ-VAE/dVAE: the code grid).
    np.testing.assert_allclose(
        first, model.decode(model.encode(images)).numpy(), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("family", ["vqvae", "dvae"])
def test_inference_changes_no_variable(family):
    """EMA codebook, dead-code restarts and seed generators move only in training."""
    model = tiny_model(family)  # the VQ-VAE defaults: use_ema=True, restarts on
    images = random_images(4)
    before = variable_values(model)
    model(images, training=False)
    model(images)
    model.encode(images)
    model.decode(random_codes(model, 2))
    model.predict(images, verbose=0)
    assert changed_variables(before, variable_values(model)) == []
    # The same check can fail: a training call does change the state.
    model(images, training=True)
    assert changed_variables(before, variable_values(model)) != []


def _loss_gradients(model, images, term):
    with tf.GradientTape() as tape:
        terms = model.compute_terms(tf.constant(images), training=True)
        loss = tf.reduce_mean(terms[term])
    variables = model.trainable_variables
    return dict(zip([v.path for v in variables], tape.gradient(loss, variables), strict=True))


def _nonzero(gradient) -> bool:
    if gradient is None:
        return False
    return float(tf.reduce_max(tf.abs(tf.convert_to_tensor(gradient)))) > 0.0


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_reconstruction_gradient_reaches_every_encoder_weight(family):
    """Through the reparameterisation (VAE), straight-through (VQ-VAE) and
    Gumbel-softmax relaxation (dVAE): the reconstruction loss alone trains
    the encoder."""
    model = tiny_model(family)
    gradients = _loss_gradients(model, random_images(4), "reconstruction_loss")
    encoder_paths = [v.path for v in model.encoder.trainable_variables]
    assert encoder_paths
    missing = [path for path in encoder_paths if not _nonzero(gradients[path])]
    assert missing == []


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_total_loss_gradient_reaches_every_trainable_weight(family):
    overrides = {"use_ema": False} if family == "vqvae" else {}
    model = tiny_model(family, **overrides)
    gradients = _loss_gradients(model, random_images(4), "loss")
    missing = [path for path, gradient in gradients.items() if not _nonzero(gradient)]
    assert missing == []
    if family == "vqvae":
        assert model.quantizer.embeddings.path in gradients  # trainable without EMA


NON_DEFAULT_KWARGS = {
    "ae": {"latent_channels": 3, "num_downsamples": 1},
    "vae": {"latent_channels": 2, "kl_weight": 0.5, "seed": 7},
    "vqvae": {
        "commitment_cost": 0.5,
        "use_ema": False,
        "decay": 0.9,
        "dead_code_threshold": 0.0,
        "seed": 3,
    },
    "dvae": {
        "kl_weight": 0.1,
        "temperature": 0.5,
        "straight_through": True,
        "likelihood": "logit_laplace",
        "logit_laplace_eps": 0.05,
        "diversity_weight": 0.01,
        "seed": 5,
    },
}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_config_round_trip(family):
    kwargs = tiny_kwargs(family, image_shape=(16, 16, 3), **NON_DEFAULT_KWARGS[family])
    model = zoo.FAMILIES[family](**kwargs)
    config = model.get_config()
    for name, value in kwargs.items():
        expected = list(value) if isinstance(value, tuple) else value
        assert config[name] == expected, name
    json.dumps(config)  # plain JSON, as `.keras` files store it

    clone = type(model).from_config(config)
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    images = random_images(2, (16, 16, 3))
    np.testing.assert_allclose(clone(images).numpy(), model(images).numpy(), rtol=1e-6)

    # Registered under the package name `zoo`.
    assert keras.saving.get_registered_name(type(model)) == f"zoo>{type(model).__name__}"
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert type(revived) is type(model) and revived.get_config() == config


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_evaluate_logs_the_mse_and_psnr_of_the_reconstructions(family):
    # The logged values, not only their names: PSNR in dB for images in [0, 1],
    # 10 log10(1 / MSE) per image, averaged over images.
    model = tiny_model(family)
    model.compile(optimizer="adam")
    images = random_images(4)
    logs = model.evaluate(images, batch_size=4, verbose=0, return_dict=True)
    mse = ((model(images).numpy() - images) ** 2).mean(axis=(1, 2, 3))
    assert logs["mse"] == pytest.approx(mse.mean(), rel=1e-4)
    assert logs["psnr"] == pytest.approx(np.mean(10.0 * np.log10(1.0 / mse)), rel=1e-4)


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("method, weights", [
    ("fit", "sample_weight"), ("fit", "class_weight"), ("evaluate", "sample_weight")])
def test_example_weights_are_refused_not_ignored(family, method, weights):
    # Each model computes its own loss: Keras's weights would be silently unused.
    model = tiny_model(family)
    model.compile(optimizer="adam")
    images = random_images(4)
    value = np.zeros(4, "float32") if weights == "sample_weight" else {0: 0.0}
    with pytest.raises(ValueError, match=rf"do not weight examples: `{method}` got {weights}"):
        getattr(model, method)(images, np.zeros(4, "int32"), verbose=0, **{weights: value})
    getattr(model, method)(images, verbose=0, **{weights: None})  # the default is fine


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_summary_gives_every_layer_an_output_shape(family):
    """`summary()` is a user's first look at a model: no row reads `?`."""
    model = tiny_model(family, image_shape=(32, 32, 3))
    rows = summary_text(model)
    assert "?" not in rows, rows
    if family in DISCRETE_FAMILIES:
        assert "encoding_indices:" in rows, rows
