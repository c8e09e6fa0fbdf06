"""`zoo.DVAE.from_vqvae`: a dVAE that starts where a trained VQ-VAE is."""

import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.helpers import random_images, tiny_model


@pytest.fixture(scope="module")
def trained_vqvae():
    model = tiny_model("vqvae")
    model.compile(optimizer="adam")
    model.fit(random_images(32), batch_size=8, epochs=2, verbose=0, shuffle=False)
    return model


def test_the_dvae_gives_the_vqvaes_codes_and_reconstructions(trained_vqvae):
    vqvae = trained_vqvae
    dvae = zoo.DVAE.from_vqvae(vqvae, logit_scale=2.0, temperature=1 / 16, kl_weight=0.01)
    assert isinstance(dvae, zoo.DVAE) and dvae.kl_weight == 0.01
    assert dvae.get_config()["filters"] == vqvae.get_config()["filters"]
    images = random_images(16, seed=1)
    codes = vqvae.encode(images)
    assert len(np.unique(codes)) > 1  # the check below would pass for a constant code
    np.testing.assert_array_equal(dvae.encode(images), codes)
    np.testing.assert_allclose(dvae.decode(codes), vqvae.decode(codes), atol=1e-6)
    np.testing.assert_allclose(dvae(images), vqvae(images), atol=1e-5)
    # The logits are the negative squared distances to the codebook, times the
    # scale, up to a constant per position.
    z = tf.cast(vqvae.encoder(images), tf.float32)[..., None, :]
    distances = tf.reduce_sum((z - vqvae.quantizer.embeddings) ** 2, axis=-1)
    offset = dvae.encode_logits(images) + 2.0 * distances
    np.testing.assert_allclose(offset, offset[..., :1] * np.ones_like(offset), atol=1e-3)


def test_the_dvae_trains_with_its_own_objective(trained_vqvae):
    dvae = zoo.DVAE.from_vqvae(trained_vqvae, kl_weight=0.01)
    assert float(dvae.temperature.numpy()) == 1 / 16  # starts trained: annealing's end
    images = tf.constant(random_images(8))
    with tf.GradientTape() as tape:
        terms = dvae.compute_terms(images, training=True)
        loss = tf.reduce_mean(terms["loss"])
    assert float(tf.reduce_mean(terms["kl_loss"])) > 0
    head, embeddings = dvae.encoder.head.kernel, dvae.quantizer.embeddings
    gradients = tape.gradient(loss, [head, embeddings])
    for variable, gradient in zip([head, embeddings], gradients, strict=True):
        assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0, variable.path


def test_what_cannot_be_converted_is_refused(trained_vqvae):
    with pytest.raises(ValueError, match=r"architecture .* is the VQ-VAE's; drop filters"):
        zoo.DVAE.from_vqvae(trained_vqvae, filters=4)
    with pytest.raises(ValueError, match=r"`logit_scale` must be"):
        zoo.DVAE.from_vqvae(trained_vqvae, logit_scale=0)
    with pytest.raises(TypeError, match=r"converts a zoo.VQVAE .* Received: DVAE.from_vqvae\(AE\)"):
        zoo.DVAE.from_vqvae(tiny_model("ae"))
