"""Deterministic autoencoder (AE)."""

import keras
import tensorflow as tf

from zoo import tensor_checks, validation
from zoo.image_metrics import per_example_mse
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
        **kwargs: Arguments of the shared architecture, documented in
            `zoo.models.base.Autoencoder`: `image_shape` (`(28, 28, 1)`),
            `filters` (`32`), `num_downsamples` (`2`), `num_res_blocks` (`2`),
            `max_filters` (`256`), and the layout arguments `strided_stem`
            (`True`), `resample_kernel_size` (`4`), `residual_hidden_ratio`
            (`1.0`) and `separable_residual` (`False`); and standard
            `keras.Model` arguments (`name`).

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

    def encode(self, images: tensor_checks.TensorLike) -> tf.Tensor:
        """Maps images to their latent grids.

        Args:
            images: float array or tensor (B, H, W, C) in [0, 1]; H and W
                multiples of `2 ** num_downsamples`.

        Returns:
            float32 latents (B, H / 2**num_downsamples, W / 2**num_downsamples,
            latent_channels), the input of `decode`.

        Raises:
            TypeError: integer (e.g. uint8) images.
            ValueError: a wrong shape or channel count, values outside [0, 1],
                NaN/Inf, or an empty batch.
        """
        return self._in_passes(
            lambda batch: tf.cast(self.encoder(batch), tf.float32),
            self.check_images(images),
            "images",
        )

    def compute_terms(self, images, training):
        latents = self.encoder(images, training=self._encoder_training(training))
        reconstructions = self._to_images(self.decoder(latents, training=training))
        loss = per_example_mse(images, reconstructions)
        return {"reconstructions": reconstructions, "loss": loss, "reconstruction_loss": loss}

    def get_config(self):
        return {**super().get_config(), "latent_channels": self.latent_channels}
