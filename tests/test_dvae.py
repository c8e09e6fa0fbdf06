"""The DALL-E discrete VAE: Gumbel-softmax relaxation, KL to the uniform prior, argmax inference."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.helpers import random_images, tiny_model
from zoo.models.dvae import logit_laplace_nll
from zoo.quantizers import GumbelQuantizer

K = 16


def _quantizer(temperature: float = 1.0, num_embeddings: int = K, **kwargs) -> GumbelQuantizer:
    quantizer = GumbelQuantizer(
        num_embeddings=num_embeddings, embedding_dim=4, temperature=temperature, **kwargs
    )
    quantizer.build((None, 2, 2, num_embeddings))
    return quantizer


def _logits(shape, seed=0, scale=2.0) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).normal(size=shape).astype("float32") * scale)


def test_low_temperature_sample_is_nearly_one_hot():
    quantizer = _quantizer(temperature=1.0 / 16.0)
    samples = quantizer.sample(_logits((64, 2, 2, K))).numpy()
    np.testing.assert_allclose(samples.sum(-1), 1.0, atol=1e-5)
    largest = samples.max(-1)
    assert largest.mean() > 0.95
    assert np.quantile(largest, 0.1) > 0.9
    # The same logits at temperature 1 give clearly soft samples, so the
    # check above measures the temperature, not peaked logits.
    quantizer.temperature.assign(1.0)
    assert quantizer.sample(_logits((64, 2, 2, K))).numpy().max(-1).mean() < 0.8


def test_average_of_many_samples_approaches_softmax():
    quantizer = _quantizer(temperature=1.0 / 16.0, num_embeddings=8)
    logits = _logits((8,), seed=3, scale=1.0)
    samples = quantizer.sample(tf.tile(logits[tf.newaxis], [20_000, 1])).numpy()
    # Standard error of each mean is at most sqrt(0.25 / 20000) ~ 0.0035.
    np.testing.assert_allclose(samples.mean(0), tf.nn.softmax(logits).numpy(), atol=0.02)


def test_straight_through_forward_is_hard_and_backward_is_relaxed():
    quantizer = _quantizer(straight_through=True)
    logits = _logits((4, 2, 2, K))
    with tf.GradientTape() as tape:
        tape.watch(logits)
        out = quantizer(logits, training=True)
        loss = tf.reduce_sum(out["quantized"] ** 2)
    codebook = quantizer.embeddings.numpy()
    vectors = out["quantized"].numpy().reshape(-1, 4)
    distances = ((vectors[:, None, :] - codebook[None]) ** 2).sum(-1)
    assert distances.min(axis=1).max() < 1e-10  # every vector is a codebook row
    assert float(tf.reduce_max(tf.abs(tape.gradient(loss, logits)))) > 0.0


def test_kl_is_zero_for_uniform_logits_and_log_k_for_one_hot():
    quantizer = _quantizer()
    h, w = 2, 3
    uniform = quantizer(tf.zeros((2, h, w, K)), training=False)["kl"].numpy()
    np.testing.assert_allclose(uniform, 0.0, atol=1e-5)

    codes = np.random.default_rng(0).integers(0, K, size=(2, h, w))
    one_hot = quantizer(1e4 * tf.one_hot(codes, K), training=False)["kl"].numpy()
    # Summed over the h * w positions, log K at each.
    np.testing.assert_allclose(one_hot, h * w * math.log(K), rtol=1e-5)

    # In between for any other posterior, and never negative.
    other = quantizer(_logits((2, h, w, K)), training=False)["kl"].numpy()
    assert np.all(other > 0.0) and np.all(other < h * w * math.log(K))


def test_model_kl_loss_is_the_quantizer_kl_per_pixel():
    model = tiny_model("dvae")
    images = random_images(3)
    logits = model.encode_logits(images)
    expected = model.quantizer(logits, training=False)["kl"].numpy() / (28 * 28 * 1)
    terms = model.compute_terms(tf.constant(images), training=False)
    np.testing.assert_allclose(terms["kl_loss"].numpy(), expected, rtol=1e-5)


def test_argmax_inference_and_stochastic_training():
    model = tiny_model("dvae")
    images = random_images(4)
    codes = model.encode(images).numpy()
    np.testing.assert_array_equal(codes, model.encode(images).numpy())
    np.testing.assert_array_equal(codes, np.argmax(model.encode_logits(images).numpy(), -1))
    np.testing.assert_array_equal(model(images).numpy(), model(images).numpy())
    # Training draws Gumbel noise (a fresh stateless seed per call).
    first = model(images, training=True).numpy()
    assert not np.allclose(first, model(images, training=True).numpy())


def test_temperature_is_a_saved_non_trainable_variable():
    model = tiny_model("dvae", temperature=0.5)
    assert isinstance(model.temperature, keras.Variable)
    assert not model.temperature.trainable
    assert float(model.temperature.numpy()) == pytest.approx(0.5)
    assert model.temperature.path not in [v.path for v in model.trainable_variables]
    assert any(v is model.temperature for v in model.non_trainable_variables)


@pytest.mark.parametrize("family", ["vae", "dvae"])
def test_kl_warmup_scales_the_kl_term(family):
    model = tiny_model(family, kl_weight=0.5)
    images = tf.constant(random_images(3))
    for warmup in (0.0, 0.25, 1.0):
        model.kl_warmup.assign(warmup)
        terms = model.compute_terms(images, training=False)
        expected = terms["reconstruction_loss"] + 0.5 * warmup * terms["kl_loss"]
        np.testing.assert_allclose(terms["loss"].numpy(), expected.numpy(), rtol=1e-6)
        assert float(tf.reduce_min(terms["kl_loss"])) > 0.0


def test_logit_laplace_density_integrates_to_one():
    """The likelihood is a proper density on the mapped pixel x in (0, 1)."""
    eps = 0.1
    x = np.linspace(1e-7, 1.0 - 1e-7, 400_001)
    pixels = (x - eps) / (1.0 - 2.0 * eps)  # so that eps + (1 - 2 eps) * pixel == x
    for location, log_scale in [(0.3, -1.0), (-1.5, -0.5)]:
        nll = logit_laplace_nll(
            tf.constant(pixels),
            tf.constant(location, tf.float64),
            tf.constant(log_scale, tf.float64),
            eps,
        ).numpy()
        assert np.trapezoid(np.exp(-nll), x) == pytest.approx(1.0, abs=2e-3)


def test_logit_laplace_model_outputs_images_and_finite_loss():
    model = tiny_model("dvae", likelihood="logit_laplace", image_shape=(16, 16, 3))
    images = random_images(2, (16, 16, 3))
    reconstructions = model(images).numpy()
    assert reconstructions.shape == (2, 16, 16, 3)
    assert reconstructions.min() >= 0.0 and reconstructions.max() <= 1.0
    terms = model.compute_terms(tf.constant(images), training=True)
    assert np.all(np.isfinite(terms["loss"].numpy()))
    assert tuple(model.decode(model.encode(images)).shape) == (2, 16, 16, 3)


def test_sample_is_deterministic_per_seed():
    model = tiny_model("dvae")
    first = model.sample(3, seed=1).numpy()
    assert first.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(first, model.sample(3, seed=1).numpy())
    assert not np.allclose(first, model.sample(3, seed=2).numpy())


def test_defaults_mse_likelihood_and_unit_temperature():
    model = zoo.DVAE(filters=8, num_res_blocks=1, num_embeddings=16, embedding_dim=8)
    assert float(model.temperature.numpy()) == 1.0
    assert model.likelihood == "mse"


def test_diversity_loss_is_zero_for_even_use_and_log_k_for_one_code():
    from zoo.models.dvae import diversity_loss

    even = tf.one_hot(tf.reshape(tf.range(K) % K, (1, 4, 4)), K)  # every code once
    np.testing.assert_allclose(float(diversity_loss(even, K)), 0.0, atol=1e-5)
    one_code = tf.one_hot(tf.zeros((2, 4, 4), tf.int32), K)
    np.testing.assert_allclose(float(diversity_loss(one_code, K)), math.log(K), rtol=1e-5)
    # The batch average counts, not each position: sharp posteriors on
    # different codes are as diverse as flat ones.
    flat = tf.fill((2, 4, 4, K), 1.0 / K)
    np.testing.assert_allclose(float(diversity_loss(flat, K)), 0.0, atol=1e-5)
    partial = tf.one_hot(tf.reshape(tf.range(16) % 4, (1, 4, 4)), K)  # 4 of 16 codes
    np.testing.assert_allclose(float(diversity_loss(partial, K)), math.log(K / 4), rtol=1e-5)


def test_diversity_weight_adds_the_diversity_term_to_the_loss():
    from zoo.models.dvae import diversity_loss

    images = tf.constant(random_images(3))
    plain = tiny_model("dvae", diversity_weight=0.0)
    diverse = tiny_model("dvae", diversity_weight=0.5)
    diverse.set_weights(plain.get_weights())
    base = plain.compute_terms(images, training=False)
    terms = diverse.compute_terms(images, training=False)
    probs = tf.nn.softmax(plain.encode_logits(images.numpy()), axis=-1)
    term = float(diversity_loss(probs, K))
    assert term > 0.0
    np.testing.assert_allclose(terms["loss"].numpy(), base["loss"].numpy() + 0.5 * term, rtol=1e-5)
