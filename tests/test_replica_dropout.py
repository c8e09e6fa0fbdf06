"""The prior's dropout draws a different mask on each replica, and Keras's mask on one device.

Keras's `Dropout` seeds from a `SeedGenerator` whose state all replicas share:
under `MirroredStrategy` every replica dropped the same positions of its shard
(checked on 2 logical CPUs). The replicas are stood in for by patching
`zoo.distribution.replica_id`, as in tests/test_distribution.py.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import distribution


def _dropout_layers(prior):
    block = prior.blocks[0]
    return [prior.embedding_dropout, block.residual_dropout, block.attention.attention_dropout]


def _mask(layer, replica, monkeypatch, state):
    monkeypatch.setattr(distribution, "replica_id", lambda: tf.constant(replica, tf.int32))
    layer.seed_generator.state.assign(state)
    return np.asarray(layer(tf.ones((4, 16)), training=True)) > 0


def test_replicas_drop_different_units_and_one_device_drops_keras_units(monkeypatch):
    prior = zoo.TransformerPrior(num_embeddings=16, grid_shape=(2, 2), num_classes=3,
                                 embed_dim=16, num_layers=1, num_heads=2, mlp_dim=16,
                                 dropout=0.5)
    for layer in _dropout_layers(prior):
        state = np.asarray(layer.seed_generator.state)
        first, second = (_mask(layer, r, monkeypatch, state) for r in (0, 1))
        assert not np.array_equal(first, second), layer.path
        keras_layer = keras.layers.Dropout(0.5)
        keras_layer.seed_generator.state.assign(state)
        expected = np.asarray(keras_layer(tf.ones((4, 16)), training=True)) > 0
        np.testing.assert_array_equal(first, expected)


def test_a_noise_shape_is_kept_as_in_keras():
    from zoo.transformer import ReplicaDropout

    layer, keras_layer = ReplicaDropout(0.5, noise_shape=(None, 1)), keras.layers.Dropout(
        0.5, noise_shape=(None, 1))
    keras_layer.seed_generator.state.assign(layer.seed_generator.state)
    dropped = np.asarray(layer(tf.ones((8, 16)), training=True))
    assert all(len(set(row)) == 1 for row in dropped)  # whole rows kept or dropped
    np.testing.assert_array_equal(dropped, keras_layer(tf.ones((8, 16)), training=True))


def test_a_rate_of_one_is_refused_when_the_layer_is_made():
    # keras.layers.Dropout accepts rate=1 (it drops everything); the stateless op
    # refuses it, so the layers built, saved and then failed at the first training step.
    from zoo.transformer import ReplicaDropout, TransformerBlock

    with pytest.raises(ValueError, match=r"\[0, 1\)\. Received: rate=1\.0"):
        ReplicaDropout(1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)\. Received: rate=1\.0"):
        TransformerBlock(num_heads=2, mlp_dim=8, dropout=1.0)
