"""Quantizers: the discrete bottlenecks of the VQ-VAE and the dVAE.

Both follow one protocol:

- `quantizer(inputs, training=...)` takes a grid (B, h, w, D), or logits
  (B, h, w, K) for the dVAE, and returns a dict with at least
  `quantized` (B, h, w, D float32), `encoding_indices` (B, h, w int32) and the
  family's per-example loss terms (shape (B,)).
- `quantizer.lookup(indices)` is the inverse (not `quantize`, which
  `keras.layers.Layer` reserves for weight quantization): int32 codes -> code vectors.
- Every distance, softmax and statistic is computed in float32, so the layers
  are safe under a `mixed_float16` policy.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from zoo import distribution, validation


def code_histogram(indices: tf.Tensor, num_embeddings: int) -> tf.Tensor:
    """Counts of each code over the global batch (float32, shape (K,))."""
    flat = tf.reshape(indices, [-1])
    # A segment sum rather than `tf.math.bincount`, whose output size XLA
    # cannot know at compile time (it made `jit_compile=True` fail).
    counts = tf.math.unsorted_segment_sum(tf.ones_like(flat, tf.float32), flat, num_embeddings)
    return distribution.global_sum(counts)


def code_statistics(indices: tf.Tensor, num_embeddings: int) -> dict[str, tf.Tensor]:
    """Perplexity and codebook usage of `indices` over the global batch.

    Returns:
        A dict with `perplexity` (exp of the entropy of the code frequencies;
        K when all codes are used equally, 1 when one code is used) and
        `codebook_usage` (fraction of the K codes used at least once).
    """
    return histogram_statistics(code_histogram(indices, num_embeddings))


def histogram_statistics(counts: tf.Tensor) -> dict[str, tf.Tensor]:
    """`code_statistics` of a code histogram (float32 (K,), any positive scale)."""
    probs = counts / tf.maximum(tf.reduce_sum(counts), 1.0)
    entropy = -tf.reduce_sum(tf.math.multiply_no_nan(tf.math.log(probs), probs))
    return {
        "perplexity": tf.exp(entropy),
        "codebook_usage": tf.reduce_mean(tf.cast(counts > 0, tf.float32)),
    }


class CodeStatistic(keras.metrics.Metric):
    """`perplexity` or `codebook_usage` of every code seen since the last reset.

    The tracker of the discrete families' `perplexity` and `codebook_usage`
    in `fit` and `evaluate`: it sums the global-batch code histograms of the
    steps and reports the statistic of the sum, so an epoch's (or
    `evaluate`'s) figure is that of all its codes, as `trainers.evaluate`
    reports it, not a mean of per-batch perplexities (lower, and dependent on
    the batch size). Each replica adds the same all-reduced histogram, and a
    sum of them over replicas only rescales it, which changes neither
    statistic.

    Args:
        statistic: str. `"perplexity"` or `"codebook_usage"`; also the name.
        num_embeddings: int. The codebook size K.
    """

    def __init__(self, statistic: str, num_embeddings: int, **kwargs):
        super().__init__(name=statistic, **kwargs)
        self.statistic = statistic
        self.counts = self.add_variable(
            shape=(num_embeddings,), initializer="zeros", dtype="float32", name="counts"
        )

    def update_state(self, histogram):
        self.counts.assign_add(tf.cast(histogram, tf.float32))

    def result(self):
        return histogram_statistics(tf.convert_to_tensor(self.counts))[self.statistic]


class _OutputShapesFromSpec:
    """`compute_output_shape` from the layer's `compute_output_spec`.

    `Model.summary()` asks a built layer for its output shape; without this a
    quantizer's row read `?`.
    """

    def compute_output_shape(self, input_shape):
        spec = self.compute_output_spec(keras.KerasTensor(input_shape, "float32"))
        return {name: tensor.shape for name, tensor in spec.items()}


def _check_grid(shape, last: int, what: str) -> None:
    """Refuses a shape that is not (batch, h, w, `last`).

    The per-example terms are means or sums over the h and w axes, so any
    other rank would give terms that are not of shape (batch,). A shape of
    unknown rank (a graph traced without one) is left to the ops.
    """
    if getattr(shape, "rank", 0) is None:
        return
    shape = tuple(shape)
    if len(shape) != 4 or shape[-1] not in (None, last):
        raise ValueError(
            f"Expected {what} of shape (batch, h, w, {last}). Received shape {shape}."
        )


def _flatten(x: tf.Tensor) -> tf.Tensor:
    return tf.reshape(x, [-1, tf.shape(x)[-1]])


@keras.saving.register_keras_serializable(package="zoo")
class VectorQuantizer(_OutputShapesFromSpec, keras.layers.Layer):
    """Nearest-neighbour vector quantizer of the VQ-VAE.

    Each D-dimensional input vector is replaced by its nearest codebook entry
    (L2 distance). Gradients pass straight through:
    `z_e + stop_gradient(z_q - z_e)`. The per-example losses are the codebook
    loss `||sg(z_e) - z_q||^2` (absent with EMA updates, which move the
    codebook instead) and the commitment loss `||z_e - sg(z_q)||^2`, both
    averaged over positions and dimensions; the model weights the commitment
    loss by `commitment_cost`.

    With `use_ema=True` the codebook is a non-trainable variable updated by
    exponential moving averages of the assigned vectors (appendix A.1 of the
    paper, as in Sonnet's `VectorQuantizerEMA`). Counts and sums are
    all-reduced over replicas, so every replica holds the same codebook.
    With `dead_code_threshold > 0`, codes whose moving-average usage falls
    below it are restarted from random encoder outputs of the global batch.
    Both updates happen only with `training=True` and a trainable layer: a
    frozen quantizer (`trainable = False`) keeps its codebook, as a frozen
    `BatchNormalization` keeps its statistics.

    Args:
        num_embeddings: int. Codebook size K. Defaults to `512`.
        embedding_dim: int. Code vector size D. Defaults to `64`.
        use_ema: bool. Update the codebook by EMA rather than by gradient.
            Defaults to `True`.
        decay: float. EMA decay. Defaults to `0.99`.
        epsilon: float. Laplace smoothing of the EMA counts. Defaults to `1e-5`.
        dead_code_threshold: float. Restart codes whose EMA count (assignments
            per batch) is below this; `0` disables restarts. Defaults to `1.0`.
        seed: int. Seed of the restart sampling. Defaults to `0`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    >>> import keras
    >>> from zoo.quantizers import VectorQuantizer
    >>> vq = VectorQuantizer(num_embeddings=16, embedding_dim=4)
    >>> out = vq(keras.ops.ones((2, 7, 7, 4)))
    >>> print(out["quantized"].shape, out["encoding_indices"].shape)
    (2, 7, 7, 4) (2, 7, 7)

    References:
        - [van den Oord et al., 2017](https://arxiv.org/abs/1711.00937)
    """

    def __init__(
        self,
        num_embeddings: int = 512,
        embedding_dim: int = 64,
        use_ema: bool = True,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        dead_code_threshold: float = 1.0,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_embeddings = validation.positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = validation.positive_int("embedding_dim", embedding_dim)
        self.use_ema = validation.boolean("use_ema", use_ema)
        self.decay = validation.non_negative_float("decay", decay)
        if self.decay >= 1.0:
            raise ValueError(f"`decay` must be in [0, 1). Received: decay={decay!r}")
        self.epsilon = validation.positive_float("epsilon", epsilon)
        self.dead_code_threshold = validation.non_negative_float(
            "dead_code_threshold", dead_code_threshold
        )
        self.seed = validation.check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed, name="restart_seed")

    def build(self, input_shape=None):
        k, d = self.num_embeddings, self.embedding_dim
        # Variables written inside the replica context (EMA state, restarts)
        # are MEAN-aggregated: every replica writes the same all-reduced value.
        self.embeddings = self.add_weight(
            shape=(k, d),
            initializer=keras.initializers.VarianceScaling(1.0, "fan_in", "uniform"),
            trainable=not self.use_ema,
            aggregation="mean",
            autocast=False,
            name="embeddings",
        )
        # Counts start at one use per batch in both modes: at zero, the first
        # training step would see every code below `dead_code_threshold` and
        # restart the whole codebook, the codes in use included.
        self.ema_cluster_size = self.add_weight(
            shape=(k,), initializer="ones", trainable=False, aggregation="mean",
            autocast=False, name="ema_cluster_size",
        )
        if self.use_ema:
            self.ema_embedding_sum = self.add_weight(
                shape=(k, d), initializer="zeros", trainable=False, aggregation="mean",
                autocast=False, name="ema_embedding_sum",
            )
            self.ema_embedding_sum.assign(self.embeddings)

    def call(self, inputs, training=False):
        inputs = tf.cast(inputs, tf.float32)
        _check_grid(inputs.shape, self.embedding_dim, "inputs")
        codebook = tf.convert_to_tensor(self.embeddings)
        flat = _flatten(inputs)
        # ||x - e||^2 without ||x||^2, the same for every code of a row: the
        # argmin is unchanged, and the scaling by -2 is on the small codebook.
        distances = tf.matmul(flat, -2.0 * codebook, transpose_b=True) + tf.reduce_sum(
            codebook**2, axis=1
        )
        flat_indices = tf.argmin(distances, axis=1, output_type=tf.int32)
        indices = tf.reshape(flat_indices, tf.shape(inputs)[:-1])
        quantized = tf.gather(codebook, indices)
        axes = [1, 2, 3]
        commitment = tf.reduce_mean((inputs - tf.stop_gradient(quantized)) ** 2, axis=axes)
        codebook_loss = (
            tf.zeros_like(commitment)
            if self.use_ema
            else tf.reduce_mean((tf.stop_gradient(inputs) - quantized) ** 2, axis=axes)
        )
        if training and self.trainable:  # a frozen codebook stays as it is
            self._update_codebook(flat, flat_indices)
        return {
            "quantized": inputs + tf.stop_gradient(quantized - inputs),
            "encoding_indices": indices,
            "commitment_loss": commitment,
            "codebook_loss": codebook_loss,
        }

    def _update_codebook(self, flat, flat_indices):
        one_hot = tf.one_hot(flat_indices, self.num_embeddings, dtype=tf.float32)
        counts = distribution.global_sum(tf.reduce_sum(one_hot, axis=0))
        decay = self.decay
        cluster_size = decay * self.ema_cluster_size + (1.0 - decay) * counts
        if self.use_ema:
            sums = distribution.global_sum(tf.matmul(one_hot, flat, transpose_a=True))
            embedding_sum = decay * self.ema_embedding_sum + (1.0 - decay) * sums
            total = tf.reduce_sum(cluster_size)
            smoothed = (cluster_size + self.epsilon) / (
                total + self.num_embeddings * self.epsilon
            ) * total
            codebook = embedding_sum / smoothed[:, tf.newaxis]
        else:
            codebook = tf.convert_to_tensor(self.embeddings)
        if self.dead_code_threshold > 0:
            dead = cluster_size < self.dead_code_threshold
            candidates = distribution.global_concat(tf.stop_gradient(flat))
            picks = tf.random.stateless_uniform(
                [self.num_embeddings],
                seed=tf.cast(self.seed_generator.next(), tf.int32),
                maxval=tf.shape(candidates)[0],
                dtype=tf.int32,
            )
            restart = tf.gather(candidates, picks)
            codebook = tf.where(dead[:, tf.newaxis], restart, codebook)
            cluster_size = tf.where(dead, tf.ones_like(cluster_size), cluster_size)
            if self.use_ema:
                embedding_sum = tf.where(dead[:, tf.newaxis], restart, embedding_sum)
        self.ema_cluster_size.assign(cluster_size)
        if self.use_ema:
            self.ema_embedding_sum.assign(embedding_sum)
        if self.use_ema or self.dead_code_threshold > 0:
            self.embeddings.assign(codebook)

    def lookup(self, indices) -> tf.Tensor:
        """Maps int32 codes of shape (B, h, w) to code vectors (B, h, w, D)."""
        return tf.gather(tf.convert_to_tensor(self.embeddings), indices)

    def compute_output_spec(self, inputs, training=False):
        shape = tuple(inputs.shape)
        _check_grid(shape, self.embedding_dim, "inputs")
        return {
            "quantized": keras.KerasTensor(shape, "float32"),
            "encoding_indices": keras.KerasTensor(shape[:-1], "int32"),
            # One tensor per output: a shared one is a single node output in a
            # functional model, where both names would then read the same term.
            "commitment_loss": keras.KerasTensor(shape[:1], "float32"),
            "codebook_loss": keras.KerasTensor(shape[:1], "float32"),
        }

    def get_config(self):
        return {
            **super().get_config(),
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "use_ema": self.use_ema,
            "decay": self.decay,
            "epsilon": self.epsilon,
            "dead_code_threshold": self.dead_code_threshold,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="zoo")
class GumbelQuantizer(_OutputShapesFromSpec, keras.layers.Layer):
    """Relaxed categorical bottleneck of the DALL-E discrete VAE (dVAE).

    The inputs are logits over K codebook entries at each latent position.
    In training, a relaxed one-hot vector is drawn from
    `tfp.distributions.RelaxedOneHotCategorical(temperature, logits)` (the
    Gumbel-softmax), with stateless seeds from a `keras.random.SeedGenerator`
    folded with the replica id, so replicas draw different noise. The code is
    the probability-weighted sum of codebook vectors; the whole path is
    differentiable. With `straight_through=True` the forward pass uses the
    hard one-hot of the sample and the backward pass the relaxed one.
    In inference the code is the argmax of the logits: no noise.

    The temperature is a non-trainable variable (saved with the model), set
    during training by `trainers.callbacks.TemperatureAnnealing`.

    Args:
        num_embeddings: int. Codebook size K. Defaults to `512`.
        embedding_dim: int. Code vector size D. Defaults to `64`.
        temperature: float. Initial relaxation temperature. Defaults to `1.0`.
        straight_through: bool. Hard samples in the forward pass.
            Defaults to `False`.
        seed: int. Seed of the Gumbel noise. Defaults to `0`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    >>> import keras
    >>> from zoo.quantizers import GumbelQuantizer
    >>> gq = GumbelQuantizer(num_embeddings=16, embedding_dim=4)
    >>> out = gq(keras.ops.zeros((2, 7, 7, 16)))  # logits over 16 codes
    >>> print(out["quantized"].shape, out["encoding_indices"].shape)
    (2, 7, 7, 4) (2, 7, 7)

    References:
        - [Ramesh et al., 2021](https://arxiv.org/abs/2102.12092)
        - [Jang et al., 2017](https://arxiv.org/abs/1611.01144)
        - [Maddison et al., 2017](https://arxiv.org/abs/1611.00712)
    """

    def __init__(
        self,
        num_embeddings: int = 512,
        embedding_dim: int = 64,
        temperature: float = 1.0,
        straight_through: bool = False,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_embeddings = validation.positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = validation.positive_int("embedding_dim", embedding_dim)
        self.initial_temperature = validation.positive_float("temperature", temperature)
        self.straight_through = validation.boolean("straight_through", straight_through)
        self.seed = validation.check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed, name="gumbel_seed")

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            shape=(self.num_embeddings, self.embedding_dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            autocast=False,
            name="embeddings",
        )
        self.temperature = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.initial_temperature),
            trainable=False,
            autocast=False,
            name="temperature",
        )

    def sample(self, logits: tf.Tensor) -> tf.Tensor:
        """Draws relaxed one-hot samples (float32) for `logits` of shape (..., K)."""
        seed = distribution.replica_seed(self.seed_generator)

        def relaxed(batch):
            return tfp.distributions.RelaxedOneHotCategorical(
                tf.convert_to_tensor(self.temperature), logits=batch
            ).sample(seed=seed)

        soft = distribution.on_shard(relaxed, logits)  # TFP fails on an empty replica shard
        if not self.straight_through:
            return soft
        hard = tf.one_hot(tf.argmax(soft, axis=-1), self.num_embeddings, dtype=soft.dtype)
        return soft + tf.stop_gradient(hard - soft)

    def call(self, inputs, training=False):
        _check_grid(inputs.shape, self.num_embeddings, "logits")
        # The argmax of the logits as computed (a float32 cast is exact and
        # changes no order), so a bfloat16 model's codes need no cast.
        indices = tf.argmax(inputs, axis=-1, output_type=tf.int32)
        logits = tf.cast(inputs, tf.float32)
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        embeddings = tf.convert_to_tensor(self.embeddings)
        if training:
            quantized = tf.einsum("bhwk,kd->bhwd", self.sample(logits), embeddings)
        else:  # the argmax one-hot times the codebook: a lookup
            quantized = tf.gather(embeddings, indices)
        # KL(q || uniform) = sum_k q_k log q_k + log K, summed over positions.
        kl = tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=-1) + tf.math.log(
            float(self.num_embeddings)
        )
        return {
            "quantized": quantized,
            "encoding_indices": indices,
            "kl": tf.reduce_sum(kl, axis=[1, 2]),
            "probs": tf.exp(log_probs),
        }

    def lookup(self, indices) -> tf.Tensor:
        """Maps int32 codes of shape (B, h, w) to code vectors (B, h, w, D)."""
        return tf.gather(tf.convert_to_tensor(self.embeddings), indices)

    def compute_output_spec(self, inputs, training=False):
        shape = tuple(inputs.shape)
        _check_grid(shape, self.num_embeddings, "logits")
        return {
            "quantized": keras.KerasTensor((*shape[:-1], self.embedding_dim), "float32"),
            "encoding_indices": keras.KerasTensor(shape[:-1], "int32"),
            "kl": keras.KerasTensor(shape[:1], "float32"),
            "probs": keras.KerasTensor(shape, "float32"),
        }

    def get_config(self):
        return {
            **super().get_config(),
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "temperature": self.initial_temperature,
            "straight_through": self.straight_through,
            "seed": self.seed,
        }
