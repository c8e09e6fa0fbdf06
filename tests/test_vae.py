"""The VAE: analytic KL, reparameterised sampling, prior samples, bits/dim."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import random_images, tiny_model
from zoo.models.vae import gaussian_kl


def _monte_carlo_kl(mean: np.ndarray, log_variance: np.ndarray, n: int, seed: int = 0):
    """Per-example mean and standard error of log q(z) - log p(z), z ~ q."""
    rng = np.random.default_rng(seed)
    std = np.exp(0.5 * log_variance)
    eps = rng.standard_normal((n, *mean.shape))
    z = mean + std * eps
    log_q = -0.5 * (eps**2 + log_variance + math.log(2 * math.pi))
    log_p = -0.5 * (z**2 + math.log(2 * math.pi))
    axes = tuple(range(2, z.ndim))
    per_sample = (log_q - log_p).sum(axis=axes)  # (n, batch)
    return per_sample.mean(0), per_sample.std(0) / math.sqrt(n)


def test_analytic_kl_matches_monte_carlo():
    rng = np.random.default_rng(1)
    mean = rng.normal(0.0, 1.0, size=(3, 2, 2, 2))
    log_variance = rng.normal(0.0, 0.7, size=(3, 2, 2, 2))
    analytic = gaussian_kl(tf.constant(mean), tf.constant(log_variance)).numpy()
    estimate, stderr = _monte_carlo_kl(mean, log_variance, n=200_000)
    assert analytic.shape == (3,)
    assert np.all(np.abs(analytic - estimate) < 4 * stderr + 1e-3), (analytic, estimate, stderr)


def test_kl_is_zero_only_at_the_prior():
    zeros = tf.zeros((2, 3, 3, 4))
    np.testing.assert_allclose(gaussian_kl(zeros, zeros).numpy(), 0.0, atol=1e-7)
    assert np.all(gaussian_kl(zeros + 0.1, zeros).numpy() > 0.0)
    assert np.all(gaussian_kl(zeros, zeros - 0.1).numpy() > 0.0)


def test_encode_is_the_posterior_mean():
    model = tiny_model("vae")
    images = random_images(3)
    mean, log_variance = model.encode_distribution(images)
    assert mean.shape == log_variance.shape == (3, 7, 7, model.latent_channels)
    np.testing.assert_array_equal(model.encode(images).numpy(), mean.numpy())


def test_training_samples_z_and_inference_uses_the_mean():
    model = tiny_model("vae")
    images = random_images(3)
    inference = model(images).numpy()
    np.testing.assert_array_equal(inference, model(images, training=False).numpy())
    first = model(images, training=True).numpy()
    second = model(images, training=True).numpy()
    assert not np.allclose(first, second)  # fresh noise at each step
    assert not np.allclose(first, inference)


def test_reparameterised_sample_has_the_posterior_statistics():
    """In training the decoder sees z = mean + sigma * eps: over 1,000 copies
    of one image, z has the posterior mean and variance."""
    model = tiny_model("vae")
    image = random_images(1)
    mean, log_variance = model.encode_distribution(image)
    draws = []
    original_call = model.decoder.call

    def capture(latents):
        draws.append(latents)
        return original_call(latents)

    model.decoder.call = capture
    try:
        model.compute_terms(tf.constant(np.repeat(image, 1000, axis=0)), training=True)
    finally:
        model.decoder.call = original_call
    z = draws[0].numpy()
    std = np.exp(0.5 * log_variance.numpy()[0])
    # Standard errors: std / sqrt(1000) for the mean, ~4.5% for the variance.
    np.testing.assert_allclose(z.mean(0), mean.numpy()[0], atol=float(5 * std.max() / 31.6))
    np.testing.assert_allclose(z.var(0), std**2, rtol=0.25)


def test_sample_is_deterministic_per_seed():
    model = tiny_model("vae")
    first = model.sample(4, seed=3).numpy()
    assert first.shape == (4, 28, 28, 1)
    assert first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, model.sample(4, seed=3).numpy())
    assert not np.allclose(first, model.sample(4, seed=4).numpy())


def test_bits_per_dim_is_the_negative_elbo_with_unit_kl_weight():
    model = tiny_model("vae", kl_weight=0.25)
    images = tf.constant(random_images(3))
    terms = model.compute_terms(images, training=False)
    nats_per_dim = terms["reconstruction_loss"] + terms["kl_loss"]
    expected = nats_per_dim / math.log(2.0) + 8.0
    np.testing.assert_allclose(terms["bits_per_dim"].numpy(), expected.numpy(), rtol=1e-6)
    mean, log_variance = model.encode_distribution(images)
    np.testing.assert_allclose(
        terms["kl_loss"].numpy(), gaussian_kl(mean, log_variance).numpy() / (28 * 28), rtol=1e-5
    )


def test_reconstruction_loss_is_the_gaussian_nll_per_dim_at_the_learned_scale():
    # -log N(x; mu, s^2) per pixel = (x - mu)^2 / (2 s^2) + log s + log(2 pi) / 2,
    # mu the decoded posterior sample and s = exp(log_scale), averaged over pixels.
    model = tiny_model("vae")
    images = random_images(3)
    decoded = []
    original_call = model.decoder.call

    def capture(latents):
        output = original_call(latents)
        decoded.append(output)
        return output

    model.decoder.call = capture
    try:
        for log_scale in (math.log(0.1), math.log(0.5)):
            model.log_scale.assign(log_scale)
            decoded.clear()
            terms = model.compute_terms(tf.constant(images), training=False)
            mu = 1.0 / (1.0 + np.exp(-decoded[0].numpy()))  # the sample's decoded mean
            s = math.exp(log_scale)
            nll = (images - mu) ** 2 / (2 * s**2) + math.log(s) + 0.5 * math.log(2 * math.pi)
            np.testing.assert_allclose(
                terms["reconstruction_loss"].numpy(), nll.mean(axis=(1, 2, 3)), rtol=1e-4)
    finally:
        model.decoder.call = original_call


def test_same_seed_same_draws_under_xla():
    # TensorFlow's default stateless algorithm is ThreeFry under XLA, Philox otherwise:
    # `sample(seed)` and the fixed-seed `bits_per_dim` estimate must not depend on it.
    model = tiny_model("vae")
    xla_sample = tf.function(lambda: model.sample(3, seed=5), jit_compile=True)()
    np.testing.assert_allclose(xla_sample, model.sample(3, seed=5), atol=1e-5)
    images = random_images(8)
    model.compile(optimizer="adam")
    plain = model.evaluate(images, batch_size=8, verbose=0, return_dict=True)
    model.compile(optimizer="adam", jit_compile=True)
    xla = model.evaluate(images, batch_size=8, verbose=0, return_dict=True)
    for name in ("loss", "bits_per_dim", "mse"):
        assert xla[name] == pytest.approx(plain[name], rel=1e-5), name
