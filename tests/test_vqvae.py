"""The VQ-VAE quantizer: nearest neighbour, straight-through, EMA and gradient updates, restarts."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import random_images, tiny_model
from zoo.quantizers import VectorQuantizer, code_statistics

K, D = 16, 4


def _quantizer(**kwargs) -> VectorQuantizer:
    quantizer = VectorQuantizer(num_embeddings=K, embedding_dim=D, **kwargs)
    quantizer.build((None, 3, 3, D))
    return quantizer


def _inputs(shape=(2, 3, 3, D), seed=0) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).normal(size=shape).astype("float32"))


def test_nearest_neighbour_codes_and_straight_through_gradient():
    quantizer = _quantizer()
    inputs = _inputs()
    weights = _inputs(seed=1)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        out = quantizer(inputs, training=False)
        loss = tf.reduce_sum(out["quantized"] * weights)
    codebook = quantizer.embeddings.numpy()
    flat = inputs.numpy().reshape(-1, D)
    expected = np.argmin(((flat[:, None] - codebook[None]) ** 2).sum(-1), axis=1)
    assert out["encoding_indices"].dtype == tf.int32
    np.testing.assert_array_equal(out["encoding_indices"].numpy().reshape(-1), expected)
    np.testing.assert_allclose(
        out["quantized"].numpy().reshape(-1, D), codebook[expected], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        quantizer.lookup(out["encoding_indices"]).numpy().reshape(-1, D), codebook[expected]
    )
    # Straight-through: d quantized / d inputs is the identity.
    np.testing.assert_allclose(tape.gradient(loss, inputs).numpy(), weights.numpy(), rtol=1e-6)


def test_ema_with_zero_decay_moves_each_used_code_to_the_mean_of_its_inputs():
    quantizer = _quantizer(use_ema=True, decay=0.0, dead_code_threshold=0.0)
    assert quantizer.embeddings.path not in [v.path for v in quantizer.trainable_variables]
    before = quantizer.embeddings.numpy()
    inputs = _inputs((4, 3, 3, D))
    indices = quantizer(inputs, training=True)["encoding_indices"].numpy().reshape(-1)
    after = quantizer.embeddings.numpy()
    flat = inputs.numpy().reshape(-1, D)
    for code in np.unique(indices):
        # Up to the Laplace smoothing (epsilon=1e-5) of the counts.
        np.testing.assert_allclose(after[code], flat[indices == code].mean(0), atol=1e-3)
    unused = np.setdiff1d(np.arange(K), indices)
    assert len(unused) > 0
    np.testing.assert_allclose(after[unused], 0.0, atol=1e-3)  # no assignments, decay 0
    assert not np.allclose(before, after)


def test_ema_moves_codes_towards_their_inputs():
    quantizer = _quantizer(use_ema=True, decay=0.9, dead_code_threshold=0.0)
    inputs = _inputs((4, 3, 3, D))
    flat = inputs.numpy().reshape(-1, D)
    before = quantizer.embeddings.numpy()
    indices = quantizer(inputs, training=True)["encoding_indices"].numpy().reshape(-1)
    after = quantizer.embeddings.numpy()
    for code in np.unique(indices):
        target = flat[indices == code].mean(0)
        assert np.linalg.norm(after[code] - target) < np.linalg.norm(before[code] - target)


@pytest.mark.parametrize("use_ema", [True, False], ids=["ema", "gradient"])
def test_a_train_step_updates_the_codebook(use_ema):
    """With EMA the codebook moves by moving averages (every used code; the
    smoothing of the counts also rescales unused ones slightly); without EMA,
    by the optimizer (codebook loss gradient), and only the codes used."""
    model = tiny_model("vqvae", use_ema=use_ema, dead_code_threshold=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    images = tf.constant(random_images(4))
    before = model.quantizer.embeddings.numpy()
    used = np.unique(model.encode(images).numpy())
    model.train_step(images)
    after = model.quantizer.embeddings.numpy()
    changed = np.flatnonzero(np.any(before != after, axis=1))
    if use_ema:
        assert set(used) <= set(changed)
    else:
        assert set(changed) == set(used)
    trainable = [v.path for v in model.trainable_variables]
    assert (model.quantizer.embeddings.path in trainable) is (not use_ema)


def test_dead_codes_restart_from_encoder_outputs():
    quantizer = _quantizer(use_ema=True, dead_code_threshold=1e9)  # every code is dead
    inputs = _inputs((2, 3, 3, D))
    quantizer(inputs, training=True)
    codebook = quantizer.embeddings.numpy()
    flat = inputs.numpy().reshape(-1, D)
    distances = ((codebook[:, None] - flat[None]) ** 2).sum(-1)
    assert distances.min(axis=1).max() < 1e-10  # every code is now an input vector


def test_default_restarts_revive_unused_codes():
    quantizer = _quantizer()  # defaults: EMA, dead_code_threshold=1.0
    inputs = _inputs((1, 3, 3, D)) * 0.01 + 5.0  # all inputs far from the codebook
    first = quantizer(inputs, training=True)
    assert len(np.unique(first["encoding_indices"].numpy())) == 1
    # After the restarts, the codebook sits among the inputs and more codes are used.
    second = quantizer(inputs, training=True)
    assert len(np.unique(second["encoding_indices"].numpy())) > 1


@pytest.mark.parametrize("use_ema", [True, False], ids=["ema", "gradient"])
def test_a_first_step_restarts_only_unused_codes(use_ema):
    # Codes start counted as used once per batch: the first step keeps every
    # code it assigned and restarts only the others (the gradient-trained
    # codebook used to restart them all, its counts starting at zero).
    quantizer = _quantizer(use_ema=use_ema, decay=0.99)  # restarts below 1.0 use per batch
    before = quantizer.embeddings.numpy()
    inputs = _inputs((4, 3, 3, D))
    codes = quantizer(inputs, training=True)["encoding_indices"].numpy().reshape(-1)
    after = quantizer.embeddings.numpy()
    used = np.unique(codes)
    unused = np.setdiff1d(np.arange(K), used)
    assert 0 < len(used) < K
    assert (np.abs(after[unused] - before[unused]).max(axis=1) > 0).all()  # restarted
    expected = before.copy()  # gradient mode: the layer itself leaves used codes alone
    if use_ema:  # one EMA step from a count of 1 (Laplace smoothing aside)
        flat = inputs.numpy().reshape(-1, D)
        for code in used:
            hits = flat[codes == code]
            expected[code] = (0.99 * before[code] + 0.01 * hits.sum(0)) / (0.99 + 0.01 * len(hits))
    np.testing.assert_allclose(after[used], expected[used], rtol=1e-4, atol=1e-6)


def test_code_statistics():
    uniform = tf.reshape(tf.range(K), (1, 4, 4))
    stats = code_statistics(uniform, K)
    assert float(stats["perplexity"]) == pytest.approx(K, rel=1e-5)
    assert float(stats["codebook_usage"]) == pytest.approx(1.0)
    single = tf.zeros((2, 4, 4), tf.int32)
    stats = code_statistics(single, K)
    assert float(stats["perplexity"]) == pytest.approx(1.0)
    assert float(stats["codebook_usage"]) == pytest.approx(1.0 / K)


def test_commitment_cost_weights_the_commitment_loss():
    images = tf.constant(random_images(3))
    model = tiny_model("vqvae", commitment_cost=0.25)
    terms = model.compute_terms(images, training=False)
    expected = terms["reconstruction_loss"] + 0.25 * terms["commitment_loss"]
    np.testing.assert_allclose(terms["loss"].numpy(), expected.numpy(), rtol=1e-6)
    assert float(tf.reduce_min(terms["commitment_loss"])) > 0.0


def test_commitment_loss_moves_the_encoder_and_codebook_loss_the_codebook():
    # Gradient-trained codebook: the commitment loss pulls only the encoder
    # output (z_q held fixed), the codebook loss only the code vectors (z_e
    # held fixed). A missing stop_gradient would let the commitment loss move
    # the codebook too (the EMA codebook, not trainable, would not show it).
    quantizer = _quantizer(use_ema=False, dead_code_threshold=0.0)
    inputs = _inputs()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        out = quantizer(inputs, training=False)
        commitment = tf.reduce_sum(out["commitment_loss"])
        codebook_loss = tf.reduce_sum(out["codebook_loss"])

    def gradients(loss):  # (d loss / d inputs, d loss / d codebook), zeros when unconnected
        return [np.zeros(x.shape) if g is None else tf.convert_to_tensor(g).numpy()
                for x, g in zip((inputs, quantizer.embeddings),
                                tape.gradient(loss, [inputs, quantizer.embeddings]), strict=True)]

    by_commitment, by_codebook = gradients(commitment), gradients(codebook_loss)
    assert np.abs(by_commitment[0]).max() > 0.0 and not by_commitment[1].any()
    assert not by_codebook[0].any() and np.abs(by_codebook[1]).max() > 0.0


@pytest.mark.parametrize("use_ema", [True, False], ids=["ema", "gradient"])
def test_restarted_codes_start_afresh_in_the_moving_averages(use_ema):
    # A restarted code counts as used once per batch (so it is not restarted
    # again at once) and, with EMA, its moving sum is its new vector (so the
    # next EMA step does not pull it back to its old place).
    quantizer = _quantizer(use_ema=use_ema, decay=0.99)  # restarts below 1.0 use per batch
    inputs = _inputs((4, 3, 3, D))
    codes = quantizer(inputs, training=True)["encoding_indices"].numpy().reshape(-1)
    restarted = np.setdiff1d(np.arange(K), codes)
    assert len(restarted) > 0
    np.testing.assert_array_equal(quantizer.ema_cluster_size.numpy()[restarted], 1.0)
    if not use_ema:
        return
    embeddings = quantizer.embeddings.numpy()
    np.testing.assert_array_equal(
        quantizer.ema_embedding_sum.numpy()[restarted], embeddings[restarted])
    # A second step whose inputs all sit on one restarted code keeps that code in place.
    code = restarted[0]
    target = tf.constant(np.broadcast_to(embeddings[code], (4, 3, 3, D)).copy())
    assigned = quantizer(target, training=True)["encoding_indices"].numpy().reshape(-1)
    assert len(np.unique(assigned)) == 1
    kept = assigned[0]  # `code`, or a restarted twin with the same vector
    np.testing.assert_allclose(
        quantizer.embeddings.numpy()[kept], embeddings[code], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 9, D), (2, 3, 3, 3, D)])
@pytest.mark.parametrize("kind", ["vq", "gumbel"])
def test_quantizers_refuse_inputs_that_are_not_grids(kind, shape):
    # A rank-5 input gave per-example losses of shape (B, h) instead of (B,), silently;
    # a rank-3 one failed inside a reduction with a message naming no shape.
    from zoo.quantizers import GumbelQuantizer

    if kind == "vq":
        quantizer, last = _quantizer(), D
    else:
        quantizer, last = GumbelQuantizer(num_embeddings=K, embedding_dim=D), K
        shape = (*shape[:-1], shape[-1] - D + K)
    inputs = tf.zeros(shape)
    expected = rf"\(batch, h, w, {last}\)\. Received shape {re.escape(str(shape))}"
    with pytest.raises(ValueError, match=expected):
        quantizer(inputs)
    with pytest.raises(ValueError, match=expected):
        quantizer.compute_output_spec(keras.KerasTensor(shape))


def test_a_grid_of_unknown_rank_is_quantized_in_a_graph():
    quantizer = _quantizer()
    traced = tf.function(lambda x: quantizer(x)["encoding_indices"],
                         input_signature=[tf.TensorSpec(None, tf.float32)])
    assert tuple(traced(_inputs()).shape) == (2, 3, 3)


def test_a_functional_model_gets_each_loss_term_of_the_quantizer():
    # compute_output_spec gave both per-example terms one KerasTensor, so in a
    # functional model `codebook_loss` was the commitment loss (nonzero with EMA,
    # where the codebook loss is 0; without EMA, gradients to the wrong side).
    inputs = keras.Input((3, 3, D))
    quantizer = VectorQuantizer(num_embeddings=K, embedding_dim=D)
    outputs = quantizer(inputs)
    model = keras.Model(inputs, [outputs["codebook_loss"], outputs["commitment_loss"]])
    x = _inputs()
    direct = quantizer(x)
    codebook_loss, commitment_loss = model(x)
    np.testing.assert_array_equal(codebook_loss, np.zeros(2, "float32"))
    np.testing.assert_allclose(commitment_loss, direct["commitment_loss"], rtol=1e-6)


@pytest.mark.parametrize("family", ["vqvae", "dvae"])
def test_evaluate_code_statistics_are_those_of_all_codes(family):
    # 37 images in batches of 16 (a last batch of 5): `evaluate`'s perplexity and
    # usage are the statistics of the whole set's code histogram, as
    # `trainers.evaluate` reports them, not a mean of per-batch values.
    model = tiny_model(family)
    model.compile(optimizer="adam")
    images = random_images(37, seed=3)
    logs = model.evaluate(images, batch_size=16, verbose=0, return_dict=True)
    codes = np.asarray(model.encode(images)).ravel()
    frequencies = np.bincount(codes, minlength=model.num_embeddings) / codes.size
    used = frequencies[frequencies > 0]
    expected = np.exp(-np.sum(used * np.log(used)))
    np.testing.assert_allclose(logs["perplexity"], expected, rtol=1e-5)
    np.testing.assert_allclose(logs["codebook_usage"], used.size / model.num_embeddings, rtol=1e-6)
