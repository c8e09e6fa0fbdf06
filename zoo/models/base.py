"""The base class every autoencoder family derives from.

It owns what the families share: the encoder/decoder stacks, input checks,
`train_step`/`test_step` with exact global-batch loss scaling, metric
trackers, and the config round trip. A family implements `encode`,
`decode`, `compute_terms` (per-example loss terms) and names its metrics.
"""

import keras
import tensorflow as tf

from zoo import distribution, serving, tensor_checks, validation
from zoo.blocks import Decoder, Encoder, with_legacy_layout
from zoo.image_metrics import per_example_mse, psnr
from zoo.models.batch_passes import BatchPassesMixin
from zoo.models.model_mixin import ZooModelMixin
from zoo.models.multi_worker import MultiWorkerFitMixin
from zoo.perceptual import FeatureMatching
from zoo.presets import PresetMixin
from zoo.quantizers import CodeStatistic, code_histogram, histogram_statistics

BASE_METRICS = ("loss", "reconstruction_loss", "mse", "psnr")



class Autoencoder(BatchPassesMixin, ZooModelMixin, MultiWorkerFitMixin, PresetMixin, keras.Model):
    """Base class of the zoo's autoencoders (not registered, not for direct use).

    Images are float NHWC in [0, 1]; `model(images)` returns reconstructions of
    the same shape in [0, 1]. Subclasses build their layers in `__init__` and
    then call `self.build()`, so a model is complete from its config alone.
    `from_preset(name_or_folder)` and `save_to_preset(folder)` come from
    `zoo.presets.PresetMixin`.

    Args:
        image_shape: tuple. Nominal `(height, width, channels)`. The channel
            count is enforced; height and width may be any multiple of
            `2 ** num_downsamples`. The nominal size is used to build the
            model, to draw samples and for exported signatures.
            Defaults to `(28, 28, 1)`.
        filters: int. Width of the full-resolution stage. Defaults to `32`.
        num_downsamples: int. Number of 2x downsamplings. Defaults to `2`.
        num_res_blocks: int. Residual blocks in encoder and decoder.
            Defaults to `2`.
        max_filters: int. Upper bound on the width. Defaults to `256`.
        strided_stem: bool. The encoder's stem is its first strided
            convolution and the decoder's last transposed convolution is its
            head (no features at full resolution). Defaults to `True`.
        resample_kernel_size: int. Kernel of the strided (transposed)
            convolutions (2: non-overlapping, faster, blockier). Defaults to `4`.
        residual_hidden_ratio: float. Inner width of the residual blocks as
            a fraction of their width. Defaults to `1.0`.
        separable_residual: bool. Depthwise-separable 3x3 convolutions in the
            residual blocks. Defaults to `False`.
        **kwargs: Standard `keras.Model` arguments (`name`; the
            precision is the global policy's).

    A config saved before the layout arguments existed (no `strided_stem`
    key) describes the original layout; `from_config` fills the missing keys
    with `zoo.blocks.LEGACY_LAYOUT`, so older `.keras` files load unchanged.
    """

    metric_names: tuple[str, ...] = BASE_METRICS
    encoding_parts: tuple[str, ...] = ("encoder",)
    """The parts that map an image to its latent or code: with them frozen
    (`trainable = False`) or unchanged, `encode` gives what it gave."""

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (28, 28, 1),
        filters: int = 32,
        num_downsamples: int = 2,
        num_res_blocks: int = 2,
        max_filters: int = 256,
        strided_stem: bool = True,
        resample_kernel_size: int = 4,
        residual_hidden_ratio: float = 1.0,
        separable_residual: bool = False,
        **kwargs,
    ):
        super().__init__(**validation.model_kwargs(kwargs))
        self._layout = {
            "strided_stem": strided_stem,
            "resample_kernel_size": resample_kernel_size,
            "residual_hidden_ratio": residual_hidden_ratio,
            "separable_residual": separable_residual,
        }
        self.image_shape = validation.image_shape(image_shape)
        self.filters = validation.positive_int("filters", filters)
        self.num_downsamples = validation.non_negative_int("num_downsamples", num_downsamples)
        self.num_res_blocks = validation.non_negative_int("num_res_blocks", num_res_blocks)
        self.max_filters = validation.positive_int("max_filters", max_filters)
        factor = self.downsampling_factor
        if self.image_shape[0] % factor or self.image_shape[1] % factor:
            raise ValueError(
                f"`image_shape` height and width must be divisible by 2**num_downsamples="
                f"{factor}. Received: image_shape={self.image_shape}"
            )
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}
        self.feature_matching = None  # set by `compile`

    def _stack_kwargs(self) -> dict:
        return {
            "filters": self.filters,
            "num_downsamples": self.num_downsamples,
            "num_res_blocks": self.num_res_blocks,
            "max_filters": self.max_filters,
            **self._layout,
        }

    def _make_encoder(self, output_channels: int) -> Encoder:
        return Encoder(output_channels, name="encoder", **self._stack_kwargs())

    def _make_decoder(self, output_channels: int) -> Decoder:
        return Decoder(output_channels, name="decoder", **self._stack_kwargs())

    @property
    def downsampling_factor(self) -> int:
        """Total spatial downsampling of the encoder (`2 ** num_downsamples`)."""
        return 2**self.num_downsamples

    @property
    def latent_grid(self) -> tuple[int, int]:
        """`(h, w)` of the latent grid at the nominal `image_shape`."""
        h, w, _ = self.image_shape
        return h // self.downsampling_factor, w // self.downsampling_factor

    def build(self, input_shape=None):
        """Creates every weight from the config; `input_shape` is ignored."""
        h, w = self.latent_grid
        self.encoder.build((None, *self.image_shape))
        self.build_latent((None, h, w, self.encoder.output_channels))
        self.decoder.build((None, h, w, self.decoder_input_channels))
        self.built = True

    def build_latent(self, encoder_output_shape):
        """Hook for families with a bottleneck layer to build."""

    @property
    def decoder_input_channels(self) -> int:
        raise NotImplementedError

    def _to_images(self, decoder_output) -> tf.Tensor:
        """Decoder logits -> float32 images in [0, 1]."""
        return tf.sigmoid(tf.cast(decoder_output, tf.float32))

    def check_images(self, images, one_pass: bool = False) -> tf.Tensor:
        """Validates a batch of images (see `zoo.tensor_checks.check_images`).

        A batch over `max_batch_size` is refused in a graph, or with
        `one_pass=True` (training steps); eager inference runs it in passes.
        """
        return tensor_checks.check_images(
            images, self.image_shape[-1], self.downsampling_factor, self._batch_limit(one_pass)
        )

    def call(self, images, training=False):
        return self._in_passes(
            lambda batch: self.compute_terms(batch, training=training)["reconstructions"],
            self.check_images(images),
            "images",
        )

    def compute_terms(self, images: tf.Tensor, training: bool) -> dict:
        """Returns `reconstructions`, per-example `loss`, `reconstruction_loss`
        and the family's extra per-example terms or batch statistics."""
        raise NotImplementedError

    def _encoder_training(self, training) -> bool:
        """The `training` flag of the encoder's side of `compute_terms`.

        A frozen encoder (`model.encoder.trainable = False`, as when only the
        decoder is fine-tuned) runs in inference mode, as a frozen
        `BatchNormalization` does: its inference kernels, and in the dVAE the
        argmax code that inference decodes instead of a relaxed sample.
        """
        return bool(training) and self.encoder.trainable

    def encode(self, images):
        raise NotImplementedError

    def decode(self, latents):
        raise NotImplementedError

    # Serving ------------------------------------------------------------------

    def serving_signatures(self) -> dict[str, serving.Signature]:
        """The signatures of this model's exported SavedModel (see `zoo.export`).

        Returns:
            A dict `name -> zoo.serving.Signature`: `serving_default` and
            (for gray and RGB models) `reconstruct_image_bytes` for every
            family, plus the family's
            `encode` and `decode` (`latent_signatures`) and, for families with
            a prior, `sample`.
        """
        return {**serving.image_signatures(self), **self.latent_signatures()}

    def latent_signatures(self) -> dict[str, serving.Signature]:
        """The family's `encode`/`decode` (and `sample`) signatures."""
        raise NotImplementedError

    # Training ---------------------------------------------------------------

    @staticmethod
    def _images_from_data(data):
        """Accepts `images`, `(images,)`, `(images, anything...)` or a dict with
        `images` or `image` (a tensorflow-datasets example)."""
        if isinstance(data, (tuple, list)):
            data = data[0]
        if isinstance(data, dict):
            key = next((k for k in ("images", "image") if k in data), None)
            if key is None:
                raise TypeError(
                    "A dict batch must hold the images under `images` or `image`. Received "
                    f"keys {sorted(data)}."
                )
            data = data[key]
        return data

    def _checked_batch(self, data) -> tf.Tensor:
        """The images of a training/evaluation batch, checked; one pass at most."""
        return self.check_images(self._images_from_data(data), one_pass=True)

    def compile(
        self,
        optimizer: str | keras.optimizers.Optimizer = "rmsprop",
        feature_matching: FeatureMatching | None = None,
        **kwargs,
    ) -> None:
        """Configures the model for training (`keras.Model.compile`).

        Args:
            optimizer: as in `keras.Model.compile`. Defaults to `"rmsprop"`.
            feature_matching: optional `zoo.perceptual.FeatureMatching`, added
                to the per-example training and evaluation loss (`loss`); the
                metrics (`mse`, ...) stay the family's own. Not saved with the
                model: compile a loaded model again to keep using it.
                Defaults to `None`.
            **kwargs: other `keras.Model.compile` arguments.

        Raises:
            TypeError: `feature_matching` is not a `FeatureMatching`.
            ValueError: its network takes images of another shape.
        """
        if feature_matching is not None:
            if not isinstance(feature_matching, FeatureMatching):
                raise TypeError(
                    "`feature_matching` must be a zoo.perceptual.FeatureMatching. "
                    f"Received: {type(feature_matching).__name__}"
                )
            feature_matching.check_image_shape(self.image_shape)
        # A plain attribute (not tracked): the frozen network is not part of the model.
        object.__setattr__(self, "feature_matching", feature_matching)
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        """Restores a saved model's compiled state, as `keras.Model` does.

        Keras skips it for a model that overrides `compile` (with a warning),
        which would load every `.keras` file uncompiled. Feature matching is
        not part of that state.
        """
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _objective_terms(self, images, training: bool) -> dict:
        """`compute_terms` as `fit` and `evaluate` use them: with the compiled
        feature-matching term in `loss`."""
        terms = self.compute_terms(images, training=training)
        if self.feature_matching is not None:
            distance = self.feature_matching(images, terms["reconstructions"])
            terms = {**terms, "loss": terms["loss"] + distance}
        return terms

    def train_step(self, data):
        images = self._checked_batch(data)
        with tf.GradientTape() as tape:
            terms = self._objective_terms(images, training=True)
            loss = distribution.mean_over_global_batch(terms["loss"])
            scaled_loss = self.optimizer.scale_loss(loss)
        self._apply_gradients(tape, scaled_loss)
        return self._update_metrics(images, terms)

    def test_step(self, data):
        images = self._checked_batch(data)
        return self._update_metrics(images, self._objective_terms(images, training=False))

    def fit(self, x=None, *args, **kwargs):
        tensor_checks.check_has_examples(x, "fit(x)")
        tensor_checks.check_has_examples(kwargs.get("validation_data"), "fit(validation_data)")
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        tensor_checks.check_has_examples(x, "evaluate(x)")
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        tensor_checks.check_has_examples(x, "predict(x)")
        return super().predict(x, *args, **kwargs)

    def predict_step(self, data):
        return self(self._images_from_data(data), training=False)

    def _update_metrics(self, images, terms) -> dict:
        reconstructions = terms["reconstructions"]
        values = {
            **terms,
            "mse": per_example_mse(images, reconstructions),
            "psnr": psnr(images, reconstructions),
        }
        for name, tracker in self.trackers.items():
            statistic = isinstance(tracker, CodeStatistic)
            tracker.update_state(values["code_histogram" if statistic else name])
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        return self._logs_for_trainer(logs)

    def symbolic_build_inputs(self) -> keras.KerasTensor:
        """Images (None, *image_shape) float32: the input of `fit`'s symbolic build."""
        return keras.KerasTensor((None, *self.image_shape), "float32")

    @property
    def metrics(self):
        return list(self.trackers.values())

    # Config -------------------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "image_shape": list(self.image_shape),
            **self._stack_kwargs(),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**with_legacy_layout(config))


