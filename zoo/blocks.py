"""Convolutional building blocks shared by every autoencoder family.

The encoder halves the spatial size `num_downsamples` times with strided
convolutions and the decoder doubles it back with transposed ones, so the
networks are fully convolutional: any height and width divisible by
`2 ** num_downsamples` works.

Layout arguments added after the first models were shipped
(`strided_stem`, `resample_kernel_size`, `residual_hidden_ratio`,
`separable_residual`) default to the layout chosen by the efficiency
benchmark (`bench/layouts.py`). A config saved without them describes the
original layout: `from_config` fills the missing keys from `LEGACY_LAYOUT`, so
existing `.keras` files load with the architecture they were trained with.
"""

import keras

from zoo import distribution, validation
from zoo.convolutions import PointwiseConv2D, SubpixelConv2DTranspose

LEGACY_LAYOUT = {
    "strided_stem": False,
    "resample_kernel_size": 4,
    "residual_hidden_ratio": 0.5,
    "separable_residual": False,
}
"""The values of the layout arguments in configs written before they existed."""


def with_legacy_layout(config: dict) -> dict:
    """Returns `config` with the layout keys it lacks set to `LEGACY_LAYOUT`."""
    return {**LEGACY_LAYOUT, **config}


@keras.saving.register_keras_serializable(package="zoo")
class ResidualBlock(keras.layers.Layer):
    """Pre-activation residual block: `x + conv1x1(relu(conv3x3(relu(x))))`.

    This is the block of the VQ-VAE paper (van den Oord et al., 2017). It keeps
    the number of channels, so blocks can be stacked freely.

    The input's ReLU is written `maximum(x, 0)`: when blocks are stacked,
    `x` is the previous block's `conv + bias + add`, which also feeds this
    block's residual add. Grappler's remapper fuses a `Relu` of that add into
    the convolution although the add has a second consumer, then fails
    ("remapper failed: ... fanout ... exist for missing node .../add") and
    drops every fusion of the graph. `maximum` is the same function and is
    not matched, so the remapper fuses `conv + bias + add` and the rest of the
    graph (see `bench/remapper.py` for the speed difference).

    Args:
        filters: int. Number of input and output channels.
        hidden_filters: int or `None`. Channels of the inner 3x3 convolution.
            Defaults to `filters // 2`.
        separable: bool. Depthwise-separable inner 3x3 convolution.
            Defaults to `False`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    >>> import keras
    >>> from zoo.blocks import ResidualBlock
    >>> block = ResidualBlock(32)
    >>> print(block(keras.ops.zeros((1, 7, 7, 32))).shape)
    (1, 7, 7, 32)
    """

    def __init__(
        self, filters: int, hidden_filters: int | None = None, separable: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        self.filters = validation.positive_int("filters", filters)
        if hidden_filters is None:
            hidden_filters = max(self.filters // 2, 1)
        self.hidden_filters = validation.positive_int("hidden_filters", hidden_filters)
        self.separable = validation.boolean("separable", separable)
        conv = keras.layers.SeparableConv2D if separable else keras.layers.Conv2D
        policy = self.dtype_policy  # sublayers follow this layer's policy, as in Keras
        self.conv_in = conv(self.hidden_filters, 3, padding="same", name="conv_in", dtype=policy)
        self.conv_out = PointwiseConv2D(self.filters, name="conv_out", dtype=policy)

    def build(self, input_shape):
        if input_shape[-1] not in (None, self.filters):
            raise ValueError(
                f"A ResidualBlock keeps its channel count: expected inputs with {self.filters} "
                f"channels (`filters`). Received input shape {tuple(input_shape)}."
            )
        self.conv_in.build(input_shape)
        self.conv_out.build((*input_shape[:-1], self.hidden_filters))

    def call(self, x):
        h = self.conv_in(keras.ops.maximum(x, 0))
        return x + self.conv_out(keras.ops.relu(h))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "hidden_filters": self.hidden_filters,
            "separable": self.separable,
        }


def _stage_filters(filters: int, stage: int, max_filters: int) -> int:
    return min(filters * 2**stage, max_filters)


class _ConvStack(keras.layers.Layer):
    """What `Encoder` and `Decoder` share: arguments, their checks and config."""

    def __init__(
        self,
        output_channels: int,
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
        super().__init__(**kwargs)
        self.output_channels = validation.positive_int("output_channels", output_channels)
        self.filters = validation.positive_int("filters", filters)
        self.num_downsamples = validation.non_negative_int("num_downsamples", num_downsamples)
        self.num_res_blocks = validation.non_negative_int("num_res_blocks", num_res_blocks)
        self.max_filters = validation.positive_int("max_filters", max_filters)
        self.strided_stem = validation.boolean("strided_stem", strided_stem)
        if strided_stem and num_downsamples == 0:
            raise ValueError(
                "`strided_stem=True` makes the stem the first downsampling, so it needs "
                f"num_downsamples >= 1. Received: num_downsamples={num_downsamples}"
            )
        self.resample_kernel_size = validation.positive_int(
            "resample_kernel_size", resample_kernel_size
        )
        if resample_kernel_size < 2:
            raise ValueError(
                "`resample_kernel_size` must be >= 2 (the stride). "
                f"Received: resample_kernel_size={resample_kernel_size}"
            )
        self.residual_hidden_ratio = validation.positive_float(
            "residual_hidden_ratio", residual_hidden_ratio
        )
        self.separable_residual = validation.boolean("separable_residual", separable_residual)

    def _width(self, stage: int) -> int:
        return _stage_filters(self.filters, stage, self.max_filters)

    def _res_blocks(self, width: int) -> list:
        hidden = max(int(round(width * self.residual_hidden_ratio)), 1)
        return [
            ResidualBlock(width, hidden, separable=self.separable_residual, name=f"res_{i}",
                          dtype=self.dtype_policy)
            for i in range(self.num_res_blocks)
        ]

    def _resample(self, layer_class, width: int, name: str, activation="relu"):
        return layer_class(
            width, self.resample_kernel_size, strides=2, padding="same",
            activation=activation, name=name, dtype=self.dtype_policy,
        )

    def _scale(self, size: int | None) -> int | None:
        """Output spatial size for an input size."""
        raise NotImplementedError

    def _forward(self, x):
        raise NotImplementedError

    def call(self, x):
        return distribution.on_shard(self._forward, x)  # an empty replica shard too

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[:3]
        return (batch, self._scale(height), self._scale(width), self.output_channels)

    def get_config(self):
        return {
            **super().get_config(),
            "output_channels": self.output_channels,
            "filters": self.filters,
            "num_downsamples": self.num_downsamples,
            "num_res_blocks": self.num_res_blocks,
            "max_filters": self.max_filters,
            "strided_stem": self.strided_stem,
            "resample_kernel_size": self.resample_kernel_size,
            "residual_hidden_ratio": self.residual_hidden_ratio,
            "separable_residual": self.separable_residual,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**with_legacy_layout(config))


@keras.saving.register_keras_serializable(package="zoo")
class Encoder(_ConvStack):
    """Residual convolutional encoder: images -> feature grid.

    Layout: a stem convolution (a 3x3 at full resolution, or with
    `strided_stem` the first strided convolution), strided convolutions down
    to `1 / 2**num_downsamples` of the size (each doubling the width, capped
    at `max_filters`), `num_res_blocks` residual blocks, a ReLU and a 1x1
    projection to `output_channels`.

    Args:
        output_channels: int. Channels of the output grid (latent channels,
            twice that for a Gaussian posterior, or K logits for the dVAE).
        filters: int. Width of the full-resolution stage; stage `i` (at
            `1 / 2**i` of the size) has `filters * 2**i` channels.
            Defaults to `32`.
        num_downsamples: int. Number of 2x downsamplings. Defaults to `2`.
        num_res_blocks: int. Residual blocks at the lowest resolution.
            Defaults to `2`.
        max_filters: int. Upper bound on the width. Defaults to `256`.
        strided_stem: bool. Whether the stem is the first strided
            convolution (no features at full resolution) instead of a 3x3
            convolution at full resolution. Defaults to `True`.
        resample_kernel_size: int. Kernel of the strided (transposed)
            convolutions (2: non-overlapping, faster, blockier). Defaults to `4`.
        residual_hidden_ratio: float. Inner width of the residual blocks as a
            fraction of their width. Defaults to `1.0`.
        separable_residual: bool. Depthwise-separable 3x3 convolutions in the
            residual blocks. Defaults to `False`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    >>> import keras
    >>> from zoo.blocks import Encoder
    >>> encoder = Encoder(output_channels=8)
    >>> print(encoder(keras.ops.zeros((2, 28, 28, 1))).shape)
    (2, 7, 7, 8)
    """

    def __init__(self, output_channels: int, **kwargs):
        super().__init__(output_channels, **kwargs)
        first = 1 if self.strided_stem else 0
        if self.strided_stem:
            self.stem = self._resample(keras.layers.Conv2D, self._width(1), "stem")
        else:
            self.stem = keras.layers.Conv2D(
                self._width(0), 3, padding="same", name="stem", dtype=self.dtype_policy
            )
        self.downsamples = [
            self._resample(keras.layers.Conv2D, self._width(i + 1), f"down_{i}")
            for i in range(first, self.num_downsamples)
        ]
        self.width = self._width(self.num_downsamples)
        self.res_blocks = self._res_blocks(self.width)
        self.head = PointwiseConv2D(self.output_channels, name="head", dtype=self.dtype_policy)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in [self.stem, *self.downsamples]:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        for block in self.res_blocks:
            block.build(shape)
        self.head.build(shape)

    def _forward(self, images):
        x = self.stem(images)
        for layer in self.downsamples:
            x = layer(x)
        for block in self.res_blocks:
            x = block(x)
        return self.head(keras.ops.relu(x))

    def _scale(self, size):
        # Each "same" stride-2 convolution gives ceil(size / 2), so sizes not
        # divisible by the downsampling round up, as the outputs do.
        return None if size is None else -(-size // 2**self.num_downsamples)


@keras.saving.register_keras_serializable(package="zoo")
class Decoder(_ConvStack):
    """Residual convolutional decoder: latent grid -> image logits.

    The mirror of `Encoder`: a 3x3 stem at the widest stage, residual blocks,
    transposed convolutions that each double the size and halve the width,
    and a projection to `output_channels`: a 3x3 convolution at full
    resolution, or with `strided_stem` the last transposed convolution
    itself. The output is unbounded (logits); the models map it into [0, 1].

    Args:
        output_channels: int. Channels of the output (image channels, or twice
            that for the logit-Laplace likelihood).
        filters: int. Width of the full-resolution stage; stage `i` has
            `filters * 2**i` channels. Defaults to `32`.
        num_downsamples: int. Number of 2x upsamplings. Defaults to `2`.
        num_res_blocks: int. Residual blocks at the lowest resolution.
            Defaults to `2`.
        max_filters: int. Upper bound on the width. Defaults to `256`.
        strided_stem: bool. Whether the stem is the first strided
            convolution (no features at full resolution) instead of a 3x3
            convolution at full resolution. Defaults to `True`.
        resample_kernel_size: int. Kernel of the strided (transposed)
            convolutions (2: non-overlapping, faster, blockier). Defaults to `4`.
        residual_hidden_ratio: float. Inner width of the residual blocks as a
            fraction of their width. Defaults to `1.0`.
        separable_residual: bool. Depthwise-separable 3x3 convolutions in the
            residual blocks. Defaults to `False`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    >>> import keras
    >>> from zoo.blocks import Decoder
    >>> decoder = Decoder(output_channels=1)
    >>> print(decoder(keras.ops.zeros((2, 7, 7, 8))).shape)
    (2, 28, 28, 1)
    """

    def __init__(self, output_channels: int, **kwargs):
        super().__init__(output_channels, **kwargs)
        last = 1 if self.strided_stem else 0
        width = self._width(self.num_downsamples)
        self.stem = keras.layers.Conv2D(
            width, 3, padding="same", name="stem", dtype=self.dtype_policy
        )
        self.res_blocks = self._res_blocks(width)
        self.upsamples = [
            self._resample(keras.layers.Conv2DTranspose, self._width(i), f"up_{i}")
            for i in reversed(range(last, self.num_downsamples))
        ]
        if self.strided_stem:
            self.head = self._resample(
                SubpixelConv2DTranspose, self.output_channels, "head", activation=None
            )
        else:
            self.head = keras.layers.Conv2D(
                self.output_channels, 3, padding="same", name="head", dtype=self.dtype_policy
            )

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.stem.build(shape)
        shape = self.stem.compute_output_shape(shape)
        for block in self.res_blocks:
            block.build(shape)
        for layer in self.upsamples:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.head.build(shape)

    def _forward(self, latents):
        x = self.stem(latents)
        for block in self.res_blocks:
            x = block(x)
        x = keras.ops.relu(x)
        for layer in self.upsamples:
            x = layer(x)
        return self.head(x)

    def _scale(self, size):
        return None if size is None else size * 2**self.num_downsamples
