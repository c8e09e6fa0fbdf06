"""Deterministic autoencoder (AE)."""

import keras
import tensorflow as tf

from zoo import validation
from zoo.models.base import ContinuousAutoencoder


@keras.saving.register_keras_serializable(package="zoo")
class AE(ContinuousAutoencoder):
    """Deterministic convolutional autoencoder.

    The encoder maps images to a continuous latent grid of shape
    (B, H / 2**num_downsamples, W / 2**num_downsamples, latent_channels); the
    decoder maps it back through a sigmoid into [0, 1]. The only loss is the
    reconstruction loss (mean squared error per pixel).

    Args:
        latent_channels: int. Channels of the latent grid. Defaults to `4`
            (7x7x4 = 196 floats for 28x28 images).
        **kwargs: Arguments of the shared architecture (`image_shape`,
            `filters`, `num_downsamples`, `num_res_blocks`, `max_filters`) and
            standard `keras.Model` arguments.

    Example:
    >>> import numpy as np
    >>> import zoo
    >>> images = np.random.rand(64, 28, 28, 1).astype("float32")  # in [0, 1]
    >>> model = zoo.AE()
    >>> model.compile(optimizer="adam")
    >>> history = model.fit(images, epochs=1, batch_size=32, verbose=0)
    >>> print(model.encode(images[:2]).shape)
    (2, 7, 7, 4)
    """

    def __init__(self, latent_channels: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.latent_channels = validation.positive_int("latent_channels", latent_channels)
        self.encoder = self._make_encoder(self.latent_channels)
        self.decoder = self._make_decoder(self.image_shape[-1])
        self.build()

    def encode(self, images) -> tf.Tensor:
        """Returns the float32 latent grid (B, h, w, latent_channels)."""
        return self._in_passes(
            lambda batch: tf.cast(self.encoder(batch), tf.float32),
            self.check_images(images),
            "images",
        )

    def compute_terms(self, images, training):
        latents = self.encoder(images, training=self._encoder_training(training))
        reconstructions = self._to_images(self.decoder(latents, training=training))
        loss = tf.reduce_mean(
            tf.math.squared_difference(tf.cast(images, tf.float32), reconstructions),
            axis=[1, 2, 3],
        )
        return {"reconstructions": reconstructions, "loss": loss, "reconstruction_loss": loss}

    def get_config(self):
        return {**super().get_config(), "latent_channels": self.latent_channels}