class ContinuousAutoencoder(Autoencoder):
    """Base of the families with a float latent grid of `latent_channels` (AE, VAE)."""

    @property
    def decoder_input_channels(self) -> int:
        return self.latent_channels

    def latent_signatures(self) -> dict[str, serving.Signature]:
        return serving.latent_signatures(self, lambda images: {"latents": self.encode(images)})

    def decode(self, latents: tensor_checks.TensorLike) -> tf.Tensor:
        """Maps latent grids (what `encode` returns) to images.

        Args:
            latents: float array or tensor (B, h, w, latent_channels).

        Returns:
            float32 images (B, h * 2**num_downsamples, w * 2**num_downsamples, C)
            in [0, 1].

        Raises:
            TypeError: non-float latents.
            ValueError: a wrong rank or channel count, NaN/Inf (also values too
                large for the dtype the model computes in, e.g. over 65504 under
                `mixed_float16`), or an empty batch.
        """
        latents = tensor_checks.check_latents(
            latents, self.latent_channels, self._batch_limit(), self.compute_dtype
        )
        return self._in_passes(
            lambda batch: self._to_images(self.decoder(batch)), latents, "latent grids"
        )


class DiscreteAutoencoder(Autoencoder):
    """Base of the families with a codebook `quantizer` and int32 codes (VQ-VAE, dVAE)."""

    @property
    def num_embeddings(self) -> int:
        """The codebook size K."""
        return self.quantizer.num_embeddings

    @property
    def embedding_dim(self) -> int:
        """The size D of a code vector."""
        return self.quantizer.embedding_dim

    @property
    def seed(self) -> int:
        """The seed of the quantizer's random draws (restarts, Gumbel noise)."""
        return self.quantizer.seed

    @property
    def decoder_input_channels(self) -> int:
        return self.quantizer.embedding_dim

    def build(self, input_shape=None):
        super().build(input_shape)
        # `perplexity` and `codebook_usage` are statistics of all the codes of an
        # epoch (or `evaluate`), not means of per-batch values: their trackers sum
        # the histograms (`CodeStatistic`), which needs K, known once the
        # quantizer exists.
        for name in ("perplexity", "codebook_usage"):
            if name in self.trackers and not isinstance(self.trackers[name], CodeStatistic):
                self.trackers[name] = CodeStatistic(name, self.num_embeddings)

    def build_latent(self, encoder_output_shape):
        self.quantizer.build(encoder_output_shape)

    def code_terms(self, indices: tf.Tensor) -> dict[str, tf.Tensor]:
        """The code terms of `compute_terms`: `code_histogram` (float32 (K,), the
        counts of `indices` over the global batch) and this batch's `perplexity`
        and `codebook_usage` (`zoo.quantizers.code_statistics`)."""
        histogram = code_histogram(indices, self.num_embeddings)
        return {"code_histogram": histogram, **histogram_statistics(histogram)}

    def latent_signatures(self) -> dict[str, serving.Signature]:
        return serving.code_signatures(self)

    def decode(self, codes: tensor_checks.TensorLike) -> tf.Tensor:
        """Maps code grids (what `encode` returns) to images.

        Args:
            codes: integer array or tensor (B, h, w) with values in
                [0, num_embeddings).

        Returns:
            float32 images (B, H, W, C) in [0, 1], H and W the grid's size
            times the downsampling factor.

        Raises:
            TypeError: non-integer codes.
            ValueError: a wrong rank, codes outside [0, num_embeddings), or an
                empty batch.
        """
        codes = tensor_checks.check_codes(codes, self.num_embeddings, self._batch_limit())
        return self._in_passes(
            lambda batch: self._to_images(self.decoder(self.quantizer.lookup(batch))),
            codes,
            "code grids",
        )
