"""Argument and input checks with errors that name the expected and received value.

Library code raises `ValueError`/`TypeError` from here instead of using
`assert`, so the checks survive `python -O` and read the same everywhere.
"""

from collections.abc import Sequence

import tensorflow as tf


def positive_int(name: str, value) -> int:
    """Returns `value` as an int, or raises if it is not an integer > 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return value


def non_negative_int(name: str, value) -> int:
    """Returns `value` as an int, or raises if it is not an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be an integer >= 0. Received: {name}={value!r}")
    return value


def positive_float(name: str, value) -> float:
    """Returns `value` as a float, or raises if it is not a number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
    return float(value)


def non_negative_float(name: str, value) -> float:
    """Returns `value` as a float, or raises if it is not a number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"`{name}` must be a number >= 0. Received: {name}={value!r}")
    return float(value)


def one_of(name: str, value, choices: Sequence):
    """Returns `value`, or raises if it is not one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}")
    return value


def image_shape(value) -> tuple[int, int, int]:
    """Returns a validated `(height, width, channels)` tuple."""
    shape = tuple(value)
    if len(shape) != 3 or not all(isinstance(n, int) and n > 0 for n in shape):
        raise ValueError(
            "`image_shape` must be (height, width, channels) of positive integers. "
            f"Received: image_shape={value!r}"
        )
    return shape


def check_images(images, channels: int, factor: int) -> tf.Tensor:
    """Checks a batch of images against what a model accepts and returns it.

    Images must be floating point, NHWC, with `channels` channels and a height
    and width divisible by `factor`. Integer images (for example `uint8`) are
    refused rather than guessed at: divide them by 255 first (the data module
    `trainers.data` does this for every source it reads).

    Args:
        images: array-like. The batch to check.
        channels: int. Channels the model was built for.
        factor: int. The model's total downsampling factor.

    Returns:
        The images as a `tf.Tensor` (dtype kept).
    """
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_floating:
        raise TypeError(
            "Images must be floating point in [0, 1], NHWC. "
            f"Received dtype {images.dtype.name}; for uint8 images use "
            "`tf.cast(images, 'float32') / 255.0`."
        )
    shape = images.shape
    if shape.rank != 4:
        raise ValueError(
            "Images must have rank 4 (batch, height, width, channels). "
            f"Received shape {tuple(shape)}."
        )
    if shape[-1] is not None and shape[-1] != channels:
        raise ValueError(
            f"Images must have {channels} channel(s) for this model. "
            f"Received shape {tuple(shape)} with {shape[-1]} channel(s)."
        )
    for axis, label in ((1, "height"), (2, "width")):
        size = shape[axis]
        if size is not None and size % factor:
            raise ValueError(
                f"Image {label} must be divisible by {factor} (the model's "
                f"downsampling factor). Received shape {tuple(shape)}."
            )
    return images


def check_codes(codes, num_embeddings: int) -> tf.Tensor:
    """Checks an integer code grid of shape (B, h, w) with values in [0, K).

    Args:
        codes: array-like of integers.
        num_embeddings: int. The codebook size K.

    Returns:
        The codes as an int32 `tf.Tensor`. In eager mode an out-of-range code
        raises `ValueError`; inside a graph, `tf.errors.InvalidArgumentError`.
    """
    codes = tf.convert_to_tensor(codes)
    if not codes.dtype.is_integer:
        raise TypeError(
            f"Codes must be integers in [0, {num_embeddings}). Received dtype {codes.dtype.name}."
        )
    if codes.shape.rank != 3:
        raise ValueError(
            f"Codes must have shape (batch, height, width). Received shape {tuple(codes.shape)}."
        )
    codes = tf.cast(codes, tf.int32)
    if tf.executing_eagerly():
        if tf.size(codes) > 0:
            low, high = int(tf.reduce_min(codes)), int(tf.reduce_max(codes))
            if low < 0 or high >= num_embeddings:
                raise ValueError(
                    f"Codes must be in [0, {num_embeddings}). Received values in [{low}, {high}]."
                )
        return codes
    checks = [
        tf.debugging.assert_non_negative(codes, message="Codes must be >= 0."),
        tf.debugging.assert_less(
            codes, num_embeddings, message=f"Codes must be < num_embeddings={num_embeddings}."
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(codes)
