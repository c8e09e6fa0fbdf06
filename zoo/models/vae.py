"""Variational autoencoder (VAE) with a Gaussian latent."""

import math

import keras
import tensorflow as tf

from zoo import distribution, serving, tensor_checks, validation
from zoo.models.base import BASE_METRICS, ContinuousAutoencoder

_LOG_2PI = math.log(2.0 * math.pi)
RNG = "philox"
"""The algorithm of the VAE's stateless normal draws, named: TensorFlow's default
(`auto_select`) is Philox in its kernels but ThreeFry under XLA, so the same seed
gave other samples and another `bits_per_dim` estimate with `jit_compile=True`."""


def gaussian_kl(mean: tf.Tensor, log_variance: tf.Tensor) -> tf.Tensor:
    """Analytic KL(N(mean, exp(log_variance)) || N(0, I)), summed per example."""
    kl = 0.5 * (tf.square(mean) + tf.exp(log_variance) - 1.0 - log_variance)
    return tf.reduce_sum(kl, axis=list(range(1, kl.shape.rank)))


@keras.saving.register_keras_serializable(package="zoo")
class VAE(ContinuousAutoencoder):
    """Variational autoencoder with a diagonal Gaussian posterior.

    The encoder outputs a mean and a log-variance per latent element;
    training draws `z = mean + exp(log_variance / 2) * eps` (the
    reparameterisation trick, with stateless seeds). The decoder is a
    Gaussian likelihood whose mean is `sigmoid(decoder(z))` and whose scale is
    one learned scalar (the calibrated decoder of the sigma-VAE), so the
    balance between reconstruction and KL is learned rather than tuned.

    Per example, with D the number of pixel values:
    `reconstruction_loss = NLL / D`, `kl_loss = KL(q(z|x) || N(0, I)) / D`,
    `loss = reconstruction_loss + kl_weight * kl_warmup * kl_loss`.
    `bits_per_dim` is the negative ELBO (KL weight 1) in bits per dimension
    of 8-bit data: `(NLL + KL) / (D ln 2) + 8`, the `+ 8` (log2 256) converting the
    density on [0, 1] to a probability per level of 256 bins of width 1/256. The
    density is taken at the pixel values themselves (k / 255, no dequantization
    noise), so this approximates the discrete likelihood; it is not the bound a
    uniformly dequantized estimate would be.

    Args:
        latent_channels: int. Channels of the latent grid. Defaults to `4`.
        kl_weight: float. Beta, the weight of the KL term. Defaults to `1.0`.
        seed: int. Seed of the posterior noise. Defaults to `0`.
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
    >>> model = zoo.VAE()
    >>> model.compile(optimizer="adam")
    >>> history = model.fit(images, epochs=1, batch_size=32, verbose=0)
    >>> mean, log_variance = model.encode_distribution(images[:2])
    >>> print(mean.shape, log_variance.shape)
    (2, 7, 7, 4) (2, 7, 7, 4)
    >>> print(model.sample(4, seed=1).shape)
    (4, 28, 28, 1)

    References:
        - [Kingma and Welling, 2014](https://arxiv.org/abs/1312.6114)
        - [Rybkin et al., 2021](https://arxiv.org/abs/2006.13202)
    """

    metric_names = (*BASE_METRICS, "kl_loss", "bits_per_dim")

    def __init__(
        self, latent_channels: int = 4, kl_weight: float = 1.0, seed: int = 0, **kwargs
    ):
        super().__init__(**kwargs)
        self.latent_channels = validation.positive_int("latent_channels", latent_channels)
        self.kl_weight = validation.non_negative_float("kl_weight", kl_weight)
        self.seed = validation.check_seed(seed)
        self.encoder = self._make_encoder(2 * self.latent_channels)
        self.decoder = self._make_decoder(self.image_shape[-1])
        self.seed_generator = keras.random.SeedGenerator(self.seed, name="posterior_seed")
        # The decoder scale starts at 0.1 (about sqrt(MSE) of a half-trained model):
        # Adam moves a scalar by about the learning rate per step, and from 1.0 it
        # needed thousands of steps to get there (bits/dim 8.8 after an epoch).
        self.log_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(math.log(0.1)),
            autocast=False,
            name="log_scale",
        )
        self.kl_warmup = self.add_weight(
            shape=(), initializer="ones", trainable=False, autocast=False, name="kl_warmup"
        )
        self.build()

    def encode_distribution(self, images: tensor_checks.TensorLike) -> tuple[tf.Tensor, tf.Tensor]:
        """Maps images to their diagonal Gaussian posteriors.

        Args:
            images: float array or tensor (B, H, W, C) in [0, 1], as for `encode`.

        Returns:
            A tuple `(mean, log_variance)` of float32 tensors
            (B, h, w, latent_channels); `log_variance` is clipped to [-30, 20].

        Raises:
            TypeError, ValueError: as `encode`.
        """
        return self._in_passes(self._posterior, self.check_images(images), "images")

    def _posterior(self, images, training=None):
        stats = tf.cast(self.encoder(images, training=training), tf.float32)
        mean, log_variance = tf.split(stats, 2, axis=-1)
        return mean, tf.clip_by_value(log_variance, -30.0, 20.0)

    def call(self, images, training=False):
        if training:
            return super().call(images, training=True)
        # Inference needs only the decoded posterior mean, not the ELBO terms
        # (whose posterior sample costs a second decoder pass).
        return self._in_passes(
            lambda batch: self._to_images(self.decoder(self._posterior(batch)[0])),
            self.check_images(images),
            "images",
        )

    def encode(self, images: tensor_checks.TensorLike) -> tf.Tensor:
        """Maps images to the means of their posteriors (see `encode_distribution`).

        Args:
            images: float array or tensor (B, H, W, C) in [0, 1]; H and W
                multiples of `2 ** num_downsamples`.

        Returns:
            float32 posterior means (B, h, w, latent_channels), the input of
            `decode`.

        Raises:
            TypeError: integer (e.g. uint8) images.
            ValueError: a wrong shape or channel count, values outside [0, 1],
                NaN/Inf, or an empty batch.
        """
        return self.encode_distribution(images)[0]

    def sample(self, num_samples: int, seed: int = 0) -> tf.Tensor:
        """Draws `num_samples` images from the prior at the nominal `image_shape`.

        The prior is N(0, I) at every position of the latent grid on its own,
        while real images' latents are correlated across positions, so these
        samples show what the latents mean locally rather than whole images.

        Args:
            num_samples: int. Number of images.
            seed: int. Seed of the prior draw; the same seed gives the same
                images. Defaults to `0`.

        Returns:
            float32 images (num_samples, H, W, C) in [0, 1].
        """
        return self._draw_images(num_samples, validation.check_seed(seed))

    def _draw_images(self, num_samples, seed) -> tf.Tensor:
        """Decodes N(0, I) latents; `sample` and the exported `sample` signature share it."""
        num_samples = self._checked_num_samples(num_samples)
        h, w = self.latent_grid
        z = tf.random.stateless_normal(
            tf.stack([num_samples, h, w, self.latent_channels]), seed=tf.stack([seed, 0]), alg=RNG
        )
        return self.decode(z)

    def latent_signatures(self) -> dict[str, serving.Signature]:
        def encode_outputs(images):
            mean, log_variance = self.encode_distribution(images)
            return {"mean": mean, "log_variance": log_variance}

        return {
            **serving.latent_signatures(self, encode_outputs),
            **serving.sample_signature(self._draw_images),
        }

    def _gaussian_nll(self, images, reconstructions):
        log_scale = tf.maximum(tf.convert_to_tensor(self.log_scale), -7.0)
        squared = tf.math.squared_difference(images, reconstructions)
        return tf.reduce_sum(
            0.5 * squared * tf.exp(-2.0 * log_scale) + log_scale + 0.5 * _LOG_2PI,
            axis=[1, 2, 3],
        )

    def compute_terms(self, images, training):
        images = tf.cast(images, tf.float32)
        mean, log_variance = self._posterior(images, self._encoder_training(training))
        std = tf.exp(0.5 * log_variance)
        # Training draws fresh noise; evaluation uses the posterior mean for the
        # reconstruction and one sample from a fixed seed for the ELBO, so
        # `bits_per_dim` is a deterministic single-sample estimate.
        seed = distribution.replica_seed(self.seed_generator) if training else [self.seed, 1]
        z_sample = mean + std * tf.random.stateless_normal(tf.shape(mean), seed=seed, alg=RNG)
        sample_means = self._to_images(self.decoder(z_sample, training=training))
        if training:
            reconstructions = sample_means
        else:
            reconstructions = self._to_images(self.decoder(mean, training=training))
        nll = self._gaussian_nll(images, sample_means)
        kl = gaussian_kl(mean, log_variance)
        dims = tf.cast(tf.reduce_prod(tf.shape(images)[1:]), tf.float32)
        kl_loss = kl / dims
        reconstruction_loss = nll / dims
        weight = self.kl_weight * tf.convert_to_tensor(self.kl_warmup)
        return {
            "reconstructions": reconstructions,
            "reconstruction_loss": reconstruction_loss,
            "kl_loss": kl_loss,
            "loss": reconstruction_loss + weight * kl_loss,
            "bits_per_dim": (nll + kl) / (dims * math.log(2.0)) + 8.0,
        }

    def get_config(self):
        return {
            **super().get_config(),
            "latent_channels": self.latent_channels,
            "kl_weight": self.kl_weight,
            "seed": self.seed,
        }
