"""Decoder-only Transformer layers, and their one-token-per-step view for sampling.

`TransformerBlock` is minGPT's block (LayerNorm -> causal self-attention ->
residual, LayerNorm -> MLP -> residual). Its attention is written here rather
than taken from `keras.layers.MultiHeadAttention`: one fused query/key/value
projection is one matmul instead of three, and `CachedDecoder` reads that
projection's weights directly (keras-hub's `CachedMultiHeadAttention` has to
reach into `MultiHeadAttention`'s private sublayers for its cache).

`CachedDecoder` runs one token per step through the embedding, the blocks,
the final LayerNorm and the head of a `zoo.TransformerPrior`, with a
key/value cache, in plain TensorFlow ops on the layers' weights: the body of
the sampling loop (`zoo.sampling`).
"""

import math

import keras
import tensorflow as tf
from keras import ops

from zoo import distribution, validation

_INITIALIZER = {"class_name": "RandomNormal", "config": {"stddev": 0.02}}
"""GPT-2 / minGPT initialisation of every matrix and embedding."""

_MASKED = -1e9


@keras.saving.register_keras_serializable(package="zoo")
class ReplicaDropout(keras.layers.Dropout):
    """`keras.layers.Dropout` that drops different units on each `tf.distribute` replica.

    Keras's layer draws its seed from a `keras.random.SeedGenerator` whose state
    every replica shares, so under `MirroredStrategy` (or multi-worker) each
    replica drops the same positions of its shard of the batch. Here replica
    `r` folds `r` into the seed (`zoo.distribution.replica_seed`), as the zoo's
    other noise does; on one device (and replica 0) the masks are Keras's.

    Args:
        rate: float. Fraction of the inputs to drop, in [0, 1).
        **kwargs: Standard `keras.layers.Dropout` arguments (`noise_shape`,
            `seed`, `name`).

    Example:
    >>> import keras
    >>> from zoo.transformer import ReplicaDropout
    >>> layer = ReplicaDropout(0.5, seed=1)
    >>> tuple(layer(keras.ops.ones((2, 4)), training=True).shape)
    (2, 4)
    """

    def __init__(self, rate: float, **kwargs):
        super().__init__(rate, **kwargs)
        if self.rate >= 1:  # Keras takes 1 (drop everything); the stateless op does not
            raise ValueError(f"`rate` must be in [0, 1). Received: rate={rate!r}")

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        noise_shape = None
        if self.noise_shape is not None:  # None entries: the input's size, as in Keras
            shape = tf.shape(inputs)
            noise_shape = [shape[i] if size is None else size
                           for i, size in enumerate(self.noise_shape)]
        seed = distribution.replica_seed(self.seed_generator)
        return tf.nn.experimental.stateless_dropout(
            inputs, rate=self.rate, noise_shape=noise_shape, seed=seed
        )


