"""Vector-quantised variational autoencoder (VQ-VAE)."""

import keras
import tensorflow as tf

from zoo import tensor_checks, validation
from zoo.image_metrics import per_example_mse
from zoo.models.base import BASE_METRICS, DiscreteAutoencoder
from zoo.quantizers import VectorQuantizer


@keras.saving.register_keras_serializable(package="zoo")
class VQVAE(DiscreteAutoencoder):
    """VQ-VAE: a convolutional autoencoder with a nearest-neighbour codebook.

    The encoder output (B, h, w, embedding_dim) is quantised by a
    `VectorQuantizer`; the code of an image is an int32 grid (B, h, w) of
    indices into the codebook. Per example:
    `loss = reconstruction_loss + codebook_loss + commitment_cost * commitment_loss`
    where the reconstruction loss is the mean squared error per pixel. With
    `use_ema=True` (the default) the codebook follows moving averages of the
    encoder outputs assigned to it and has no codebook loss; dead codes are
    restarted from encoder outputs unless `dead_code_threshold=0`.

    Args:
        num_embeddings: int. Codebook size K. Defaults to `512`.
        embedding_dim: int. Code vector size. Defaults to `64`.
        commitment_cost: float. Beta, the weight of the commitment loss.
            Defaults to `0.25`.
        use_ema: bool. EMA codebook updates. Defaults to `True`.
        decay: float. EMA decay. Defaults to `0.99`.
        dead_code_threshold: float. EMA count under which a code is restarted;
            `0` disables restarts. Defaults to `1.0`.
        seed: int. Seed of the code restarts. Defaults to `0`.
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
    >>> model = zoo.VQVAE()
    >>> model.compile(optimizer="adam")
    >>> history = model.fit(images, epochs=1, batch_size=32, verbose=0)
    >>> codes = model.encode(images[:2])
    >>> print(codes.dtype.name, codes.shape)
    int32 (2, 7, 7)
    >>> print(model.decode(codes).shape)
    (2, 28, 28, 1)

    References:
        - [van den Oord et al., 2017](https://arxiv.org/abs/1711.00937)
    """

    metric_names = (*BASE_METRICS, "commitment_loss", "perplexity", "codebook_usage")
    encoding_parts = ("encoder", "quantizer")  # the nearest codebook entry is the code

    def __init__(
        self,
        num_embeddings: int = 512,
        embedding_dim: int = 64,
        commitment_cost: float = 0.25,
        use_ema: bool = True,
        decay: float = 0.99,
        dead_code_threshold: float = 1.0,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.commitment_cost = validation.non_negative_float("commitment_cost", commitment_cost)
        self.quantizer = VectorQuantizer(
            num_embeddings=num_embeddings,
            embedding_dim=embedding_dim,
            use_ema=use_ema,
            decay=decay,
            dead_code_threshold=dead_code_threshold,
            seed=seed,
            name="quantizer",
        )
        self.encoder = self._make_encoder(self.quantizer.embedding_dim)
        self.decoder = self._make_decoder(self.image_shape[-1])
        self.build()

    @property
    def use_ema(self) -> bool:
        """Whether the codebook follows moving averages (see `VectorQuantizer`)."""
        return self.quantizer.use_ema

    @property
    def decay(self) -> float:
        """The EMA decay of the codebook."""
        return self.quantizer.decay

    @property
    def dead_code_threshold(self) -> float:
        """The EMA count under which a code is restarted (`0`: never)."""
        return self.quantizer.dead_code_threshold

    def encode(self, images: tensor_checks.TensorLike) -> tf.Tensor:
        """Maps images to the indices of their nearest codebook entries.

        Args:
            images: float array or tensor (B, H, W, C) in [0, 1]; H and W
                multiples of `2 ** num_downsamples`.

        Returns:
            int32 codes (B, H / 2**num_downsamples, W / 2**num_downsamples) in
            [0, num_embeddings), the input of `decode`.

        Raises:
            TypeError: integer (e.g. uint8) images.
            ValueError: a wrong shape or channel count, values outside [0, 1],
                NaN/Inf, or an empty batch.
        """
        return self._in_passes(
            lambda batch: self.quantizer(self.encoder(batch), training=False)["encoding_indices"],
            self.check_images(images),
            "images",
        )

    def compute_terms(self, images, training):
        images = tf.cast(images, tf.float32)
        latents = self.encoder(images, training=self._encoder_training(training))
        quantized = self.quantizer(latents, training=training)
        reconstructions = self._to_images(
            self.decoder(quantized["quantized"], training=training)
        )
        reconstruction_loss = per_example_mse(images, reconstructions)
        loss = (
            reconstruction_loss
            + quantized["codebook_loss"]
            + self.commitment_cost * quantized["commitment_loss"]
        )
        return {
            "reconstructions": reconstructions,
            "reconstruction_loss": reconstruction_loss,
            "commitment_loss": quantized["commitment_loss"],
            "loss": loss,
            **self.code_terms(quantized["encoding_indices"]),
        }

    def get_config(self):
        q = self.quantizer
        return {
            **super().get_config(),
            "num_embeddings": q.num_embeddings,
            "embedding_dim": q.embedding_dim,
            "commitment_cost": self.commitment_cost,
            "use_ema": q.use_ema,
            "decay": q.decay,
            "dead_code_threshold": q.dead_code_threshold,
            "seed": q.seed,
        }
