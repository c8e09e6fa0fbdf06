"""The encoder and decoder of OpenAI's DALL-E dVAE (the `dall-e` package).

The layout follows `dall_e.Encoder` and `dall_e.Decoder` layer for layer, so
the released PyTorch weights map one to one onto these layers (see
`zoo.dalle_weights`). Four groups of residual blocks; a block is
`id_path(x) + post_gain * res_path(x)` with `post_gain = 1 / n_layers ** 2`
(`n_layers` = blocks in the whole stack) and `id_path` a 1x1 convolution when
the width changes. The encoder max-pools by 2 after each of its first three
groups, the decoder upsamples (nearest neighbour) by 2 after each of its
first three, so the latent grid is 1/8 of the image size (256 -> 32).

Every convolution is stride 1 with "same" padding, as PyTorch's
`padding=(k - 1) // 2` for the odd kernel sizes used here. Weights start as
DALL-E's do: normal with standard deviation `1 / sqrt(fan_in)`, zero biases.
"""

import keras

from zoo import distribution, validation

GROUP_COUNT = 4
"""Groups of residual blocks in each stack (fixed in DALL-E)."""

ENCODER_WIDTHS = (1, 2, 4, 8)
"""Width of each encoder group, in units of `n_hid`; the decoder's is the reverse."""


def _conv(filters: int, kernel_size: int, name: str, dtype=None) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        kernel_initializer=keras.initializers.VarianceScaling(
            1.0, mode="fan_in", distribution="untruncated_normal"
        ),
        name=name,
        dtype=dtype,
    )


@keras.saving.register_keras_serializable(package="zoo")
class DalleBlock(keras.layers.Layer):
    """Residual block of the DALL-E dVAE: `id_path(x) + post_gain * res_path(x)`.

    `res_path` is four (ReLU, convolution) pairs: `input_filters` ->
    `filters // 4` -> `filters // 4` -> `filters // 4` -> `filters`, with
    the kernel sizes `kernel_sizes` (`(3, 3, 3, 1)` in DALL-E's encoder,
    `(1, 3, 3, 3)` in its decoder). `id_path` is the identity when
    `input_filters == filters`, else a 1x1 convolution.

    Args:
        input_filters: int. Channels of the input.
        filters: int. Channels of the output; a multiple of 4.
        num_layers: int. Blocks in the whole stack; the residual branch is
            scaled by `1 / num_layers ** 2`.
        kernel_sizes: tuple of 4 odd ints. Kernel sizes of the residual
            branch. Defaults to `(3, 3, 3, 1)`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    >>> import keras
    >>> from zoo.dalle_blocks import DalleBlock
    >>> block = DalleBlock(16, 32, num_layers=8)
    >>> tuple(block(keras.ops.zeros((1, 8, 8, 16))).shape)
    (1, 8, 8, 32)

    References:
        - [Ramesh et al., 2021](https://arxiv.org/abs/2102.12092)
    """

    def __init__(
        self,
        input_filters: int,
        filters: int,
        num_layers: int,
        kernel_sizes=(3, 3, 3, 1),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_filters = validation.positive_int("input_filters", input_filters)
        self.filters = validation.positive_int("filters", filters)
        if filters % 4:
            raise ValueError(f"`filters` must be a multiple of 4. Received: filters={filters!r}")
        self.num_layers = validation.positive_int("num_layers", num_layers)
        self.kernel_sizes = tuple(kernel_sizes)
        if len(self.kernel_sizes) != 4 or not all(
            isinstance(k, int) and k > 0 and k % 2 for k in self.kernel_sizes
        ):
            raise ValueError(
                "`kernel_sizes` must be 4 odd positive ints. "
                f"Received: kernel_sizes={kernel_sizes!r}"
            )
        self.post_gain = 1.0 / self.num_layers**2
        hidden = filters // 4
        widths = (hidden, hidden, hidden, filters)
        policy = self.dtype_policy  # sublayers follow this layer's policy, as in Keras
        self.id_path = None if input_filters == filters else _conv(filters, 1, "id_path", policy)
        self.res_path = [
            _conv(width, k, f"conv_{i + 1}", policy)
            for i, (width, k) in enumerate(zip(widths, self.kernel_sizes, strict=True))
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.id_path is not None:
            self.id_path.build(shape)
        for conv in self.res_path:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)

    def call(self, x):
        identity = x if self.id_path is None else self.id_path(x)
        # The input's ReLU as `maximum(x, 0)`, as in `zoo.blocks.ResidualBlock`: `x` is the
        # previous block's add, which also feeds this block's identity, and Grappler's
        # remapper fails on a `Relu` of it ("remapper failed: ... fanout"), dropping every
        # fusion of the graph.
        h = keras.ops.maximum(x, 0)
        for i, conv in enumerate(self.res_path):
            h = conv(h if i == 0 else keras.ops.relu(h))
        return identity + self.post_gain * h

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "input_filters": self.input_filters,
            "filters": self.filters,
            "num_layers": self.num_layers,
            "kernel_sizes": list(self.kernel_sizes),
        }


