"""A class-conditional Transformer prior over the code grid of a discrete autoencoder."""

import math

import keras
import tensorflow as tf

from zoo import distribution, sampling, tensor_checks, validation
from zoo.models.model_mixin import ZooModelMixin
from zoo.models.multi_worker import MultiWorkerFitMixin
from zoo.presets import PresetMixin
from zoo.transformer import _INITIALIZER, ConditionedGridEmbedding, ReplicaDropout, TransformerBlock

PRIOR_METRICS = ("loss", "accuracy", "bits_per_image")


@keras.saving.register_keras_serializable(package="zoo")
class TransformerPrior(ZooModelMixin, MultiWorkerFitMixin, PresetMixin, keras.Model):
    """A decoder-only Transformer over the raster-ordered code grid (mini-DALL-E).

    The sequence is one condition token (a class id, or `num_classes` for
    "no condition") followed by the h*w codes of an image in raster order;
    position `t` predicts code `t`. Codes and conditions have their own token
    embeddings, and each code token adds a learned row and a learned column
    embedding of its grid position (DALL-E's layout); the condition token is
    always first and needs none. Pre-LayerNorm blocks with causal
    self-attention (`zoo.transformer.TransformerBlock`), a final LayerNorm
    and a dense head give logits over the `num_embeddings` codes.

    Training: `compile(optimizer=...)` and `fit(codes, labels)` (or a dataset
    of `(codes, labels)`), with codes int (N, h, w) and labels int (N,).
    The loss is the cross-entropy of every code position (nats per code);
    with probability `condition_dropout` a label is replaced by the "no
    condition" id, so one model samples conditionally, unconditionally and
    with classifier-free guidance. Metrics: `loss`, `accuracy` (of the most
    likely code) and `bits_per_image` (the negative log-likelihood of a whole
    grid in bits, to set beside the raw `h * w * log2(num_embeddings)`).

    Args:
        num_embeddings: int. K, the codebook size of the autoencoder.
        grid_shape: tuple. `(h, w)` of the code grid.
        num_classes: int. Number of classes; id `num_classes` means "no condition".
        embed_dim: int. Token width (the Transformer's model width, as in
            keras-hub; not the autoencoder's code size `embedding_dim`, which
            the prior never sees). Defaults to `128`.
        num_layers: int. Transformer blocks. Defaults to `2` (sampling speed; see
            BUILD_NOTES.md, "Default size").
        num_heads: int. Attention heads; must divide `embed_dim`. Defaults to `4`.
        mlp_dim: int. Hidden width of each block's MLP. Defaults to `512`.
        dropout: float. Dropout in the blocks and on the embeddings.
            Defaults to `0.1`.
        condition_dropout: float. Probability that a training label is
            replaced by "no condition". Defaults to `0.1`.
        seed: int. Seed of the condition dropout. Defaults to `0`.
        **kwargs: Standard `keras.Model` arguments (`name`; the
            precision is the global policy's).

    Example:
    >>> import numpy as np
    >>> from zoo import TransformerPrior
    >>> prior = TransformerPrior(num_embeddings=16, grid_shape=(4, 4), num_classes=3,
    ...                          embed_dim=32, num_layers=1, num_heads=2, mlp_dim=64)
    >>> codes = np.random.randint(0, 16, (64, 4, 4)).astype("int32")
    >>> labels = np.random.randint(0, 3, 64).astype("int32")
    >>> prior.compile(optimizer="adam")
    >>> history = prior.fit(codes, labels, epochs=1, batch_size=32, verbose=0)
    >>> tuple(prior.generate([0, 2], seed=0, top_k=8).shape)
    (2, 4, 4)

    References:
        - [Ramesh et al., 2021 (DALL-E)](https://arxiv.org/abs/2102.12092)
        - [Ho and Salimans, 2022 (classifier-free guidance)](https://arxiv.org/abs/2207.12598)
        - [Esser et al., 2021 (Taming Transformers)](https://arxiv.org/abs/2012.09841)
    """

    def __init__(
        self,
        num_embeddings: int,
        grid_shape: tuple[int, int],
        num_classes: int,
        embed_dim: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        mlp_dim: int = 512,
        dropout: float = 0.1,
        condition_dropout: float = 0.1,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**validation.model_kwargs(kwargs))
        self.num_embeddings = validation.positive_int("num_embeddings", num_embeddings)
        self.grid_shape = validation.grid_shape(grid_shape)
        self.num_classes = validation.positive_int("num_classes", num_classes)
        self.embed_dim = validation.positive_int("embed_dim", embed_dim)
        self.num_layers = validation.positive_int("num_layers", num_layers)
        self.num_heads = validation.positive_int("num_heads", num_heads)
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"`embed_dim` must be divisible by `num_heads`. "
                f"Received: embed_dim={embed_dim}, num_heads={num_heads}"
            )
        self.mlp_dim = validation.positive_int("mlp_dim", mlp_dim)
        self.dropout = validation.non_negative_float("dropout", dropout)
        self.condition_dropout = validation.non_negative_float(
            "condition_dropout", condition_dropout
        )
        if self.dropout >= 1 or self.condition_dropout >= 1:
            raise ValueError(
                "`dropout` and `condition_dropout` must be < 1. "
                f"Received: dropout={dropout}, condition_dropout={condition_dropout}"
            )
        self.seed = validation.check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.embedding = ConditionedGridEmbedding(
            num_embeddings, self.grid_shape, num_classes, embed_dim, name="embedding"
        )
        self.embedding_dropout = ReplicaDropout(self.dropout)
        self.blocks = [
            TransformerBlock(num_heads, mlp_dim, self.dropout, name=f"block_{i}")
            for i in range(num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")
        self.head = keras.layers.Dense(
            self.num_embeddings, kernel_initializer=_INITIALIZER, name="head"
        )
        self.trackers = {name: keras.metrics.Mean(name=name) for name in PRIOR_METRICS}
        self.build()

    @property
    def sequence_length(self) -> int:
        """L = h * w, the number of codes (and of positions) per image."""
        return self.grid_shape[0] * self.grid_shape[1]

    def build(self, input_shape=None):
        """Creates every weight from the config; `input_shape` is ignored."""
        sequence = (None, self.sequence_length, self.embed_dim)
        self.embedding.build((None, self.sequence_length))
        self.embedding_dropout.build(sequence)
        for block in self.blocks:
            block.build(sequence)
        self.final_norm.build(sequence)
        self.head.build(sequence)
        self.built = True

    def symbolic_build_inputs(self):
        h, w = self.grid_shape
        return (keras.KerasTensor((None, h, w), "int32"), keras.KerasTensor((None,), "int32"))

    # The network -------------------------------------------------------------

    def _head(self, x) -> tf.Tensor:
        return tf.cast(self.head(self.final_norm(x)), tf.float32)

    def sequence_logits(self, codes, conditions, training: bool = False) -> tf.Tensor:
        """Logits (B, L, K) of every position for flat codes (B, L) and conditions (B,).

        Position `t` sees the condition and the codes before `t`; the last
        code is never an input. No checks (see `logits`).
        """
        x = self.embedding_dropout(self.embedding(codes, conditions), training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return self._head(x)

    def call(self, inputs, training=False):
        """`(codes (B, h, w), labels (B,))` -> float32 logits (B, h, w, K)."""
        codes, labels = self._checked_pair(*inputs)
        flat = tf.reshape(codes, [-1, self.sequence_length])
        logits = self.sequence_logits(flat, labels, training=training)
        return tf.reshape(logits, [-1, *self.grid_shape, self.num_embeddings])

    # Public helpers -----------------------------------------------------------

    def logits(self, codes, labels=None) -> tf.Tensor:
        """Float32 logits (B, h, w, K) of every code given the codes before it.

        Args:
            codes: int (B, h, w) in [0, K).
            labels: int (B,) class ids, or `None` for "no condition".
                Defaults to `None`.

        Returns:
            float32 logits (B, h, w, K): `logits[:, i, j]` is the prediction
            of `codes[:, i, j]`.
        """
        codes = tensor_checks.check_codes(codes, self.num_embeddings)
        conditions = tensor_checks.condition_ids(labels, self.num_classes, tf.shape(codes)[0])
        return self((codes, conditions), training=False)

    def bits_per_image(self, codes, labels=None) -> tf.Tensor:
        """Negative log-likelihood of each code grid in bits, float32 (B,).

        Args:
            codes: int (B, h, w) in [0, K).
            labels: int (B,) class ids, or `None` for "no condition".
                Defaults to `None`.

        Returns:
            float32 (B,): the negative log-likelihood of each grid in bits.
        """
        logits = self.logits(codes, labels)
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(codes, tf.int32), logits)
        return tf.reduce_sum(nll, axis=[1, 2]) / math.log(2.0)

    # Training -------------------------------------------------------------------

    def _unpack(self, data):
        if not isinstance(data, (tuple, list)) or len(data) < 2:
            raise ValueError(
                "TransformerPrior trains on `(codes, labels)`: call `fit(codes, labels)` or "
                f"pass a dataset of pairs. Received: {type(data).__name__}"
            )
        codes, labels = self._checked_pair(data[0], data[1])
        return tf.reshape(codes, [-1, self.sequence_length]), labels

    def _checked_pair(self, codes, labels) -> tuple[tf.Tensor, tf.Tensor]:
        """Code grids (B, h, w) of this prior's `grid_shape` and their labels (B,), checked."""
        codes = tensor_checks.check_codes(codes, self.num_embeddings)
        labels = tensor_checks.check_labels(labels, self.num_classes)
        grid = tuple(codes.shape[1:3])
        message = (
            f"Codes must be grids of this prior's `grid_shape` {self.grid_shape}, "
            f"shape (batch, {self.grid_shape[0]}, {self.grid_shape[1]})."
        )
        if None not in grid and grid != self.grid_shape:
            raise ValueError(f"{message} Received shape {tuple(codes.shape)}.")
        batches = (codes.shape[0], labels.shape[0])
        if None not in batches and batches[0] != batches[1]:
            raise ValueError(
                f"`labels` must hold one class id per code grid. Received {batches[1]} labels "
                f"for {batches[0]} grids."
            )
        if None in grid:  # known only when the graph runs
            check = tf.debugging.assert_equal(tf.shape(codes)[1:3], self.grid_shape,
                                              message=message.rstrip("."))
            with tf.control_dependencies([check]):
                codes = tf.identity(codes)
        return codes, labels

    def _drop_conditions(self, labels):
        if self.condition_dropout == 0:
            return labels
        seed = distribution.replica_seed(self.seed_generator)
        drop = tf.random.stateless_uniform(tf.shape(labels), seed) < self.condition_dropout
        return tf.where(drop, self.num_classes, labels)

    def _terms(self, codes, conditions, training):
        logits = self.sequence_logits(codes, conditions, training=training)
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(codes, logits)  # (B, L)
        correct = tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == codes, tf.float32)
        return {
            "loss": tf.reduce_mean(nll, axis=1),
            "accuracy": tf.reduce_mean(correct, axis=1),
            "bits_per_image": tf.reduce_sum(nll, axis=1) / math.log(2.0),
        }

    def train_step(self, data):
        codes, labels = self._unpack(data)
        conditions = self._drop_conditions(labels)
        with tf.GradientTape() as tape:
            terms = self._terms(codes, conditions, training=True)
            loss = distribution.mean_over_global_batch(terms["loss"])
            scaled_loss = self.optimizer.scale_loss(loss)
        self._apply_gradients(tape, scaled_loss)
        return self._update_metrics(terms)

    def test_step(self, data):
        codes, labels = self._unpack(data)
        return self._update_metrics(self._terms(codes, labels, training=False))

    def _update_metrics(self, terms) -> dict:
        for name, tracker in self.trackers.items():
            tracker.update_state(terms[name])
        return self._logs_for_trainer({n: t.result() for n, t in self.trackers.items()})

    @property
    def metrics(self):
        return list(self.trackers.values())

    # Sampling ---------------------------------------------------------------------

    def generate(
        self,
        labels=None,
        temperature: float = 1.0,
        top_k: int | None = None,
        guidance_scale: float = 1.0,
        seed: int = 0,
        prefix=None,
        num_samples: int | None = None,
        use_cache: bool = True,
    ) -> tf.Tensor:
        """Samples code grids, one position at a time, in one compiled loop.

        Args:
            labels: int sequence (N,) of class ids (`num_classes` means no
                condition), or `None` to sample unconditionally. Defaults to
                `None`.
            temperature: float > 0. Divides the logits. Defaults to `1.0`.
            top_k: int or `None`. Sample among the `top_k` most likely codes;
                `None` or `0` keeps all. Defaults to `None`.
            guidance_scale: float. Classifier-free guidance: logits
                `u + guidance_scale * (c - u)` from the conditional (c) and
                unconditional (u) predictions, computed in one batch of 2N;
                `1.0` is plain conditional sampling. Defaults to `1.0`.
            seed: int. The same seed gives the same codes. Defaults to `0`.
            prefix: int (N, r, w) codes, or `None`. Completion: the first
                `r` rows are kept exactly and the rest is sampled. Defaults
                to `None`.
            num_samples: int or `None`. N when `labels` and `prefix` are
                `None`. Defaults to `None`.
            use_cache: bool. Use the key/value cache (`False` recomputes the
                whole sequence at each step: same samples in float32,
                slower; for tests and benchmarks). Under a `mixed_bfloat16`
                policy the two paths round the attention differently and a
                few codes differ. Defaults to `True`.

        Returns:
            int32 codes (N, h, w).

        Raises:
            ValueError: `labels`, `prefix` and `num_samples` disagree on N (or
                give none), a label or code out of range, a `prefix` of the
                wrong shape, or a bad `temperature`, `top_k` or `seed`.
        """
        return sampling.generate_codes(
            self, labels, temperature=temperature, top_k=top_k, guidance_scale=guidance_scale,
            seed=seed, prefix=prefix, num_samples=num_samples, use_cache=use_cache,
        )

    # Config -------------------------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_embeddings": self.num_embeddings,
            "grid_shape": list(self.grid_shape),
            "num_classes": self.num_classes,
            "embed_dim": self.embed_dim,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "dropout": self.dropout,
            "condition_dropout": self.condition_dropout,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
