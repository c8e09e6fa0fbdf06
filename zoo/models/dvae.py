"""The discrete VAE of DALL-E (dVAE)."""

import keras
import tensorflow as tf

from zoo import distribution, serving, tensor_checks, validation
from zoo.models.base import BASE_METRICS, DiscreteAutoencoder
from zoo.quantizers import GumbelQuantizer

LIKELIHOODS = ("mse", "logit_laplace")


def logit_laplace_nll(images, mean_logits, log_scale, eps: float) -> tf.Tensor:
    """Per-pixel negative log-likelihood of DALL-E's logit-Laplace distribution.

    Pixels are first mapped from [0, 1] into [eps, 1 - eps]; the density of
    `x` is that of a Laplace(mean_logits, exp(log_scale)) on `logit(x)`.
    """
    x = eps + (1.0 - 2.0 * eps) * images
    logit_x = tf.math.log(x) - tf.math.log1p(-x)
    return (
        tf.abs(logit_x - mean_logits) * tf.exp(-log_scale)
        + log_scale
        + tf.math.log(2.0 * x * (1.0 - x))
    )


def diversity_loss(probs: tf.Tensor, num_embeddings: int) -> tf.Tensor:
    """`log K - H(p)` of the posterior averaged over positions and the global batch.

    Args:
        probs: float32 (B, h, w, K) posterior probabilities.
        num_embeddings: int. K.

    Returns:
        A scalar in [0, log K]; gradients flow through the all-reduce.
    """
    flat = tf.reshape(probs, [-1, num_embeddings])
    totals = distribution.global_sum(tf.reduce_sum(flat, axis=0))
    mean = totals / tf.maximum(tf.reduce_sum(totals), 1e-12)
    entropy = -tf.reduce_sum(mean * tf.math.log(mean + 1e-12))
    return tf.math.log(float(num_embeddings)) - entropy


