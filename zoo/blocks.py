"""Convolutional building blocks shared by every autoencoder family.

The encoder halves the spatial size `num_downsamples` times with strided
4x4 convolutions and the decoder doubles it back with transposed ones, so the
networks are fully convolutional: any height and width divisible by
`2 ** num_downsamples` works.
"""

import keras

from zoo import validation


@keras.saving.register_keras_serializable(package="zoo")
class ResidualBlock(keras.layers.Layer):
    """Pre-activation residual block: `x + conv1x1(relu(conv3x3(relu(x))))`.

    This is the block of the VQ-VAE paper (van den Oord et al., 2017). It keeps
    the number of channels, so blocks can be stacked freely.

    Args:
        filters: int. Number of input and output channels.
        hidden_filters: int or `None`. Channels of the inner 3x3 convolution.
            Defaults to `filters // 2`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    >>> import keras
    >>> from zoo.blocks import ResidualBlock
    >>> block = ResidualBlock(32)
    >>> print(block(keras.ops.zeros((1, 7, 7, 32))).shape)
    (1, 7, 7, 32)
    """

    def __init__(self, filters: int, hidden_filters: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.filters = validation.positive_int("filters", filters)
        self.hidden_filters = validation.positive_int(
            "hidden_filters", hidden_filters or max(filters // 2, 1)
        )
        self.conv_in = keras.layers.Conv2D(
            self.hidden_filters, 3, padding="same", name="conv_in"
        )
        self.conv_out = keras.layers.Conv2D(self.filters, 1, name="conv_out")

    def build(self, input_shape):
        self.conv_in.build(input_shape)
        self.conv_out.build((*input_shape[:-1], self.hidden_filters))

    def call(self, x):
        h = self.conv_in(keras.ops.relu(x))
        return x + self.conv_out(keras.ops.relu(h))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "hidden_filters": self.hidden_filters,
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_channels = validation.positive_int("output_channels", output_channels)
        self.filters = validation.positive_int("filters", filters)
        self.num_downsamples = validation.non_negative_int("num_downsamples", num_downsamples)
        self.num_res_blocks = validation.non_negative_int("num_res_blocks", num_res_blocks)
        self.max_filters = validation.positive_int("max_filters", max_filters)

    def _scale(self, size: int | None) -> int | None:
        """Output spatial size for an input size."""
        raise NotImplementedError

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
        }


@keras.saving.register_keras_serializable(package="zoo")
class Encoder(_ConvStack):
    """Residual convolutional encoder: images -> feature grid.

    Layout: a 3x3 stem convolution, `num_downsamples` strided 4x4 convolutions
    (each doubling the width, capped at `max_filters`), `num_res_blocks`
    residual blocks, a ReLU and a 1x1 projection to `output_channels`.

    Args:
        output_channels: int. Channels of the output grid (latent channels,
            twice that for a Gaussian posterior, or K logits for the dVAE).
        filters: int. Width of the first stage. Defaults to `32`.
        num_downsamples: int. Number of 2x downsamplings. Defaults to `2`.
        num_res_blocks: int. Residual blocks at the lowest resolution.
            Defaults to `2`.
        max_filters: int. Upper bound on the width. Defaults to `256`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    >>> import keras
    >>> from zoo.blocks import Encoder
    >>> encoder = Encoder(output_channels=8)
    >>> print(encoder(keras.ops.zeros((2, 28, 28, 1))).shape)
    (2, 7, 7, 8)
    """

    def __init__(
        self,
        output_channels: int,
        filters: int = 32,
        num_downsamples: int = 2,
        num_res_blocks: int = 2,
        max_filters: int = 256,
        **kwargs,
    ):
        super().__init__(
            output_channels, filters, num_downsamples, num_res_blocks, max_filters, **kwargs
        )
        width = _stage_filters(filters, 0, max_filters)
        self.stem = keras.layers.Conv2D(width, 3, padding="same", name="stem")
        self.downsamples = []
        for i in range(num_downsamples):
            width = _stage_filters(filters, i + 1, max_filters)
            self.downsamples.append(
                keras.layers.Conv2D(
                    width, 4, strides=2, padding="same", activation="relu", name=f"down_{i}"
                )
            )
        self.width = width
        self.res_blocks = [ResidualBlock(width, name=f"res_{i}") for i in range(num_res_blocks)]
        self.head = keras.layers.Conv2D(output_channels, 1, name="head")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in [self.stem, *self.downsamples]:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        for block in self.res_blocks:
            block.build(shape)
        self.head.build(shape)

    def call(self, images):
        x = self.stem(images)
        for layer in self.downsamples:
            x = layer(x)
        for block in self.res_blocks:
            x = block(x)
        return self.head(keras.ops.relu(x))

    def _scale(self, size):
        return None if size is None else size // 2**self.num_downsamples


@keras.saving.register_keras_serializable(package="zoo")
class Decoder(_ConvStack):
    """Residual convolutional decoder: latent grid -> image logits.

    The mirror of `Encoder`: a 3x3 stem at the widest stage, residual blocks,
    `num_downsamples` transposed 4x4 convolutions that each double the size and
    halve the width, and a 3x3 projection to `output_channels`. The output is
    unbounded (logits); the models map it into [0, 1].

    Args:
        output_channels: int. Channels of the output (image channels, or twice
            that for the logit-Laplace likelihood).
        filters: int. Width of the last (full-resolution) stage. Defaults to `32`.
        num_downsamples: int. Number of 2x upsamplings. Defaults to `2`.
        num_res_blocks: int. Residual blocks at the lowest resolution.
            Defaults to `2`.
        max_filters: int. Upper bound on the width. Defaults to `256`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    >>> import keras
    >>> from zoo.blocks import Decoder
    >>> decoder = Decoder(output_channels=1)
    >>> print(decoder(keras.ops.zeros((2, 7, 7, 8))).shape)
    (2, 28, 28, 1)
    """

    def __init__(
        self,
        output_channels: int,
        filters: int = 32,
        num_downsamples: int = 2,
        num_res_blocks: int = 2,
        max_filters: int = 256,
        **kwargs,
    ):
        super().__init__(
            output_channels, filters, num_downsamples, num_res_blocks, max_filters, **kwargs
        )
        width = _stage_filters(filters, num_downsamples, max_filters)
        self.stem = keras.layers.Conv2D(width, 3, padding="same", name="stem")
        self.res_blocks = [ResidualBlock(width, name=f"res_{i}") for i in range(num_res_blocks)]
        self.upsamples = []
        for i in reversed(range(num_downsamples)):
            self.upsamples.append(
                keras.layers.Conv2DTranspose(
                    _stage_filters(filters, i, max_filters),
                    4,
                    strides=2,
                    padding="same",
                    activation="relu",
                    name=f"up_{i}",
                )
            )
        self.head = keras.layers.Conv2D(output_channels, 3, padding="same", name="head")

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

    def call(self, latents):
        x = self.stem(latents)
        for block in self.res_blocks:
            x = block(x)
        x = keras.ops.relu(x)
        for layer in self.upsamples:
            x = layer(x)
        return self.head(x)

    def _scale(self, size):
        return None if size is None else size * 2**self.num_downsamples
