"""Per-example image error measures shared by the losses, metrics and evaluation."""

import tensorflow as tf


def per_example_mse(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """Mean squared error of each example, in float32.

    Args:
        images: float tensor of shape `(batch, height, width, channels)`.
        reconstructions: float tensor of the same shape (any float dtype;
            bfloat16 outputs of a mixed-precision model are cast to float32).

    Returns:
        float32 tensor of shape `(batch,)`.

    Example:

    >>> import numpy as np
    >>> from zoo.image_metrics import per_example_mse
    >>> images = np.zeros((2, 4, 4, 1), "float32")
    >>> per_example_mse(images, images + 0.5).numpy().tolist()
    [0.25, 0.25]
    """
    return tf.reduce_mean(
        tf.math.squared_difference(
            tf.cast(images, tf.float32), tf.cast(reconstructions, tf.float32)
        ),
        axis=[1, 2, 3],
    )


def psnr(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """Peak signal-to-noise ratio of each example in dB, for images in [0, 1].

    The MSE is floored at 1e-10, so a perfect reconstruction gives 100 dB
    rather than the infinity of `tf.image.psnr`.

    Args:
        images: float tensor of shape `(batch, height, width, channels)`.
        reconstructions: float tensor of the same shape.

    Returns:
        float32 tensor of shape `(batch,)`.

    Example:

    >>> import numpy as np
    >>> from zoo.image_metrics import psnr
    >>> images = np.zeros((1, 4, 4, 1), "float32")
    >>> round(float(psnr(images, images + 0.1)[0]), 3)
    20.0
    """
    mse = per_example_mse(images, reconstructions)
    return 10.0 * tf.math.log(1.0 / tf.maximum(mse, 1e-10)) / tf.math.log(10.0)