@keras.saving.register_keras_serializable(package="zoo")
class DVAE(DiscreteAutoencoder):
    """The DALL-E discrete VAE: Gumbel-softmax relaxation of a categorical code.

    The encoder outputs logits over `num_embeddings` codebook entries at each
    latent position. In training a `GumbelQuantizer` draws a relaxed one-hot
    sample (`tfp.distributions.RelaxedOneHotCategorical` at the model's
    temperature) and the latent is the probability-weighted sum of codebook
    vectors; in inference and `encode` the code is the argmax, with no noise.
    With a frozen encoder (`model.encoder.trainable = False`) training decodes
    the argmax code too: no gradient reaches the encoder, so the relaxation
    has nothing to serve, and the decoder learns the codes it is given in use.

    Per example, with D the number of pixel values:
    `loss = reconstruction_loss + kl_weight * kl_warmup * kl_loss`, where
    `kl_loss = KL(q(z|x) || Uniform(K)) / D` (summed over latent positions) and
    `reconstruction_loss` is the per-pixel MSE, or with
    `likelihood="logit_laplace"` the per-pixel negative log-likelihood of
    DALL-E's logit-Laplace distribution (the decoder then predicts a location
    and a log-scale per pixel, and the reconstruction is the location mapped
    back from [eps, 1 - eps]).

    The temperature is a non-trainable variable (`model.temperature`) saved
    with the model; anneal it with `trainers.callbacks.TemperatureAnnealing`.
    A `.keras` file keeps the annealed value, while `get_config()` holds the
    starting one, so `DVAE.from_config` starts again from it.
    `kl_warmup` is a non-trainable factor in [0, 1] set by
    `trainers.callbacks.KLWarmup`.

    Args:
        num_embeddings: int. Codebook size K. Defaults to `512`.
        embedding_dim: int. Code vector size. Defaults to `64`.
        kl_weight: float. Weight of the per-pixel KL term. Defaults to `1e-3`
            (for the MSE likelihood; DALL-E's 6.6 belongs to its
            logit-Laplace likelihood on 256x256 images).
        temperature: float. Initial temperature. Defaults to `1.0`.
        straight_through: bool. Hard one-hot samples in the forward pass.
            Defaults to `False`.
        likelihood: str. `"mse"` or `"logit_laplace"`. Defaults to `"mse"`.
        logit_laplace_eps: float. The eps of the logit-Laplace pixel map.
            Defaults to `0.1`.
        diversity_weight: float. Weight of an optional codebook-diversity
            term, `log K - H(mean posterior over the global batch)` (the
            diversity loss of wav2vec 2.0): 0 when the batch uses all codes
            equally. Not part of DALL-E's objective. Without it a small
            dVAE may use only a few percent of its codebook; with too large a
            weight (or at a high temperature) it can instead make every
            posterior uniform, which also maximises this entropy, so it is
            opt-in: the Fashion-MNIST recipe uses `1e-2` with
            `kl_weight=1e-2`. Defaults to `0.0`.
        seed: int. Seed of the Gumbel noise. Defaults to `0`.
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
    >>> from trainers.callbacks import TemperatureAnnealing
    >>> images = np.random.rand(64, 28, 28, 1).astype("float32")  # in [0, 1]
    >>> model = zoo.DVAE()
    >>> model.compile(optimizer="adam")
    >>> history = model.fit(images, epochs=1, batch_size=32, verbose=0,
    ...                     callbacks=[TemperatureAnnealing(steps=1000)])
    >>> codes = model.encode(images[:2])
    >>> print(codes.dtype.name, codes.shape)
    int32 (2, 7, 7)

    References:
        - [Ramesh et al., 2021](https://arxiv.org/abs/2102.12092)
    """

    metric_names = (*BASE_METRICS, "kl_loss", "perplexity", "codebook_usage", "temperature")

    def __init__(
        self,
        num_embeddings: int = 512,
        embedding_dim: int = 64,
        kl_weight: float = 1e-3,
        temperature: float = 1.0,
        straight_through: bool = False,
        likelihood: str = "mse",
        logit_laplace_eps: float = 0.1,
        diversity_weight: float = 0.0,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kl_weight = validation.non_negative_float("kl_weight", kl_weight)
        self.likelihood = validation.one_of("likelihood", likelihood, LIKELIHOODS)
        self.diversity_weight = validation.non_negative_float("diversity_weight", diversity_weight)
        self.logit_laplace_eps = validation.positive_float("logit_laplace_eps", logit_laplace_eps)
        if self.logit_laplace_eps >= 0.5:
            raise ValueError(
                f"`logit_laplace_eps` must be in (0, 0.5). Received: {logit_laplace_eps!r}"
            )
        self.quantizer = GumbelQuantizer(
            num_embeddings=num_embeddings,
            embedding_dim=embedding_dim,
            temperature=temperature,
            straight_through=straight_through,
            seed=seed,
            name="quantizer",
        )
        channels = self.image_shape[-1]
        self.encoder = self._make_encoder(num_embeddings)
        decoder_channels = 2 * channels if likelihood == "logit_laplace" else channels
        self.decoder = self._make_decoder(decoder_channels)
        self.kl_warmup = self.add_weight(
            shape=(), initializer="ones", trainable=False, autocast=False, name="kl_warmup"
        )
        self.build()

    @classmethod
    def from_vqvae(cls, vqvae: keras.Model, logit_scale: float = 4.0, **options) -> "DVAE":
        """A dVAE that gives a trained VQ-VAE's codes and reconstructions.

        The VQ-VAE's nearest-code rule is the argmax of the logits
        `-logit_scale * ||z - e_k||^2`, which equal
        `logit_scale * (2 z . e_k - ||e_k||^2)` up to a constant per position:
        affine in the encoder output `z`. Its encoder's last layer (a pointwise
        projection) composed with that map is the dVAE's logit layer, and its
        codebook and decoder are the dVAE's. So `encode` and `decode` of the
        result equal the VQ-VAE's (up to exact ties, in float32), and training
        it with the dVAE's objective starts from the VQ-VAE's quality rather
        than from random weights. The logits are negative squared distances,
        as in the SQ-VAE's categorical posterior.

        Args:
            vqvae: zoo.VQVAE. The trained model; its weights are copied.
            logit_scale: float. Sharpness of the posterior: the logits at the
                model's temperature `t` are the negative squared distances
                times `logit_scale / t`. Defaults to `4.0`.
            **options: Options of the dVAE's objective (`kl_weight`,
                `temperature`, `straight_through`, `diversity_weight`,
                `seed`); the architecture is the VQ-VAE's. `temperature`
                defaults to `1 / 16`, the end of DALL-E's annealing: the
                model starts trained, and at 1.0 its relaxed samples would
                mix codes the VQ-VAE keeps apart.

        Returns:
            A new, uncompiled `DVAE`.

        Example:
        >>> import numpy as np
        >>> import zoo
        >>> vqvae = zoo.VQVAE(num_embeddings=16, embedding_dim=8, filters=8)
        >>> dvae = zoo.DVAE.from_vqvae(vqvae, temperature=1 / 16)
        >>> images = np.random.rand(4, 28, 28, 1).astype("float32")
        >>> bool(np.array_equal(dvae.encode(images), vqvae.encode(images)))
        True

        References:
            - [Takida et al., 2022, SQ-VAE](https://arxiv.org/abs/2205.07547)
        """
        from zoo.models.vqvae import VQVAE

        if cls is not DVAE or not isinstance(vqvae, VQVAE):
            raise TypeError(
                f"`DVAE.from_vqvae` converts a zoo.VQVAE into a zoo.DVAE. Received: "
                f"{cls.__name__}.from_vqvae({type(vqvae).__name__})"
            )
        scale = validation.positive_float("logit_scale", logit_scale)
        architecture = {k: v for k, v in super(VQVAE, vqvae).get_config().items()
                        if k not in ("name", "trainable")}  # the shared encoder and decoder
        architecture.update(num_embeddings=vqvae.quantizer.num_embeddings,
                            embedding_dim=vqvae.quantizer.embedding_dim)
        fixed = sorted(set(options) & set(architecture))
        if fixed:
            raise ValueError(
                f"The architecture of `DVAE.from_vqvae` is the VQ-VAE's; drop "
                f"{', '.join(fixed)}. Received: {options}"
            )
        model = cls(**architecture, **{"temperature": 1 / 16, **options})
        codebook = keras.ops.convert_to_numpy(vqvae.quantizer.embeddings)  # (K, D)
        for mine, theirs in zip(model.decoder.weights, vqvae.decoder.weights, strict=True):
            mine.assign(theirs)
        head = model.encoder.head
        for mine, theirs in zip(model.encoder.weights, vqvae.encoder.weights, strict=True):
            if mine.path == head.kernel.path:  # (..., D) -> (..., K)
                kernel = keras.ops.convert_to_numpy(theirs)
                mine.assign(scale * (kernel @ (2.0 * codebook.T)).reshape(mine.shape))
            elif mine.path == head.bias.path:  # (D,) -> (K,)
                bias = keras.ops.convert_to_numpy(theirs)
                mine.assign(scale * (2.0 * bias @ codebook.T - (codebook**2).sum(axis=1)))
            else:
                mine.assign(theirs)
        model.quantizer.embeddings.assign(codebook)
        return model

    @property
    def straight_through(self) -> bool:
        """Whether training samples are hard one-hots in the forward pass."""
        return self.quantizer.straight_through

    @property
    def temperature(self) -> keras.Variable:
        """The relaxation temperature (a non-trainable scalar variable)."""
        return self.quantizer.temperature

    def _reconstruct(self, decoder_output):
        """Decoder output -> (reconstructions in [0, 1], location, log-scale)."""
        output = tf.cast(decoder_output, tf.float32)
        if self.likelihood == "mse":
            return tf.sigmoid(output), output, None
        location, log_scale = tf.split(output, 2, axis=-1)
        eps = self.logit_laplace_eps
        images = tf.clip_by_value((tf.sigmoid(location) - eps) / (1.0 - 2.0 * eps), 0.0, 1.0)
        return images, location, log_scale

    def encode(self, images: tensor_checks.TensorLike) -> tf.Tensor:
        """Maps images to their most likely codes (the argmax of the logits, no noise).

        Args:
            images: float array or tensor (B, H, W, C) in [0, 1]; H and W
                multiples of the downsampling factor.

        Returns:
            int32 codes (B, h, w) in [0, num_embeddings), the input of `decode`.

        Raises:
            TypeError: integer (e.g. uint8) images.
            ValueError: a wrong shape or channel count, values outside [0, 1],
                NaN/Inf, or an empty batch.
        """
        return self._in_passes(
            lambda batch: tf.argmax(
                tf.cast(self.encoder(batch), tf.float32), axis=-1, output_type=tf.int32
            ),
            self.check_images(images),
            "images",
        )

    def encode_logits(self, images: tensor_checks.TensorLike) -> tf.Tensor:
        """Maps images to the logits of their categorical posteriors.

        Args:
            images: float array or tensor (B, H, W, C) in [0, 1], as for `encode`.

        Returns:
            float32 logits (B, h, w, num_embeddings); `encode` is their argmax.

        Raises:
            TypeError, ValueError: as `encode`.
        """
        return self._in_passes(
            lambda batch: tf.cast(self.encoder(batch), tf.float32),
            self.check_images(images),
            "images",
        )

    def _to_images(self, decoder_output) -> tf.Tensor:
        return self._reconstruct(decoder_output)[0]

    def sample(self, num_samples: int, seed: int = 0) -> tf.Tensor:
        """Decodes codes drawn from the uniform prior at the nominal image size.

        The dVAE's prior is uniform over the K codes at each position (DALL-E
        learns a transformer prior afterwards), so these samples show what the
        codebook spans rather than realistic images.

        Args:
            num_samples: int. Number of images.
            seed: int. Seed of the draw; the same seed gives the same
                images. Defaults to `0`.

        Returns:
            float32 images (num_samples, H, W, C) in [0, 1].
        """
        return self._draw_images(num_samples, validation.check_seed(seed))

    def _draw_images(self, num_samples, seed) -> tf.Tensor:
        """Decodes uniform codes; `sample` and the exported `sample` signature share it."""
        num_samples = self._checked_num_samples(num_samples)
        h, w = self.latent_grid
        codes = tf.random.stateless_uniform(
            tf.stack([num_samples, h, w]),
            seed=tf.stack([seed, 0]),
            maxval=self.num_embeddings,
            dtype=tf.int32,
        )
        return self.decode(codes)

    def latent_signatures(self) -> dict[str, serving.Signature]:
        return {**super().latent_signatures(), **serving.sample_signature(self._draw_images)}

    def compute_terms(self, images, training):
        images = tf.cast(images, tf.float32)
        encoding = self._encoder_training(training)  # False: argmax codes, no noise
        quantized = self.quantizer(self.encoder(images, training=encoding), training=encoding)
        reconstructions, location, log_scale = self._reconstruct(
            self.decoder(quantized["quantized"], training=training)
        )
        if self.likelihood == "mse":
            per_pixel = tf.math.squared_difference(images, reconstructions)
        else:
            per_pixel = logit_laplace_nll(images, location, log_scale, self.logit_laplace_eps)
        reconstruction_loss = tf.reduce_mean(per_pixel, axis=[1, 2, 3])
        dims = tf.cast(tf.reduce_prod(tf.shape(images)[1:]), tf.float32)
        kl_loss = quantized["kl"] / dims
        weight = self.kl_weight * tf.convert_to_tensor(self.kl_warmup)
        loss = reconstruction_loss + weight * kl_loss
        if self.diversity_weight > 0:
            diversity = diversity_loss(quantized["probs"], self.num_embeddings)
            loss = loss + self.diversity_weight * diversity
        return {
            "reconstructions": reconstructions,
            "reconstruction_loss": reconstruction_loss,
            "kl_loss": kl_loss,
            "loss": loss,
            "temperature": tf.convert_to_tensor(self.temperature),
            **self.code_terms(quantized["encoding_indices"]),
        }

    def get_config(self):
        q = self.quantizer
        return {
            **super().get_config(),
            "num_embeddings": q.num_embeddings,
            "embedding_dim": q.embedding_dim,
            "kl_weight": self.kl_weight,
            "temperature": q.initial_temperature,
            "straight_through": q.straight_through,
            "likelihood": self.likelihood,
            "logit_laplace_eps": self.logit_laplace_eps,
            "diversity_weight": self.diversity_weight,
            "seed": q.seed,
        }
