"""`zoo.convolutions`: the faster layers compute what the Keras layers they replace do."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.convolutions import PointwiseConv2D, SubpixelConv2DTranspose


def _pair(plain, fast, shape):
    plain.build(shape)
    fast.build(shape)
    fast.set_weights(plain.get_weights())
    return plain, fast


@pytest.mark.parametrize("kernel_size", [2, 3, 4, 5, (4, 3)])
@pytest.mark.parametrize("size", [(7, 7), (5, 8), (1, 1)])
def test_subpixel_transpose_equals_conv2d_transpose(kernel_size, size):
    x = np.random.default_rng(0).standard_normal((3, *size, 6)).astype("float32")
    kwargs = {"strides": 2, "padding": "same", "activation": "relu"}
    plain, fast = _pair(
        keras.layers.Conv2DTranspose(5, kernel_size, **kwargs),
        SubpixelConv2DTranspose(5, kernel_size, **kwargs),
        x.shape,
    )
    expected = plain(x).numpy()
    assert expected.shape == (3, 2 * size[0], 2 * size[1], 5)
    np.testing.assert_allclose(fast(x).numpy(), expected, atol=2e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"activation": "softmax"},  # not element-wise: applied after the interleave
        {"use_bias": False},
        {"strides": 1},  # not stride 2: the plain transposed convolution
        {"padding": "valid"},
    ],
)
def test_subpixel_transpose_other_configurations(kwargs):
    x = np.random.default_rng(1).standard_normal((2, 5, 6, 4)).astype("float32")
    kwargs = {"strides": 2, "padding": "same", **kwargs}
    plain, fast = _pair(
        keras.layers.Conv2DTranspose(3, 4, **kwargs), SubpixelConv2DTranspose(3, 4, **kwargs),
        x.shape,
    )
    np.testing.assert_allclose(fast(x).numpy(), plain(x).numpy(), atol=2e-6)


def test_gradients_equal_the_plain_layers():
    x = tf.constant(np.random.default_rng(2).standard_normal((2, 7, 7, 8)).astype("float32"))
    for plain, fast in (
        (keras.layers.Conv2D(4, 1), PointwiseConv2D(4)),
        (keras.layers.Conv2DTranspose(2, 4, strides=2, padding="same"),
         SubpixelConv2DTranspose(2, 4, strides=2, padding="same")),
    ):
        plain, fast = _pair(plain, fast, x.shape)
        grads = []
        for layer in (plain, fast):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x) ** 2)
            grads.append(tape.gradient(loss, [x, *layer.trainable_weights]))
        for a, b in zip(*grads, strict=True):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-5)


def test_pointwise_equals_1x1_conv2d_and_round_trips():
    x = np.random.default_rng(3).standard_normal((3, 7, 7, 16)).astype("float32")
    plain, fast = _pair(keras.layers.Conv2D(8, 1, activation="relu"),
                        PointwiseConv2D(8, activation="relu"), x.shape)
    # Equal up to float rounding: oneDNN's convolution sums in another order than a matmul.
    np.testing.assert_allclose(fast(x).numpy(), plain(x).numpy(), rtol=1e-6, atol=1e-6)
    config = fast.get_config()
    assert PointwiseConv2D.from_config(config).get_config() == config
    restored = SubpixelConv2DTranspose(1, 4, strides=2, padding="same")
    assert SubpixelConv2DTranspose.from_config(restored.get_config()).get_config() == (
        restored.get_config()
    )


def test_bfloat16_policy_stays_close_to_float32():
    x = np.random.default_rng(4).random((2, 14, 14, 16)).astype("float32")
    plain = SubpixelConv2DTranspose(1, 4, strides=2, padding="same")
    plain.build(x.shape)
    fast = SubpixelConv2DTranspose(1, 4, strides=2, padding="same", dtype="mixed_bfloat16")
    fast.build(x.shape)
    fast.set_weights(plain.get_weights())
    out = fast(x)
    assert out.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(out, tf.float32).numpy(), plain(x).numpy(), atol=0.05)


def test_channels_first_pointwise_is_refused():
    with pytest.raises(ValueError, match="channels_last"):
        PointwiseConv2D(4, data_format="channels_first")


@pytest.mark.parametrize("family", sorted(zoo.FAMILIES))
def test_fit_and_evaluate_pass_the_training_flag_to_the_zoo_layers(family, monkeypatch):
    # `train_step` calls `compute_terms` directly, outside any `Layer.__call__`,
    # so the flag reaches the encoder's and decoder's layers only if it is passed.
    seen = set()
    for layer_class in (PointwiseConv2D, SubpixelConv2DTranspose):

        def spy(self, inputs, training=None, _call=layer_class.call):
            seen.add(training)
            return _call(self, inputs, training=training)

        monkeypatch.setattr(layer_class, "call", spy)
    model = zoo.FAMILIES[family](image_shape=(8, 8, 1), filters=4, num_res_blocks=1)
    model.compile(optimizer="adam")
    images = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    model.fit(images, batch_size=4, epochs=1, verbose=0)
    assert seen == {True}
    seen.clear()
    model.evaluate(images, batch_size=4, verbose=0)
    assert seen == {False}


def test_grouped_pointwise_runs_the_plain_convolution():
    # `groups` is a Conv2D argument the docstring passes through; the matmul path
    # reshaped the (1, 1, in / groups, filters) kernel to (in, filters) and failed.
    x = np.random.default_rng(5).standard_normal((2, 3, 5, 6)).astype("float32")
    plain, fast = _pair(keras.layers.Conv2D(4, 1, groups=2), PointwiseConv2D(4, groups=2), x.shape)
    np.testing.assert_allclose(fast(x).numpy(), plain(x).numpy(), rtol=1e-6, atol=1e-6)