class _DalleStack(keras.layers.Layer):
    """What the DALL-E encoder and decoder share: arguments, checks, config."""

    def __init__(self, output_channels: int, n_hid: int, n_blk_per_group: int, **kwargs):
        super().__init__(**kwargs)
        self.output_channels = validation.positive_int("output_channels", output_channels)
        self.n_hid = validation.positive_int("n_hid", n_hid)
        self.n_blk_per_group = validation.positive_int("n_blk_per_group", n_blk_per_group)

    def _make_blocks(self, input_filters: int, widths, kernel_sizes) -> list[DalleBlock]:
        """The blocks of the four groups, in order (`group_<g>_block_<i>`)."""
        num_layers = GROUP_COUNT * self.n_blk_per_group
        blocks = []
        for g, width in enumerate(widths):
            for i in range(self.n_blk_per_group):
                filters = width * self.n_hid
                blocks.append(
                    DalleBlock(
                        input_filters,
                        filters,
                        num_layers,
                        kernel_sizes,
                        name=f"group_{g + 1}_block_{i + 1}",
                        dtype=self.dtype_policy,
                    )
                )
                input_filters = filters
        return blocks

    def _ends_resampled_group(self, index: int) -> bool:
        """Whether block `index` ends one of the first three groups (then resample)."""
        last_of_group = (index + 1) % self.n_blk_per_group == 0
        return last_of_group and index + 1 < GROUP_COUNT * self.n_blk_per_group

    def _run_blocks(self, x, resample):
        for index, block in enumerate(self.blocks):
            x = block(x)
            if self._ends_resampled_group(index):
                x = resample(x)
        return x

    def _build_blocks(self, shape, rescale) -> tuple:
        for index, block in enumerate(self.blocks):
            block.build(shape)
            shape = block.compute_output_shape(shape)
            if self._ends_resampled_group(index):
                shape = (shape[0], rescale(shape[1]), rescale(shape[2]), shape[3])
        return shape

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[:3]
        return (batch, self._scale(height), self._scale(width), self.output_channels)

    def get_config(self):
        return {
            **super().get_config(),
            "output_channels": self.output_channels,
            "n_hid": self.n_hid,
            "n_blk_per_group": self.n_blk_per_group,
        }


