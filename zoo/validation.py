"""Argument checks with errors that name the expected and received value.

Library code raises `ValueError`/`TypeError` from here instead of using
`assert`, so the checks survive `python -O` and read the same everywhere.
This module checks scalar and keyword arguments (sizes, rates, flags,
seeds); the checks of tensors (images, latents, codes, batches) are in
`zoo.tensor_checks`, and are importable from here too.
"""

import math
import numbers
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from zoo.tensor_checks import (  # noqa: F401  (re-exported: `zoo.validation.check_images`, ...)
    IMAGE_VALUES,
    MAX_TENSOR_VALUES,
    TensorLike,
    check_batch_size,
    check_codes,
    check_has_examples,
    check_images,
    check_latents,
    image_values_error,
)


def _integer(value):
    """`value` as a Python int if it is an integer (NumPy's too, not bool), else `None`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def _finite_number(value):
    """`value` as a Python float if it is a finite real number (not bool), else `None`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def positive_int(name: str, value) -> int:
    """Returns `value` as an int, or raises if it is not an integer > 0."""
    number = _integer(value)
    if number is None or number <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return number


def non_negative_int(name: str, value) -> int:
    """Returns `value` as an int, or raises if it is not an integer >= 0."""
    number = _integer(value)
    if number is None or number < 0:
        raise ValueError(f"`{name}` must be an integer >= 0. Received: {name}={value!r}")
    return number


def finite_float(name: str, value) -> float:
    """Returns `value` as a float, or raises if it is not a finite number."""
    number = _finite_number(value)
    if number is None:
        raise ValueError(f"`{name}` must be a finite number. Received: {name}={value!r}")
    return number


def positive_float(name: str, value) -> float:
    """Returns `value` as a float, or raises if it is not a finite number > 0."""
    number = _finite_number(value)
    if number is None or not number > 0:
        raise ValueError(
            f"`{name}` must be a positive finite number. Received: {name}={value!r}"
        )
    return number


def non_negative_float(name: str, value) -> float:
    """Returns `value` as a float, or raises if it is not a finite number >= 0."""
    number = _finite_number(value)
    if number is None or not number >= 0:
        raise ValueError(f"`{name}` must be a finite number >= 0. Received: {name}={value!r}")
    return number


def boolean(name: str, value) -> bool:
    """Returns `value` as a bool; refuses anything else (`bool("False")` is True)."""
    if isinstance(value, np.bool_):
        return bool(value)
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool. Received: {name}={value!r}")
    return value


def one_of(name: str, value, choices: Sequence):
    """Returns `value`, or raises if it is not one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}")
    return value


def model_kwargs(kwargs: dict) -> dict:
    """Returns the `keras.Model` keyword arguments of a zoo model, refusing `dtype`.

    The zoo's models take their precision from the global policy
    (`keras.mixed_precision.set_global_policy`, `--precision` in the
    commands): a model-level `dtype` would reach the model but not its layers,
    and `get_config` would not keep it.
    """
    if kwargs.get("dtype") is not None:
        raise ValueError(
            "The zoo's models take their precision from the global policy, not a `dtype` "
            "argument: call `keras.mixed_precision.set_global_policy('mixed_bfloat16')` "
            f"before building the model. Received: dtype={kwargs['dtype']!r}"
        )
    return kwargs


def image_shape(value) -> tuple[int, int, int]:
    """Returns a validated `(height, width, channels)` tuple."""
    shape = tuple(value)
    if len(shape) != 3 or not all(isinstance(n, int) and n > 0 for n in shape):
        raise ValueError(
            "`image_shape` must be (height, width, channels) of positive integers. "
            f"Received: image_shape={value!r}"
        )
    return shape


def grid_shape(value) -> tuple[int, int]:
    """Returns a validated `(h, w)` code-grid shape."""
    shape = tuple(value)
    if len(shape) != 2 or not all(isinstance(n, int) and n > 0 for n in shape):
        raise ValueError(
            f"`grid_shape` must be (h, w) of positive integers. Received: {value!r}"
        )
    return shape


def refuse_weights(kwargs: dict, method: str) -> None:
    """Refuses `sample_weight`/`class_weight` in `fit`/`evaluate` of a zoo model.

    A zoo model computes its own per-example loss in `train_step` and reduces
    it over the global batch; Keras's weights would reach that step unused, so
    weighted training would silently be unweighted training.

    Args:
        kwargs: dict. The keyword arguments of the call.
        method: str. `"fit"` or `"evaluate"`, for the message.
    """
    given = sorted(k for k in ("sample_weight", "class_weight") if kwargs.get(k) is not None)
    if given:
        raise ValueError(
            f"The zoo's models do not weight examples: `{method}` got {', '.join(given)}, "
            "which every model would ignore (each computes its own loss). Repeat or "
            "resample the examples instead (e.g. `tf.data.Dataset.rejection_resample`)."
        )


def check_num_samples(value, limit: int):
    """Checks `num_samples` of a `sample` call: an integer in [1, `limit`].

    Args:
        value: a Python or NumPy integer, or an int32 scalar tensor (a
            served request).
        limit: int. The most samples the model draws at once.

    Returns:
        An int, or inside a graph the tensor with the checks attached
        (`tf.errors.InvalidArgumentError` when they fail).
    """
    if isinstance(value, tf.Tensor) and not tf.executing_eagerly():
        check = tf.debugging.assert_positive(value, message="num_samples must be >= 1")
        with tf.control_dependencies([check]):
            return check_batch_size(tf.identity(value), limit, "samples")
    if isinstance(value, tf.Tensor) and value.dtype.is_integer and value.shape.rank == 0:
        value = int(value)
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"`num_samples` must be an integer >= 1. Received: num_samples={value!r} "
            f"of type {type(value).__name__}."
        )
    if value < 1:
        raise ValueError(f"`num_samples` must be an integer >= 1. Received: num_samples={value!r}")
    return check_batch_size(value, limit, "samples")


def check_seed(value) -> int:
    """Returns a `sample` seed as an int: a Python or NumPy integer in the int32 range."""
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"`seed` must be an integer. Received: seed={value!r} of type {type(value).__name__}."
        )
    if not -(2**31) <= value < 2**31:
        raise ValueError(f"`seed` must fit in int32. Received: seed={value!r}")
    return value
