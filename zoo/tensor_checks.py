"""Checks of the tensors a model is given: images, latents, codes, class labels, batches.

Each check raises `ValueError`/`TypeError` naming the expected and the
received value when it can tell eagerly (also while a `tf.function` is
traced), and attaches a `tf.debugging` assertion with the same message to
what a graph reads (`tf.errors.InvalidArgumentError`). The checks of scalar
arguments (sizes, rates, seeds) are in `zoo.validation`.
"""

import numpy as np
import tensorflow as tf

from zoo import distribution

TensorLike = tf.Tensor | np.ndarray
"""What the models' public methods take: a tensor or a NumPy array (lists also work)."""

MAX_TENSOR_VALUES = 2**31 - 1
"""The most values one tensor may hold. TensorFlow 2.21's CPU element-wise
kernels (Fill, Tile, the bias add after a convolution, ...) index with 32 bits
and crash the process (segfault) on an output of 2**31 values or more; see
BUILD_NOTES.md."""

IMAGE_VALUES = "Float images must be finite and lie in [0, 1]; divide 0-255 data by 255."
"""The start of every error about image values (the data module uses it too)."""


def image_values_error(low: float, high: float, non_finite: int) -> ValueError:
    """The error for images with values outside [0, 1], NaN or Inf.

    Args:
        low: float. The smallest finite value received.
        high: float. The largest finite value received.
        non_finite: int. How many values are NaN or Inf.
    """
    nan = f" and {non_finite} NaN or Inf value(s)" if non_finite else ""
    return ValueError(
        f"{IMAGE_VALUES} Received values in [{_bound(low)}, {_bound(high)}]{nan}."
    )


def _bound(value: float) -> str:
    """`value` to 4 significant digits, or to as many as show it outside [0, 1].

    A value just outside (1.0000001 after a resize, -1e-9 is already clear)
    printed as `1` made the message read "must lie in [0, 1]. Received values
    in [0, 1]".
    """
    short = f"{value:.4g}"
    outside = not 0.0 <= value <= 1.0
    return repr(value) if outside and 0.0 <= float(short) <= 1.0 else short