@keras.saving.register_keras_serializable(package="zoo")
class CausalSelfAttention(keras.layers.Layer):
    """Multi-head causal self-attention: position `i` attends to positions `<= i`.

    `x` is (batch, length, dim). One-token steps with a key/value cache are
    `CachedDecoder`'s, on this layer's weights.

    Args:
        num_heads: int. Attention heads; must divide the input dimension.
        dropout: float. Dropout on the attention weights. Defaults to `0.0`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    >>> import keras
    >>> from zoo.transformer import CausalSelfAttention
    >>> layer = CausalSelfAttention(num_heads=2)
    >>> tuple(layer(keras.ops.zeros((1, 5, 8))).shape)
    (1, 5, 8)

    References:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    def __init__(self, num_heads: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = validation.positive_int("num_heads", num_heads)
        self.dropout = validation.non_negative_float("dropout", dropout)
        # Sublayers follow this layer's dtype policy, as in Keras's own layers.
        self.attention_dropout = ReplicaDropout(self.dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ValueError(
                f"The input dimension must be divisible by `num_heads`={self.num_heads}. "
                f"Received input shape {tuple(input_shape)}."
            )
        self.head_dim = dim // self.num_heads
        self.qkv = keras.layers.Dense(
            3 * dim, kernel_initializer=_INITIALIZER, name="qkv", dtype=self.dtype_policy
        )
        self.qkv.build(input_shape)
        self.projection = keras.layers.Dense(
            dim, kernel_initializer=_INITIALIZER, name="projection", dtype=self.dtype_policy
        )
        self.projection.build(input_shape)
        self.attention_dropout.build(None)

    def call(self, x, training=False):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        qkv = ops.reshape(self.qkv(x), (batch, length, 3, self.num_heads, self.head_dim))
        query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        positions = ops.arange(length)
        allowed = positions[None, :] <= positions[:, None]  # (query, key)
        scores = ops.einsum("bqhd,bkhd->bhqk", query, key)
        scores = ops.cast(scores, "float32") / math.sqrt(self.head_dim)
        scores = ops.where(allowed[None, None], scores, _MASKED)
        weights = self.attention_dropout(ops.softmax(scores, axis=-1), training=training)
        attended = ops.einsum("bhqk,bkhd->bqhd", ops.cast(weights, value.dtype), value)
        return self.projection(ops.reshape(attended, (batch, length, -1)))

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="zoo")
class TransformerBlock(keras.layers.Layer):
    """Pre-LayerNorm decoder block: causal attention and a GELU MLP, each residual.

    Args:
        num_heads: int. Attention heads.
        mlp_dim: int. Hidden width of the MLP.
        dropout: float. Dropout after attention and MLP (and on attention
            weights). Defaults to `0.0`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    >>> import keras
    >>> from zoo.transformer import TransformerBlock
    >>> block = TransformerBlock(num_heads=2, mlp_dim=32)
    >>> tuple(block(keras.ops.zeros((1, 5, 8))).shape)
    (1, 5, 8)

    References:
        - [Radford et al., 2019 (GPT-2)](https://openai.com/research/better-language-models)
        - [minGPT](https://github.com/karpathy/minGPT)
    """

    def __init__(self, num_heads: int, mlp_dim: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = validation.positive_int("num_heads", num_heads)
        self.mlp_dim = validation.positive_int("mlp_dim", mlp_dim)
        self.dropout = validation.non_negative_float("dropout", dropout)
        policy = self.dtype_policy  # sublayers follow this layer's policy, as in Keras
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=1e-5, name="attention_norm", dtype=policy
        )
        self.attention = CausalSelfAttention(num_heads, dropout, name="attention", dtype=policy)
        self.mlp_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="mlp_norm", dtype=policy)
        self.residual_dropout = ReplicaDropout(self.dropout, dtype=policy)

    def build(self, input_shape):
        dim = input_shape[-1]
        self.mlp_in = keras.layers.Dense(
            self.mlp_dim, activation="gelu", kernel_initializer=_INITIALIZER, name="mlp_in",
            dtype=self.dtype_policy,
        )
        self.mlp_out = keras.layers.Dense(
            dim, kernel_initializer=_INITIALIZER, name="mlp_out", dtype=self.dtype_policy
        )
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_in.build(input_shape)
        self.mlp_out.build((*input_shape[:-1], self.mlp_dim))
        self.residual_dropout.build(None)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x, training=False):
        attended = self.attention(self.attention_norm(x), training=training)
        return self._mlp(x + self.residual_dropout(attended, training=training), training)

    def _mlp(self, x, training):
        hidden = self.mlp_out(self.mlp_in(self.mlp_norm(x)))
        return x + self.residual_dropout(hidden, training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package="zoo")
class ConditionedGridEmbedding(keras.layers.Layer):
    """Embeds the sequence `[condition, c_0, ..., c_{L-2}]` of a code grid in raster order.

    Input position 0 is the condition token (a class id, or `num_classes`
    for "no condition"); input position `t > 0` is code `t - 1`, plus the
    learned embeddings of its row and its column (DALL-E's layout for image
    tokens). The condition is always first, so it needs no position.

    Args:
        num_embeddings: int. K, the number of codes.
        grid_shape: tuple. `(h, w)` of the code grid.
        num_classes: int. Class ids `[0, num_classes]` (the last: no condition).
        embed_dim: int. Token width.
        **kwargs: Standard `keras.layers.Layer` arguments.
    """

    def __init__(self, num_embeddings, grid_shape, num_classes, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.num_embeddings = validation.positive_int("num_embeddings", num_embeddings)
        self.grid_shape = validation.grid_shape(grid_shape)
        self.num_classes = validation.positive_int("num_classes", num_classes)
        self.embed_dim = validation.positive_int("embed_dim", embed_dim)
        sizes = {
            "code": num_embeddings,
            "condition": num_classes + 1,
            "row": self.grid_shape[0],
            "column": self.grid_shape[1],
        }
        self.tables = {
            key: keras.layers.Embedding(
                size, embed_dim, embeddings_initializer=_INITIALIZER, name=f"{key}_embedding",
                dtype=self.dtype_policy,
            )
            for key, size in sizes.items()
        }

    def build(self, input_shape=None):
        for table in self.tables.values():
            table.build((None,))

    def compute_output_shape(self, input_shape):
        """Flat codes (B, L) -> tokens (B, L, d)."""
        return (*input_shape[:2], self.embed_dim)

    def positions(self):
        """(L, d): row + column embedding of every grid position in raster order."""
        h, w = self.grid_shape
        rows = ops.repeat(ops.arange(h), w)
        columns = ops.tile(ops.arange(w), [h])
        return self.tables["row"](rows) + self.tables["column"](columns)

    def call(self, codes, conditions):
        """Flat codes (B, L) and conditions (B,) -> input tokens (B, L, d)."""
        tokens = self.tables["code"](codes[:, :-1]) + self.positions()[:-1]
        condition = self.tables["condition"](conditions)[:, None, :]
        return ops.concatenate([condition, tokens], axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "num_embeddings": self.num_embeddings,
            "grid_shape": list(self.grid_shape),
            "num_classes": self.num_classes,
            "embed_dim": self.embed_dim,
        }


def _layer_norm(x, gamma, beta, epsilon):
    """`keras.layers.LayerNormalization` on the last axis: the same formula, in plain ops."""
    dtype = x.dtype
    x = tf.cast(x, tf.float32)  # statistics in float32 at least, as in Keras
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    variance = tf.reduce_mean(tf.math.squared_difference(x, mean), axis=-1, keepdims=True)
    inv = tf.math.rsqrt(variance + epsilon) * gamma
    return tf.cast(x * inv + (beta - mean * inv), dtype)


class CachedDecoder:
    """One token per step through a `zoo.TransformerPrior`'s network, with a key/value cache.

    The body of the sampling loop (`zoo.sampling`). Created inside the
    `tf.function` before the loop, it reads every weight once (tensors of the
    compute dtype; LayerNorm parameters in float32) and the position
    embeddings, so that a step is a chain of plain TensorFlow ops on rank-2
    tokens (B, d): no Keras layer call, autocast scope or variable read in the
    loop. At batch 1 a step is ~50 tiny ops per block, and their number and
    kind set the latency. The formulas are the layers' own, so the logits
    equal `TransformerPrior.call`'s to rounding.

    The cache is one buffer of shape (2 * blocks * L, B * embed_dim) from
    `tf.raw_ops.Empty`, one row per position: block n's keys are rows
    [2nL, 2nL + L) and its values the next L rows. A step writes its two rows
    per block with `tf.raw_ops.InplaceUpdate` (in place: no copy of the
    cache) and reads positions 0..t as a `tf.slice` of leading rows (a view),
    so the token attends to exactly the positions so far, with no mask, and
    rows not yet written are never read. In place is safe because each
    update's input is the previous update's output and its new rows depend
    on every earlier read of the buffer, and each call allocates its own.
    Attention is a broadcast multiply and sum over the (t + 1, B, heads,
    head_dim) rows, with the softmax written out: oneDNN's `BatchMatMul` and
    `Softmax` kernels cost ~80 us each per call at batch 1 on this CPU.

    Args:
        prior: a `zoo.TransformerPrior` (its `embedding`, `blocks`,
            `final_norm` and `head`).
        rows: int32 scalar tensor. B, the batch of the sampling loop.

    Example:
    >>> import tensorflow as tf, zoo
    >>> from zoo.transformer import CachedDecoder
    >>> prior = zoo.TransformerPrior(num_embeddings=16, grid_shape=(2, 2), num_classes=3,
    ...                              embed_dim=8, num_layers=1, num_heads=2, mlp_dim=16)
    >>> conditions = tf.constant([0, 2])
    >>> decoder = CachedDecoder(prior, tf.shape(conditions)[0])
    >>> tokens, cache = decoder.condition_tokens(conditions), decoder.empty_cache()
    >>> step = tf.constant(0)  # the loop's step counter
    >>> logits, cache = decoder(tokens, cache, step)  # logits (B, K) of code 0
    >>> tuple(logits.shape)
    (2, 16)
    >>> tokens = decoder.code_tokens(tf.argmax(logits, -1, output_type=tf.int32), step)
    """

    def __init__(self, prior, rows):
        dtype = prior.compute_dtype

        def read(variable, to=dtype):  # a tensor: the loop must not re-read the variable
            return tf.cast(tf.convert_to_tensor(variable.value), to)

        def dense(layer):
            return read(layer.kernel), read(layer.bias), layer.activation

        def norm(layer):
            return read(layer.gamma, tf.float32), read(layer.beta, tf.float32), layer.epsilon

        tables = prior.embedding.tables
        self.condition_table = read(tables["condition"].embeddings)
        self.code_table = read(tables["code"].embeddings)
        self.positions = tf.cast(prior.embedding.positions(), dtype)
        self.num_heads = prior.num_heads
        self.head_dim = prior.embed_dim // prior.num_heads
        self.blocks = [
            {
                "attention_norm": norm(block.attention_norm),
                "qkv": dense(block.attention.qkv),
                "projection": dense(block.attention.projection),
                "mlp_norm": norm(block.mlp_norm),
                "mlp_in": dense(block.mlp_in),
                "mlp_out": dense(block.mlp_out),
            }
            for block in prior.blocks
        ]
        # The cache is one (2 * blocks * L, B * heads * head_dim) buffer updated
        # in place, a row per position: block n's keys are rows [2n L, 2n L + L),
        # its values the next L rows.
        self.length = prior.sequence_length
        self.rows = rows
        self.row_size = rows * prior.embed_dim
        self.final_norm = norm(prior.final_norm)
        self.head = dense(prior.head)
        self.dtype = dtype

    def condition_tokens(self, conditions):
        """The input tokens (B, d) at position 0: the conditions' embeddings."""
        return tf.gather(self.condition_table, conditions)

    def code_tokens(self, codes, index):
        """The input tokens (B, d) at position `index + 1`: codes (B,) at raster `index`."""
        return tf.gather(self.code_table, codes) + tf.gather(self.positions, index)

    def empty_cache(self):
        """The cache before the first step: one buffer, uninitialised (written before read)."""
        shape = tf.stack([2 * len(self.blocks) * self.length, self.row_size])
        return tf.raw_ops.Empty(shape=shape, dtype=self.dtype)

    def __call__(self, x, cache, index):
        """Runs tokens `x` (B, d) at position `index`.

        Args:
            x: (B, d) input tokens (`condition_tokens` at 0, then `code_tokens`).
            cache: `empty_cache()` at 0, then the cache this call returned.
            index: int32 scalar.

        Returns:
            Float32 logits (B, K) of code `index`, and the updated cache.
        """
        seen = tf.stack([index + 1, self.row_size])  # the rows of positions 0..index
        view = tf.stack([index + 1, self.rows, self.num_heads, self.head_dim])
        for number, weights in enumerate(self.blocks):
            normed = _layer_norm(x, *weights["attention_norm"])
            attended, cache = self._attention(normed, weights, cache, number, index, seen, view)
            x = x + _dense(attended, weights["projection"])
            hidden = _dense(_layer_norm(x, *weights["mlp_norm"]), weights["mlp_in"])
            x = x + _dense(hidden, weights["mlp_out"])
        logits = _dense(_layer_norm(x, *self.final_norm), self.head)
        return tf.cast(logits, tf.float32), cache

    def _attention(self, x, weights, cache, number, index, seen, view):
        heads, head_dim = self.num_heads, self.head_dim
        query, key, value = tf.split(_dense(x, weights["qkv"]), 3, axis=1)  # (B, d) each
        query = tf.reshape(query, [-1, heads, head_dim])
        new = tf.reshape(tf.concat([key, value], axis=0), [2, -1])  # a key row, a value row
        first = 2 * number * self.length
        cache = tf.raw_ops.InplaceUpdate(x=cache, i=[first, first + self.length] + index, v=new)
        keys = tf.reshape(tf.slice(cache, [first, 0], seen), view)  # (index + 1, B, heads, hd)
        values = tf.reshape(tf.slice(cache, [first + self.length, 0], seen), view)
        scores = tf.reduce_sum(keys * query, axis=-1)  # (index + 1, B, heads)
        scores = tf.cast(scores, tf.float32) / math.sqrt(head_dim)
        scores = tf.exp(scores - tf.reduce_max(scores, axis=0))
        probs = tf.cast(scores / tf.reduce_sum(scores, axis=0), values.dtype)
        attended = tf.reduce_sum(probs[..., None] * values, axis=0)  # (B, heads, head_dim)
        return tf.reshape(attended, [-1, heads * head_dim]), cache


def _dense(x, weights):
    """`keras.layers.Dense` on rank-2 `x` with `(kernel, bias, activation)`."""
    kernel, bias, activation = weights
    return activation(tf.matmul(x, kernel) + bias)
