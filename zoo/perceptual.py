"""Feature matching: a perceptual term for an autoencoder's training loss.

Pixel losses spend the model's capacity on what is bright or dark and blur what
tells one object from another (a shirt's buttons, a sandal's straps). A
feature-matching term compares the images and their reconstructions in the
feature maps of a frozen network instead, as LPIPS does with a pretrained
classifier (without LPIPS' learned channel weights). Give it to
`compile(feature_matching=...)` of any zoo autoencoder; see docs/MEASUREMENTS.md
("Feature matching") for what it bought the zoo's recipes.
"""

from collections.abc import Sequence

import keras
import tensorflow as tf

from zoo import distribution, validation


class FeatureMatching:
    """Per-example feature distance between images and their reconstructions.

    For each named layer `l` of `network`, with `n` scaling every position's
    feature vector to unit length:
    `distance = weight * sum_l mean_positions ||n(f_l(x)) - n(f_l(x_hat))||^2`.
    The network is not trained: its weights are not the autoencoder's (it is
    neither saved nor exported with it), and it runs in inference mode;
    gradients flow through it to the reconstructions. Its `trainable` flag is
    left as the caller set it, so the same network can still be trained
    elsewhere.

    Args:
        network: a `keras.Model` that takes images like the autoencoder's
            (float32 in [0, 1], the same `image_shape`); typically a small
            classifier trained on the same kind of images.
        layers: names of the layers of `network` whose outputs are compared
            (feature maps of shape (B, h, w, C), or vectors (B, C)).
        weight: float. Scale of the term against the family's per-example
            loss (for the AE, VQ-VAE and dVAE: the mean squared error per
            pixel plus the family's own terms; the VAE's Gaussian likelihood
            has pixel gradients about 1 / (2 sigma^2) times larger, so it
            needs a weight that much larger: 25 in
            `vae_perceptual_fashion_mnist`). Defaults to `0.1`.

    Example:
    >>> import keras, numpy as np, zoo
    >>> from zoo.perceptual import FeatureMatching
    >>> inputs = keras.Input((28, 28, 1))
    >>> features = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    >>> network = keras.Model(inputs, keras.layers.Flatten()(features))
    >>> model = zoo.AE()
    >>> model.compile(optimizer="adam",
    ...               feature_matching=FeatureMatching(network, ["conv"], weight=0.1))
    >>> images = np.random.rand(32, 28, 28, 1).astype("float32")
    >>> history = model.fit(images, epochs=1, batch_size=16, verbose=0)
    """

    def __init__(self, network: keras.Model, layers: Sequence[str], weight: float = 0.1):
        if not isinstance(network, keras.Model):
            raise TypeError(f"`network` must be a keras.Model. Received: {type(network).__name__}")
        if isinstance(layers, str) or not layers:
            raise ValueError(f"`layers` must be a non-empty list of layer names. Received: "
                             f"{layers!r}")
        names = [layer.name for layer in network.layers]
        missing = [name for name in layers if name not in names]
        if missing:
            raise ValueError(f"`network` has no layer named {missing}. Its layers: {names}")
        self.weight = validation.positive_float("weight", weight)
        self.layers = list(layers)
        self.image_shape = tuple(network.input_shape[1:])
        self.features = keras.Model(
            network.inputs, [network.get_layer(name).output for name in self.layers],
            name=f"{network.name}_features",
        )

    def check_image_shape(self, image_shape) -> None:
        """Raises a `ValueError` unless the network takes images of `image_shape`."""
        expected = tuple(image_shape)
        if len(self.image_shape) != len(expected) or any(
            known is not None and known != size
            for known, size in zip(self.image_shape, expected, strict=True)
        ):
            raise ValueError(
                f"The feature-matching network takes images of shape {self.image_shape}; "
                f"the model's images are {expected}."
            )

    def __call__(self, images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
        """Returns the weighted distance per example, float32 of shape (B,)."""
        total = 0.0
        outputs = zip(self._maps(images), self._maps(reconstructions), strict=True)
        for original, reconstructed in outputs:
            original = tf.math.l2_normalize(tf.cast(original, tf.float32), axis=-1, epsilon=1e-6)
            reconstructed = tf.math.l2_normalize(
                tf.cast(reconstructed, tf.float32), axis=-1, epsilon=1e-6
            )
            squared = tf.reduce_sum(tf.square(original - reconstructed), axis=-1)
            total += tf.reduce_mean(tf.reshape(squared, [tf.shape(squared)[0], -1]), axis=1)
        return self.weight * total

    def _maps(self, images) -> list:
        # Inference mode always: a frozen network's dropout or batch statistics
        # must not make the loss random or depend on the batch.
        outputs = distribution.on_shard(  # the user's network may not run an empty shard
            lambda batch: self.features(batch, training=False), images
        )
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
