"""Decoder-only Transformer layers with a fixed-size key/value cache.

`TransformerBlock` is minGPT's block (LayerNorm -> causal self-attention ->
residual, LayerNorm -> MLP -> residual). Its attention is written here rather
than taken from `keras.layers.MultiHeadAttention` because sampling needs
`call_with_cache(x, cache, index)`: one new token attends to key and value
tensors of fixed shape `(batch, heads, length, head_dim)` updated at `index`
(keras-hub's `CachedMultiHeadAttention` gets this by reaching into
`MultiHeadAttention`'s private sublayers). One fused query/key/value
projection is also one matmul instead of three per step, which matters at
batch 1 where a sampling step is a chain of tiny ops.
"""

import math

import keras
import tensorflow as tf
from keras import ops

from zoo import validation

_INITIALIZER = {"class_name": "RandomNormal", "config": {"stddev": 0.02}}
"""GPT-2 / minGPT initialisation of every matrix and embedding."""

_MASKED = -1e9


@keras.saving.register_keras_serializable(package="zoo")
class CausalSelfAttention(keras.layers.Layer):
    """Multi-head causal self-attention with an optional key/value cache.

    Without a cache, position `i` of `x` (batch, length, dim) attends to
    positions `<= i`. With a cache, `x` is one token (batch, 1, dim) at
    position `index`; its key and value are written into the cache at
    `index` and it attends to cached positions `<= index`.

    Args:
        num_heads: int. Attention heads; must divide the input dimension.
        dropout: float. Dropout on the attention weights. Defaults to `0.0`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    >>> layer = CausalSelfAttention(num_heads=2)
    >>> layer(keras.ops.zeros((1, 5, 8))).shape
    (1, 5, 8)

    References:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    def __init__(self, num_heads: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = validation.positive_int("num_heads", num_heads)
        self.dropout = validation.non_negative_float("dropout", dropout)
        self.attention_dropout = keras.layers.Dropout(self.dropout)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ValueError(
                f"The input dimension must be divisible by `num_heads`={self.num_heads}. "
                f"Received input shape {tuple(input_shape)}."
            )
        self.head_dim = dim // self.num_heads
        self.qkv = keras.layers.Dense(3 * dim, kernel_initializer=_INITIALIZER, name="qkv")
        self.qkv.build(input_shape)
        self.projection = keras.layers.Dense(
            dim, kernel_initializer=_INITIALIZER, name="projection"
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

    def call_with_cache(self, x, cache, index):
        """Attention of one token `x` (B, dim) at position `index`, in inference.

        Args:
            x: (B, dim). The token at position `index` (rank 2: a Dense layer on
                rank-3 input runs as a tensordot, about ten ops instead of two).
            cache: `(keys, values)`, each (B, heads, length, head_dim); the
                positions before `index` hold the earlier tokens' keys and values.
            index: int32 scalar.

        Returns:
            `(output (B, dim), cache)` with this token's key and value
            written at `index` (`tf.tensor_scatter_nd_update`, which reuses
            the cache's buffer when it can instead of copying it).
        """
        batch = tf.shape(x)[0]
        qkv = tf.reshape(self.qkv(x), [batch, 3, self.num_heads, 1, self.head_dim])
        query, key, value = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # (B, heads, 1, head_dim)
        rows = tf.stack(
            tf.meshgrid(tf.range(batch), tf.range(self.num_heads), indexing="ij"), axis=-1
        )
        rows = tf.concat([rows, tf.fill([batch, self.num_heads, 1], index)], axis=-1)
        keys = tf.tensor_scatter_nd_update(cache[0], rows, tf.cast(key[:, :, 0], cache[0].dtype))
        values = tf.tensor_scatter_nd_update(
            cache[1], rows, tf.cast(value[:, :, 0], cache[1].dtype)
        )
        scores = tf.matmul(query, keys, transpose_b=True)  # (B, heads, 1, length)
        scores = tf.cast(scores, tf.float32) / math.sqrt(self.head_dim)
        allowed = tf.range(tf.shape(keys)[2]) <= index
        scores = tf.where(allowed, scores, _MASKED)
        weights = tf.cast(tf.nn.softmax(scores, axis=-1), values.dtype)
        attended = tf.matmul(weights, values)  # (B, heads, 1, head_dim)
        output = self.projection(tf.reshape(attended, [batch, -1]))
        return output, (keys, values)

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
    >>> block = TransformerBlock(num_heads=2, mlp_dim=32)
    >>> block(keras.ops.zeros((1, 5, 8))).shape
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
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="attention_norm")
        self.attention = CausalSelfAttention(num_heads, dropout, name="attention")
        self.mlp_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="mlp_norm")
        self.residual_dropout = keras.layers.Dropout(self.dropout)

    def build(self, input_shape):
        dim = input_shape[-1]
        self.mlp_in = keras.layers.Dense(
            self.mlp_dim, activation="gelu", kernel_initializer=_INITIALIZER, name="mlp_in"
        )
        self.mlp_out = keras.layers.Dense(dim, kernel_initializer=_INITIALIZER, name="mlp_out")
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_in.build(input_shape)
        self.mlp_out.build((*input_shape[:-1], self.mlp_dim))
        self.residual_dropout.build(None)

    def call(self, x, training=False):
        attended = self.attention(self.attention_norm(x), training=training)
        return self._mlp(x + self.residual_dropout(attended, training=training), training)

    def call_with_cache(self, x, cache, index):
        """One token (B, dim) at position `index`; returns `(x, cache)` (see the attention)."""
        attended, cache = self.attention.call_with_cache(self.attention_norm(x), cache, index)
        return self._mlp(x + attended, training=False), cache

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
        self.grid_shape = tuple(grid_shape)
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
                size, embed_dim, embeddings_initializer=_INITIALIZER, name=f"{key}_embedding"
            )
            for key, size in sizes.items()
        }

    def build(self, input_shape=None):
        for table in self.tables.values():
            table.build((None,))

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

    def step(self, previous_codes, conditions, index):
        """The input token (B, d) at position `index` (codes `previous_codes` at index-1)."""
        previous = ops.maximum(index - 1, 0)
        row, column = previous // self.grid_shape[1], previous % self.grid_shape[1]
        position = self.tables["row"](row) + self.tables["column"](column)
        code = self.tables["code"](previous_codes) + position
        return ops.where(index == 0, self.tables["condition"](conditions), code)

    def get_config(self):
        return {
            **super().get_config(),
            "num_embeddings": self.num_embeddings,
            "grid_shape": list(self.grid_shape),
            "num_classes": self.num_classes,
            "embed_dim": self.embed_dim,
        }
