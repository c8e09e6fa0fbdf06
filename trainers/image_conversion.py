"""Converting image arrays to a model's input: dtype, value range, channels and size.

`trainers.data` applies these to every in-memory source (folders, `.npy`/`.npz`
files, arrays); `conversion_note` tells the train command's user when their
images are not used as they are.
"""

import numpy as np
import tensorflow as tf

from zoo import tensor_checks


def to_unit_float(images) -> np.ndarray:
    """Converts an image array to float32 in [0, 1] (uint8 is divided by 255).

    Raises:
        TypeError: for a dtype that is neither uint8 nor floating point.
        ValueError: for NaN/Inf values or floats outside [0, 1].
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(
            f"Images must be uint8 (0-255) or float in [0, 1]. Received dtype {images.dtype}."
        )
    finite = np.isfinite(images)
    values = images if finite.all() else images[finite]
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if low < 0.0 or high > 1.0 or values is not images:
        # The models refuse such images with the same message (zoo.tensor_checks).
        raise tensor_checks.image_values_error(low, high, int(finite.size - finite.sum()))
    return images.astype(np.float32)


def as_nhwc(images: np.ndarray, source: str) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) images as NHWC; refuses other shapes, C not 1, 3, 4, N = 0."""
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"Images from {source} must have shape (N, H, W) or (N, H, W, C) with C in "
            f"1, 3 or 4. Received shape {images.shape}."
        )
    if images.shape[0] == 0:
        raise ValueError(f"{source} holds no images.")
    return images


CONVERSION_CHUNK = 1024
"""Images converted at a time by `fit_to_shape`: TensorFlow's resize and grayscale
work in float32, so converting a whole array at once took 7-13x its uint8 size."""


def fit_to_shape(images: np.ndarray, image_shape, source: str = "the data") -> np.ndarray:
    """Converts uint8 NHWC images to `image_shape` (channels, center crop, resize down).

    Images are converted `CONVERSION_CHUNK` at a time into one uint8 array, so
    the float32 work space stays a few chunks whatever the number of images.
    """
    height, width, channels = image_shape
    images = as_nhwc(images, source)
    refuse_smaller(images.shape[1:], image_shape, source)
    if images.shape[1:] == (height, width, channels):
        return images
    converted = np.empty((len(images), height, width, channels), np.uint8)
    for start in range(0, len(images), CONVERSION_CHUNK):
        converted[start : start + CONVERSION_CHUNK] = _fit_chunk(
            images[start : start + CONVERSION_CHUNK], image_shape
        )
    return converted


def refuse_smaller(shape, image_shape, source: str = "the data") -> None:
    """Refuses images of `shape` (H, W, ...) smaller than `image_shape`: they are not upsampled."""
    height, width = image_shape[:2]
    if shape[0] < height or shape[1] < width:
        raise ValueError(
            f"Images from {source} are {shape[0]}x{shape[1]}, smaller than the model input "
            f"{height}x{width}; they are not upsampled."
        )


def _fit_chunk(images: np.ndarray, image_shape) -> np.ndarray:
    height, width, channels = image_shape
    if images.shape[-1] == 4:
        images = images[..., :3]
    if images.shape[1:3] != (height, width):
        resized = tf.image.resize(
            _center_crop(tf.convert_to_tensor(images), height / width), (height, width),
            antialias=True,
        )
        images = np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)
    if images.shape[-1] != channels:
        tensor = tf.convert_to_tensor(images)
        converted = (
            tf.image.rgb_to_grayscale(tensor)
            if channels == 1
            else tf.image.grayscale_to_rgb(tensor)
        )
        images = converted.numpy().astype(np.uint8)
    return images


def _center_crop(images: tf.Tensor, aspect: float) -> tf.Tensor:
    """Crops (N, H, W, C) images around the center to `aspect` = height / width."""
    h, w = int(images.shape[1]), int(images.shape[2])
    if h / w > aspect:
        new_h = max(int(round(w * aspect)), 1)
        top = (h - new_h) // 2
        return images[:, top : top + new_h]
    new_w = max(int(round(h / aspect)), 1)
    left = (w - new_w) // 2
    return images[:, :, left : left + new_w]


def float_to_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 0-255 from uint8 or float [0, 1] images (checked by `to_unit_float`).

    Converted `CONVERSION_CHUNK` images at a time: checking and scaling a whole
    float array made three float copies of it (a 0.98 GB float32 `.npy` peaked
    at 3.4 GB).
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if images.ndim == 0 or len(images) <= CONVERSION_CHUNK:
        return np.round(to_unit_float(images) * 255.0).astype(np.uint8)
    converted = np.empty(images.shape, np.uint8)
    for start in range(0, len(images), CONVERSION_CHUNK):
        chunk = images[start : start + CONVERSION_CHUNK]
        try:
            converted[start : start + CONVERSION_CHUNK] = np.round(to_unit_float(chunk) * 255.0)
        except ValueError:
            to_unit_float(images)  # the error with the whole array's range
            raise
    return converted


def stored_shape(images: np.ndarray) -> tuple[int, int, int]:
    """An NHWC array's image shape, RGBA counted as the RGB it is converted to."""
    height, width, channels = images.shape[1:]
    return (height, width, min(channels, 3))


def conversion_note(source_shape, image_shape, source: str = "the data",
                    fixed_channels: bool = False) -> str | None:
    """A line saying how images of `source_shape` are converted to `image_shape`, or `None`.

    The model's `image_shape` is its own (default 28x28x1), not read from the
    data; this tells the user when their images are not used as they are, and
    which `--set image_shape=...` would use them so. `fixed_channels`: the
    model's channel count cannot change (a fine-tuning run).
    """
    if source_shape is None or tuple(source_shape) == tuple(image_shape):
        return None
    (h, w, c), (height, width, channels) = tuple(source_shape), tuple(image_shape)
    changes = []
    if c != channels:
        changes.append("converted to grayscale" if channels == 1 else "converted to RGB")
    if (h, w) != (height, width):
        changes.append("center-cropped and resized" if h * width != w * height else "resized")
    note = (f"Note: the images of {source} are {h}x{w}x{c}; the model takes {height}x{width}x"
            f"{channels} (its image_shape), so they are {' and '.join(changes)}.")
    kept = channels if fixed_channels else c
    if (h, w, kept) != (height, width, channels):
        goal = "To train on them as they are" if kept == c else "To keep their size"
        note += (f" {goal}, give --set 'image_shape=[{h},{w},{kept}]' "
                 "(height and width divisible by 2 ** num_downsamples).")
    if kept != c:
        note += (f" A fine-tuned model keeps its {channels} channel(s): for {c}, train a new "
                 "model (without --init_from).")
    return note
