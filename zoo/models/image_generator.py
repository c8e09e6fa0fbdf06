"""From a class name to pixels: a frozen discrete autoencoder and its Transformer prior."""

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from zoo import serving, validation
from zoo.models.generator_signatures import generate_signatures
from zoo.models.transformer_prior import TransformerPrior
from zoo.presets import PresetMixin

AUTOENCODER_API = ("encode", "decode", "latent_grid", "num_embeddings")


@keras.saving.register_keras_serializable(package="zoo")
class ImageGenerator(PresetMixin, keras.Model):
    """Class-conditional image generation: prior samples codes, the autoencoder decodes.

    Holds a frozen discrete autoencoder (a zoo `VQVAE` or `DVAE`, or any model
    with `encode`, `decode`, `latent_grid` and `num_embeddings`; the
    generator's `image_shape` needs the model's, and export its
    `serving_signatures` too), a `TransformerPrior` over its code grid and the
    names of the prior's classes. It saves and loads as one `.keras` file. `compile` compiles the
    prior, so a loaded generator fine-tunes with `generator.prior.fit(codes,
    labels)`; the autoencoder stays frozen.

    Args:
        autoencoder: keras.Model. The discrete autoencoder; set non-trainable.
        prior: `zoo.TransformerPrior` with the autoencoder's `num_embeddings`
            and `latent_grid`, and one class per name.
        class_names: list of str. Class `i` is `class_names[i]`; prompts are
            matched case-insensitively (and without surrounding spaces).
        guidance_scale: float. The classifier-free guidance scale `generate`
            uses when given none: a trained generator's measured choice (the
            shipped ones meet their cards' quality targets with it), saved
            in its config. Guidance > 1 runs the prior on a batch of 2N, so
            it costs about twice `1.0` (no guidance). Defaults to `1.0`.
        **kwargs: Standard `keras.Model` arguments (`name`).

    Example:
    >>> import zoo
    >>> autoencoder = zoo.DVAE(num_embeddings=16, filters=8, num_res_blocks=1)
    >>> prior = zoo.TransformerPrior(num_embeddings=16, grid_shape=autoencoder.latent_grid,
    ...                              num_classes=2, embed_dim=32, num_layers=1)
    >>> generator = zoo.ImageGenerator(autoencoder, prior, ["T-shirt/top", "ankle boot"])
    >>> tuple(generator.generate(["Ankle boot", "t-shirt/top"], seed=0).shape)
    (2, 28, 28, 1)

    References:
        - [Ramesh et al., 2021 (DALL-E)](https://arxiv.org/abs/2102.12092)
    """

    def __init__(
        self,
        autoencoder: keras.Model,
        prior: TransformerPrior,
        class_names: Sequence[str],
        guidance_scale: float = 1.0,
        **kwargs,
    ):
        super().__init__(**validation.model_kwargs(kwargs))
        missing = [name for name in AUTOENCODER_API if not hasattr(autoencoder, name)]
        if missing:
            raise TypeError(
                "`autoencoder` must be a discrete zoo model (VQVAE, DVAE) with "
                f"{', '.join(AUTOENCODER_API)}. Received {type(autoencoder).__name__}, "
                f"missing {missing}."
            )
        if not isinstance(prior, TransformerPrior):
            raise TypeError(f"`prior` must be a zoo.TransformerPrior. Received {type(prior)}.")
        if isinstance(class_names, str) or not all(isinstance(n, str) for n in class_names):
            raise TypeError(f"`class_names` must be a list of str. Received: {class_names!r}")
        keys = [self.normalize(name) for name in class_names]
        if len(set(keys)) != len(keys) or "" in keys:
            raise ValueError(
                "`class_names` must be non-empty and differ case-insensitively. "
                f"Received: {list(class_names)}"
            )
        expected = {
            "num_embeddings": (prior.num_embeddings, autoencoder.num_embeddings),
            "grid_shape": (tuple(prior.grid_shape), tuple(autoencoder.latent_grid)),
            "num_classes": (prior.num_classes, len(class_names)),
        }
        for name, (found, wanted) in expected.items():
            if found != wanted:
                raise ValueError(
                    f"The prior's `{name}` must match the autoencoder and class names: "
                    f"expected {wanted}, received {found}."
                )
        autoencoder.trainable = False
        self.guidance_scale = validation.non_negative_float("guidance_scale", guidance_scale)
        self.autoencoder = autoencoder
        self.prior = prior
        self.class_names = list(class_names)
        self.built = True

    @staticmethod
    def normalize(name: str) -> str:
        """How prompts are matched: stripped and lower-cased."""
        return name.strip().lower()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """`(H, W, C)` of the generated images."""
        return tuple(self.autoencoder.image_shape)

    def class_ids(self, prompts) -> np.ndarray | tf.Tensor:
        """Class names (case-insensitive) or int ids -> int32 ids (N,).

        Args:
            prompts: a name or id, or a sequence, array or tensor of them.

        Returns:
            int32 class ids (N,): a numpy array, or, for a tensor inside a
            traced function, a tensor (`graph_class_ids`).

        Raises:
            ValueError: an unknown name (the message lists the known ones) or
                an id outside [0, num_classes).
        """
        if isinstance(prompts, tf.Tensor) and not tf.executing_eagerly():
            return self.graph_class_ids(prompts)
        if isinstance(prompts, tf.Tensor):  # ids or byte-string names
            prompts = np.asarray(prompts.numpy())
        if isinstance(prompts, (str, int, np.integer)):
            prompts = [prompts]
        if isinstance(prompts, np.ndarray):
            if prompts.ndim > 1:
                raise ValueError(
                    f"`prompts` must be one-dimensional. Received shape {prompts.shape}."
                )
            prompts = [p.decode() if isinstance(p, bytes) else p
                       for p in np.atleast_1d(prompts).tolist()]
        if not prompts:
            raise ValueError("`prompts` is empty: pass at least one class name or id.")
        lookup = {self.normalize(name): i for i, name in enumerate(self.class_names)}
        ids = []
        for prompt in prompts:
            if isinstance(prompt, str):
                if self.normalize(prompt) not in lookup:
                    raise ValueError(
                        f"Unknown class name {prompt!r}. Known names: {', '.join(self.class_names)}"
                    )
                ids.append(lookup[self.normalize(prompt)])
            elif isinstance(prompt, (int, np.integer)) and not isinstance(prompt, bool):
                if not 0 <= prompt < len(self.class_names):
                    raise ValueError(
                        f"Class ids must be in [0, {len(self.class_names) - 1}]. Received: {prompt}"
                    )
                ids.append(int(prompt))
            else:
                raise TypeError(f"Prompts must be class names or int ids. Received: {prompt!r}")
        return np.asarray(ids, np.int32)

    def graph_class_ids(self, prompts: tf.Tensor) -> tf.Tensor:
        """`class_ids` of a string or integer tensor, in the graph (a traced function).

        Names are matched as `normalize` does; an unknown name or an id outside
        [0, num_classes) fails when the graph runs, naming the known names.

        Args:
            prompts: string or integer tensor (N,) (a scalar counts as one).

        Returns:
            int32 class ids (N,).
        """
        if prompts.shape.rank == 0:
            prompts = tf.reshape(prompts, [1])
        if prompts.shape.rank not in (None, 1):
            raise ValueError(f"`prompts` must be one-dimensional. Received shape {prompts.shape}.")
        if prompts.dtype == tf.string:
            prompts = tf.strings.lower(tf.strings.strip(prompts), encoding="utf-8")
            names = tf.constant([self.normalize(name) for name in self.class_names])
            matches = tf.equal(prompts[:, None], names[None, :])
            found = tf.reduce_any(matches, axis=1)
            check = tf.debugging.Assert(
                tf.reduce_all(found),
                ["Unknown class name(s) in prompts:", tf.boolean_mask(prompts, ~found),
                 f"Known names (case-insensitive): {', '.join(self.class_names)}"],
            )  # fmt: skip
            with tf.control_dependencies([check]):
                return tf.argmax(tf.cast(matches, tf.int32), axis=1, output_type=tf.int32)
        if not prompts.dtype.is_integer:
            raise TypeError(f"Prompts must be class names or int ids. Received dtype "
                            f"{prompts.dtype.name}.")
        ids = tf.cast(prompts, tf.int32)
        checks = [
            tf.debugging.assert_non_negative(ids, message="class ids must be >= 0"),
            tf.debugging.assert_less(ids, len(self.class_names),
                                     message=f"class ids must be < {len(self.class_names)}"),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(ids)

    def generate(
        self,
        prompts=None,
        seed: int = 0,
        temperature: float = 1.0,
        top_k: int | None = None,
        guidance_scale: float | None = None,
        prefix=None,
        num_samples: int | None = None,
    ) -> tf.Tensor:
        """Generates one image per prompt.

        Args:
            prompts: class names (matched case-insensitively) or int ids, one
                per image; `None` samples unconditionally (`num_samples` or
                the prefix give N). Defaults to `None`.
            seed: int. The same seed gives the same images. Defaults to `0`.
            temperature: float > 0. As `TransformerPrior.generate`.
                Defaults to `1.0`.
            top_k: int or `None`. As `TransformerPrior.generate`.
                Defaults to `None`.
            guidance_scale: float, as `TransformerPrior.generate`, or `None`
                for this generator's own `guidance_scale`. Defaults to `None`.
            prefix: int codes (N, r, w) or `None`, as
                `TransformerPrior.generate` (e.g.
                `generator.autoencoder.encode(images)[:, :r]`). Defaults to `None`.
            num_samples: int or `None`. N for unconditional sampling.
                Defaults to `None`.

        Returns:
            float32 images (N, H, W, C) in [0, 1].

        Raises:
            ValueError: an unknown class name or id (the message lists the
                known names), or arguments `TransformerPrior.generate` refuses.
        """
        labels = None if prompts is None else self.class_ids(prompts)
        codes = self.prior.generate(
            labels,
            temperature=temperature,
            top_k=top_k,
            guidance_scale=self.guidance_scale if guidance_scale is None else guidance_scale,
            seed=seed,
            prefix=prefix,
            num_samples=num_samples,
        )
        return self.autoencoder.decode(codes)

    def with_autoencoder(self, autoencoder: keras.Model) -> "ImageGenerator":
        """This generator's prior and classes, decoded by another autoencoder.

        The other autoencoder must give every image the code this generator's
        gives: the same class, with the same weights in its `encoding_parts`
        (the encoder, and a VQ-VAE's codebook), as one fine-tuned from this
        generator's autoencoder with those parts frozen (`training.freeze`).
        Its decoder (and a dVAE's code vectors) may differ: the prior's codes
        then mean the same, decoded by the other decoder.

        Args:
            autoencoder: the other discrete autoencoder (set non-trainable).

        Returns:
            A new `ImageGenerator` sharing this one's prior, classes and
            guidance scale.

        Raises:
            ValueError: the autoencoder would give other codes.

        Example:
        >>> import zoo
        >>> generator = zoo.load("prior_dvae_fashion_mnist").with_autoencoder(
        ...     zoo.load("dvae_perceptual_fashion_mnist"))
        >>> tuple(generator.generate(["bag", "sandal"], seed=0).shape)
        (2, 28, 28, 1)
        """
        ours = self.autoencoder
        parts = getattr(ours, "encoding_parts", None)
        if parts is None or type(autoencoder) is not type(ours):
            raise ValueError(
                f"`autoencoder` must be a {type(ours).__name__} like this generator's (a zoo "
                f"model, whose encoding parts can be compared). Received: "
                f"{type(autoencoder).__name__}."
            )
        for part in parts:
            mine, theirs = getattr(ours, part).weights, getattr(autoencoder, part).weights
            if len(mine) != len(theirs) or not all(
                a.shape == b.shape and np.array_equal(a.numpy(), b.numpy())
                for a, b in zip(mine, theirs, strict=False)
            ):
                raise ValueError(
                    f"`autoencoder` would give other codes than this generator's: its {part} "
                    "weights differ. A prior applies to an autoencoder fine-tuned from its own "
                    f"with `training.freeze={list(parts)}`."
                )
        return ImageGenerator(autoencoder, self.prior, self.class_names,
                              guidance_scale=self.guidance_scale, name=self.name)

    def compile(self, *args, **kwargs):
        """Compiles the prior (the only trainable part): `generator.prior.fit(codes, labels)`."""
        self.prior.compile(*args, **kwargs)

    def fit(self, *args, **kwargs):
        raise TypeError(
            "Train the prior, not the generator: `generator.prior.fit(codes, labels)` with "
            "codes from `generator.autoencoder.encode(images)`."
        )

    # Serving ------------------------------------------------------------------

    def serving_signatures(self, use_cache: bool = True) -> dict[str, serving.Signature]:
        """The signatures of the exported SavedModel (see `zoo.export`).

        `generate` (int32 `labels` [N] and int32/float32 scalars `seed`,
        `temperature`, `top_k` (0: no truncation), `guidance_scale` (1: no
        guidance)) and `generate_from_text` (string `prompts` [N], the class
        names, matched case-insensitively in the graph, and the same scalars)
        return float32 `images` [N, H, W, C] and int32 `codes` [N, h, w],
        drawn by the same loop as `generate` in Python: the same seed gives
        the same codes. Bad requests fail with `InvalidArgumentError`
        (INVALID_ARGUMENT). The autoencoder's own signatures are included.

        Args:
            use_cache: bool. `False` builds the uncached sampling loop (for
                the benchmark's comparison). Defaults to `True`.
        """
        return {**self.autoencoder.serving_signatures(), **generate_signatures(self, use_cache)}

    def get_config(self):
        return {
            "name": self.name,
            "autoencoder": keras.saving.serialize_keras_object(self.autoencoder),
            "prior": keras.saving.serialize_keras_object(self.prior),
            "class_names": list(self.class_names),
            "guidance_scale": self.guidance_scale,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("autoencoder", "prior"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