@keras.saving.register_keras_serializable(package="zoo")
class DalleEncoder(_DalleStack):
    """The DALL-E dVAE encoder: images in [0, 1] -> logits over the codebook.

    The images are first mapped into [eps, 1 - eps] (`map_pixels` of
    `dall_e`), then: a 7x7 convolution to `n_hid` channels, four groups of
    `n_blk_per_group` blocks of widths `n_hid * (1, 2, 4, 8)` with a 2x max
    pool after the first three, a ReLU and a 1x1 convolution to
    `output_channels` logits. That last convolution runs in float32 under
    any dtype policy (as in `dall_e`): under mixed precision the features
    are bfloat16/float16 but the 8192 logits are not rounded to them.

    Args:
        output_channels: int. Codebook size K (DALL-E's `vocab_size`).
        n_hid: int. Width of the first group. Defaults to `256`.
        n_blk_per_group: int. Blocks per group. Defaults to `2`.
        logit_laplace_eps: float. The eps of `map_pixels`. Defaults to `0.1`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    >>> import keras
    >>> from zoo.dalle_blocks import DalleEncoder
    >>> encoder = DalleEncoder(512, n_hid=16, n_blk_per_group=1)
    >>> tuple(encoder(keras.ops.zeros((2, 64, 64, 3))).shape)
    (2, 8, 8, 512)
    """

    def __init__(
        self,
        output_channels: int,
        n_hid: int = 256,
        n_blk_per_group: int = 2,
        logit_laplace_eps: float = 0.1,
        **kwargs,
    ):
        super().__init__(output_channels, n_hid, n_blk_per_group, **kwargs)
        self.logit_laplace_eps = validation.positive_float("logit_laplace_eps", logit_laplace_eps)
        self.input_conv = _conv(n_hid, 7, "input", self.dtype_policy)
        self.blocks = self._make_blocks(n_hid, ENCODER_WIDTHS, (3, 3, 3, 1))
        self.pool = keras.layers.MaxPooling2D(2, name="pool", dtype=self.dtype_policy)
        self.output_conv = _conv(output_channels, 1, "output", dtype="float32")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.input_conv.build(shape)
        shape = self.input_conv.compute_output_shape(shape)
        shape = self._build_blocks(shape, lambda n: None if n is None else n // 2)
        self.output_conv.build(shape)

    def call(self, images):
        return distribution.on_shard(self._forward, images)  # an empty replica shard too

    def _forward(self, images):
        eps = self.logit_laplace_eps
        x = self.input_conv((1.0 - 2.0 * eps) * images + eps)
        x = self._run_blocks(x, self.pool)
        return self.output_conv(keras.ops.relu(x))

    def _scale(self, size):
        return None if size is None else size // 2 ** (GROUP_COUNT - 1)

    def get_config(self):
        return {**super().get_config(), "logit_laplace_eps": self.logit_laplace_eps}


@keras.saving.register_keras_serializable(package="zoo")
class DalleDecoder(_DalleStack):
    """The DALL-E dVAE decoder: code vectors -> logit-Laplace statistics.

    DALL-E's decoder starts with a 1x1 convolution over the one-hot code;
    that is a codebook lookup (the zoo's quantizer) plus a bias, and this
    layer is the rest: it adds the bias to the `n_init`-channel code vectors,
    then runs four groups of `n_blk_per_group` blocks of widths
    `n_hid * (8, 4, 2, 1)` with a 2x nearest-neighbour upsampling after the
    first three, a ReLU and a 1x1 convolution to `output_channels` (twice
    the image channels: the location logits first, then the log-scales).

    Args:
        output_channels: int. Output channels (2 x image channels).
        n_hid: int. Width of the last group. Defaults to `256`.
        n_blk_per_group: int. Blocks per group. Defaults to `2`.
        n_init: int. Channels of the code vectors (the codebook's
            `embedding_dim`). Defaults to `128`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    >>> import keras
    >>> from zoo.dalle_blocks import DalleDecoder
    >>> decoder = DalleDecoder(6, n_hid=16, n_blk_per_group=1, n_init=32)
    >>> tuple(decoder(keras.ops.zeros((2, 8, 8, 32))).shape)
    (2, 64, 64, 6)
    """

    def __init__(
        self,
        output_channels: int,
        n_hid: int = 256,
        n_blk_per_group: int = 2,
        n_init: int = 128,
        **kwargs,
    ):
        super().__init__(output_channels, n_hid, n_blk_per_group, **kwargs)
        self.n_init = validation.positive_int("n_init", n_init)
        self.blocks = self._make_blocks(n_init, ENCODER_WIDTHS[::-1], (1, 3, 3, 3))
        self.upsample = keras.layers.UpSampling2D(
            2, interpolation="nearest", name="upsample", dtype=self.dtype_policy
        )
        self.output_conv = _conv(output_channels, 1, "output", self.dtype_policy)

    def build(self, input_shape):
        shape = tuple(input_shape)
        if shape[-1] != self.n_init:
            raise ValueError(
                f"Expected code vectors with {self.n_init} channels (`n_init`). "
                f"Received input shape {shape}."
            )
        self.input_bias = self.add_weight(
            shape=(self.n_init,), initializer="zeros", name="input_bias"
        )
        shape = self._build_blocks(shape, lambda n: None if n is None else n * 2)
        self.output_conv.build(shape)

    def call(self, codes):
        return distribution.on_shard(self._forward, codes)  # an empty replica shard too

    def _forward(self, codes):
        x = codes + self.input_bias
        x = self._run_blocks(x, self.upsample)
        return self.output_conv(keras.ops.relu(x))

    def _scale(self, size):
        return None if size is None else size * 2 ** (GROUP_COUNT - 1)

    def get_config(self):
        return {**super().get_config(), "n_init": self.n_init}