def _value_summary(values: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(smallest finite value, largest finite value, count of NaN/Inf) of a tensor."""
    finite = tf.math.is_finite(values)
    zeros = tf.zeros_like(values)
    low = tf.reduce_min(tf.where(finite, values, zeros))
    high = tf.reduce_max(tf.where(finite, values, zeros))
    non_finite = tf.reduce_sum(tf.cast(tf.logical_not(finite), tf.int64))
    return low, high, non_finite


def _check_batch(tensor: tf.Tensor, what: str, max_batch: int | None) -> tf.Tensor:
    """Refuses an empty batch, and one over `max_batch` (when given).

    In a graph the checks run before anything reads the values, so a batch
    too big for the model is refused before the value checks touch it.
    """
    message = f"{what} hold no examples (batch size 0); pass at least one."
    size = tensor.shape[0]
    # Under a strategy with several replicas the batch is this replica's shard,
    # which is empty when the last global batch has fewer examples than there
    # are replicas. Only the global batch must hold examples, and `fit`,
    # `evaluate` and `predict` refuse empty data before they start
    # (`check_has_examples`), so a shard is not checked (that would cost an
    # all-reduce per step).
    shard = distribution.is_replica_shard()
    if size == 0 and not shard:
        raise ValueError(f"{message} Received shape {tuple(tensor.shape)}.")
    if tf.executing_eagerly():
        if max_batch is not None:
            check_batch_size(size, max_batch, what.lower())
        return tensor
    checks = [] if shard else [tf.debugging.assert_positive(tf.shape(tensor)[0], message=message)]
    if max_batch is not None:
        checks.append(check_batch_size(tf.shape(tensor)[0], max_batch, what.lower()))
    with tf.control_dependencies(checks):
        return tf.identity(tensor)


def check_images(images, channels: int, factor: int, max_batch: int | None = None) -> tf.Tensor:
    """Checks a batch of images against what a model accepts and returns it.

    Images must be floating point, NHWC, with `channels` channels, a height
    and width divisible by `factor`, at least one image, and finite values in
    [0, 1]. Integer images (for example `uint8`) are refused rather than
    guessed at: divide them by 255 first (the data module `trainers.data`
    does this for every source it reads); so are floats in [0, 255].

    Dtype and shape errors are raised when the images are seen (also while a
    `tf.function` is traced). The batch and the values are checked on every
    call: in eager mode with a `ValueError`, in a graph (`fit`, `predict`,
    `tf.function`, an exported SavedModel) with `tf.errors.InvalidArgumentError`
    and the same message. XLA-compiled functions (`jit_compile=True`) drop
    these assertions.

    Args:
        images: array-like. The batch to check.
        channels: int. Channels the model was built for.
        factor: int. The model's total downsampling factor.
        max_batch: int or `None`. The largest batch allowed (checked before
            the values); `None` for no limit.

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
    rank_message = "Images must have rank 4 (batch, height, width, channels)."
    if images.shape.rank is None and not tf.executing_eagerly():
        # Keras retraces a later `fit` with relaxed shapes, of unknown rank when a
        # call had batches of another rank: checked when the function runs.
        # (A reshape, not `tf.ensure_shape`, which Grappler evaluates before the check.)
        check = tf.debugging.assert_rank(images, 4, message=rank_message)
        with tf.control_dependencies([check]):
            images = tf.identity(images)
        sizes = tf.shape(images)
        images = tf.reshape(images, tf.stack([sizes[0], sizes[1], sizes[2], sizes[3]]))
    shape = images.shape
    if shape.rank != 4:
        raise ValueError(f"{rank_message} Received shape {tuple(shape)}.")
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
    # Sizes a traced function does not know (Keras retraces a second `fit` with relaxed
    # shapes) are checked when it runs, with the same messages.
    sizes = tf.shape(images)
    dynamic = [
        tf.debugging.assert_equal(
            sizes[-1], channels, message=f"Images must have {channels} channel(s) for this model"
        )
    ] if shape[-1] is None else []
    dynamic += [
        tf.debugging.assert_equal(
            sizes[axis] % factor, 0,
            message=f"Image {label} must be divisible by {factor} (the model's downsampling "
            "factor)",
        )
        for axis, label in ((1, "height"), (2, "width")) if shape[axis] is None
    ]
    if dynamic:
        with tf.control_dependencies(dynamic):
            images = tf.identity(images)
    images = _check_batch(images, "Images", max_batch)
    # NaN fails both comparisons, so one pass finds NaN, Inf and out-of-range values.
    in_range = tf.reduce_all(tf.logical_and(images >= 0, images <= 1))
    if tf.executing_eagerly():
        if not bool(in_range):
            low, high, non_finite = _value_summary(images)
            raise image_values_error(float(low), float(high), int(non_finite))
        return images

    def report():  # runs only for a bad batch: a served request pays one comparison pass
        low, high, non_finite = _value_summary(images)
        message = f"{IMAGE_VALUES} Received min, max and number of NaN/Inf values:"
        with tf.control_dependencies(
            [tf.debugging.Assert(False, [message, low, high, non_finite])]
        ):
            return tf.constant(False)

    checked = tf.cond(in_range, lambda: tf.constant(True), report)
    with tf.control_dependencies([checked]):
        return tf.identity(images)


def check_has_examples(data, argument: str) -> None:
    """Refuses data for `fit`/`evaluate`/`predict` that is known to hold no examples.

    Keras would otherwise run no step and return `{}` (`fit`), `[]`
    (`evaluate`) or fail inside `predict`. Arrays (or the first element of an
    `(images, ...)` tuple) of length 0 and datasets of cardinality 0 are
    refused; a dataset whose size is unknown is not read ahead.

    Args:
        data: what was passed (array, tensor, tuple, `tf.data.Dataset`, ...).
        argument: str. Its name in the call, for the message (e.g. "fit(x)").
    """
    if isinstance(data, (tuple, list)) and data:
        data = data[0]
    if isinstance(data, tf.data.Dataset):
        if int(data.cardinality()) == 0:
            raise ValueError(f"{argument} is an empty dataset (no batches); pass some images.")
        return
    shape = getattr(data, "shape", None)
    if shape is not None and len(shape) > 0 and shape[0] == 0:
        raise ValueError(
            f"{argument} holds no examples; pass some images. Received shape {tuple(shape)}."
        )


def check_finite_weights(model) -> None:
    """Refuses a model whose weights hold NaN or Inf (the weights of a diverged run).

    Such a model does not always answer NaN: graph-mode calls (`predict`,
    `evaluate`, an exported SavedModel) of an AE with a NaN kernel returned
    finite, meaningless images, so it was evaluated and served without a sign.

    Args:
        model: a Keras model.

    Raises:
        ValueError: naming the first variables with NaN or Inf values.
    """
    bad = []
    for variable in model.weights:
        values = np.asarray(variable)
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            bad.append(variable.path)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ValueError(
            f"The model's weights hold NaN or Inf values ({shown}): it diverged in training. "
            "Use an earlier checkpoint, or train again with a lower learning rate."
        )


def check_latents(
    latents, channels: int, max_batch: int | None = None, compute_dtype=None
) -> tf.Tensor:
    """Checks a float latent grid of shape (B, h, w, `channels`) with finite values.

    Args:
        latents: array-like of floats.
        channels: int. The model's `latent_channels`.
        max_batch: int or `None`. The largest batch allowed; `None` for no limit.
        compute_dtype: dtype or `None`. The dtype the model computes in: the
            latents are cast to it and must be finite there (float64 latents
            over float32's range, or float32 ones over float16's 65504 under
            `mixed_float16`, would become Inf in the decoder's first layer and
            every image NaN). `None` checks them in their own dtype.

    Returns:
        The latents as a `tf.Tensor` (in `compute_dtype` when given).
        Non-finite values raise `ValueError` in eager mode and
        `tf.errors.InvalidArgumentError` in a graph.
    """
    latents = tf.convert_to_tensor(latents)
    if not latents.dtype.is_floating:
        raise TypeError(
            f"Latents must be floating point. Received dtype {latents.dtype.name}."
        )
    if latents.shape.rank != 4 or latents.shape[-1] != channels:
        raise ValueError(
            f"Latents must have shape (batch, h, w, {channels}). "
            f"Received shape {tuple(latents.shape)}."
        )
    latents = _check_batch(latents, "Latent grids", max_batch)
    where = ""
    if compute_dtype is not None and tf.as_dtype(compute_dtype) != latents.dtype:
        compute_dtype = tf.as_dtype(compute_dtype)
        where = (f" in {compute_dtype.name}, the dtype the model computes in (largest finite "
                 f"value {compute_dtype.max:.5g})")
        latents = tf.cast(latents, compute_dtype)
    if tf.executing_eagerly():
        non_finite = int(tf.size(latents)) - int(
            tf.math.count_nonzero(tf.math.is_finite(latents))
        )
        if non_finite:
            raise ValueError(f"Latents contain {non_finite} NaN or Inf value(s){where}.")
        return latents
    check = tf.debugging.assert_all_finite(latents, f"Latents contain NaN or Inf values{where}.")
    return check


def check_codes(codes, num_embeddings: int, max_batch: int | None = None) -> tf.Tensor:
    """Checks an integer code grid of shape (B, h, w) with values in [0, K).

    Args:
        codes: array-like of integers.
        num_embeddings: int. The codebook size K.
        max_batch: int or `None`. The largest batch allowed; `None` for no limit.

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
    codes = _check_batch(codes, "Code grids", max_batch)
    if tf.executing_eagerly():
        low, high = int(tf.reduce_min(codes)), int(tf.reduce_max(codes))
        if low < 0 or high >= num_embeddings:
            raise ValueError(
                f"Codes must be in [0, {num_embeddings}). Received values in [{low}, {high}]."
            )
        return tf.cast(codes, tf.int32)
    checks = [
        tf.debugging.assert_non_negative(codes, message="Codes must be >= 0"),
        tf.debugging.assert_less(
            codes,
            tf.cast(num_embeddings, codes.dtype),
            message=f"Codes must be < num_embeddings={num_embeddings}",
        ),
    ]
    with tf.control_dependencies(checks):
        # tf.identity: a cast to the same dtype adds no op, so no dependency.
        return tf.identity(tf.cast(codes, tf.int32))


def check_labels(labels, num_classes: int, name: str = "labels") -> tf.Tensor:
    """Checks class-id labels (B,) of a `TransformerPrior`: integers in [0, `num_classes`].

    Args:
        labels: array-like of integers. `num_classes` means "no condition".
        num_classes: int. The prior's number of classes.
        name: str. The argument's name, for the message. Defaults to `"labels"`.

    Returns:
        The labels as an int32 `tf.Tensor`. In eager mode an out-of-range id
        raises `ValueError`; inside a graph, `tf.errors.InvalidArgumentError`.
    """
    if isinstance(labels, (list, tuple)) and not labels:
        raise ValueError(f"`{name}` hold no labels; pass at least one class id.")
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
        raise TypeError(
            f"`{name}` must be integers in [0, {num_classes}]. Received dtype {labels.dtype.name}."
        )
    if labels.shape.rank != 1:
        raise ValueError(f"`{name}` must have shape (batch,). Received shape {labels.shape}.")
    labels = tf.cast(labels, tf.int32)
    if tf.executing_eagerly():
        if tf.size(labels) and not (
            0 <= int(tf.reduce_min(labels)) and int(tf.reduce_max(labels)) <= num_classes
        ):
            raise ValueError(
                f"`{name}` must be class ids in [0, {num_classes - 1}] or {num_classes} "
                f"(no condition). Received: {labels.numpy().tolist()}"
            )
        return labels
    checks = [
        tf.debugging.assert_non_negative(labels, message=f"{name} must be >= 0"),
        tf.debugging.assert_less_equal(
            labels, num_classes, message=f"{name} must be <= num_classes={num_classes}"
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(labels)


def condition_ids(labels, num_classes: int, batch=None) -> tf.Tensor:
    """The condition ids of a `TransformerPrior` call: checked `labels`, or "no condition".

    Args:
        labels: array-like of integers (see `check_labels`), or `None`.
        num_classes: int. The prior's number of classes; also the "no condition" id.
        batch: int, scalar tensor or `None`. How many "no condition" ids to make
            when `labels` is `None`.

    Returns:
        int32 (B,) condition ids.
    """
    if labels is None:
        if batch is None:
            raise ValueError(
                "Pass `labels`, or `num_samples` (or a `prefix`) with labels=None."
            )
        return tf.fill([batch], num_classes)
    return check_labels(labels, num_classes)


def check_batch_size(size, limit: int, what: str):
    """Refuses a batch larger than `limit`, the most a model runs at once.

    Args:
        size: int, or an int32 scalar tensor inside a graph.
        limit: int. The largest allowed batch.
        what: str. What the batch holds, for the message (e.g. "images").

    Returns:
        `size`: an int, or inside a graph the tensor with the check attached
        (`tf.errors.InvalidArgumentError` when it fails).
    """
    message = (
        f"At most {limit:,} {what} can be processed at once by this model (a larger batch "
        f"would make a tensor of {MAX_TENSOR_VALUES + 1:,} values or more, which "
        "TensorFlow cannot run on CPU); split the batch."
    )
    if isinstance(size, tf.Tensor) and not tf.executing_eagerly():
        check = tf.debugging.assert_less_equal(size, tf.cast(limit, size.dtype), message=message)
        with tf.control_dependencies([check]):
            return tf.identity(size)
    if int(size) > limit:
        raise ValueError(f"{message} Received {int(size):,}.")
    return size

