"""How big a batch one pass of an autoencoder may be, and eager calls in passes.

TensorFlow's CPU kernels crash the process on a tensor of 2**31 values or
more. `BatchPassesMixin` bounds the values one example puts into any tensor
of a pass, refuses larger batches in graphs (training steps, `tf.function`,
exported signatures) and runs eager inference on any batch in passes.
"""

import math

import tensorflow as tf

from zoo import tensor_checks, validation

PASS_VALUES = 2**26
"""Eager inference splits a batch into passes whose largest tensor holds about
this many values (256 MB of float32), so memory stays bounded."""


class BatchPassesMixin:
    """Batch limits and eager passes for `zoo.models.base.Autoencoder`.

    Uses the model's `image_shape`, `latent_grid`, `encoder`,
    `decoder_input_channels`, `filters` and `max_filters`.
    """

    def _batch_limit(self, one_pass: bool = False) -> int | None:
        return self.max_batch_size if one_pass or not tf.executing_eagerly() else None

    def _values_per_example(self) -> int:
        """The most values one example puts into a tensor of a pass (a bound).

        Every stage of the stacks doubles the width at most while it quarters
        the area, so the widest tensors are at full resolution (`filters`
        channels, or the images themselves) or on the latent grid (the
        encoder/decoder channels, or K distances, logits or one-hots).
        """
        height, width, channels = self.image_shape
        grid_h, grid_w = self.latent_grid
        full = height * width * max(2 * channels, self._full_resolution_width())
        latent = grid_h * grid_w * max(
            self.encoder.output_channels,
            self.decoder_input_channels,
            getattr(self, "num_embeddings", 0),
        )
        return max(full, latent)

    def _full_resolution_width(self) -> int:
        """Channels of the widest full-resolution tensor of the stacks."""
        return min(self.filters, self.max_filters)

    @property
    def max_batch_size(self) -> int:
        """The largest batch one pass of this model runs.

        A larger batch would make a tensor of 2**31 values or more, which
        TensorFlow's CPU kernels cannot run (they crash the process; for the
        default 28x28 models that is about 85,000 images). `fit`, `evaluate`,
        `predict`, a `tf.function` and exported signatures refuse a larger
        batch with `tf.errors.InvalidArgumentError`; eager calls (`model(x)`,
        `encode`, `decode`, `sample`) run any batch in smaller passes.
        """
        return max(1, tensor_checks.MAX_TENSOR_VALUES // self._values_per_example())

    def _in_passes(self, fn, inputs: tf.Tensor, what: str):
        """Runs `fn` on a checked batch: in a graph at once (the checks refused a
        batch over `max_batch_size`), eagerly in passes of about `PASS_VALUES`
        values, concatenated."""
        if not tf.executing_eagerly():
            return fn(inputs)
        total = int(inputs.shape[0])
        step = max(1, PASS_VALUES // self._values_per_example())
        if total <= step:
            return fn(inputs)
        parts = [fn(inputs[:step])]
        per_example = sum(t.shape.num_elements() for t in tf.nest.flatten(parts[0])) // step
        if total * per_example > tensor_checks.MAX_TENSOR_VALUES:
            raise ValueError(
                f"The output for {total:,} {what} would hold {total * per_example:,} values, "
                f"more than one tensor can ({tensor_checks.MAX_TENSOR_VALUES:,}); pass at most "
                f"{tensor_checks.MAX_TENSOR_VALUES // per_example:,} {what} at once."
            )
        parts += [fn(inputs[start:start + step]) for start in range(step, total, step)]
        return tf.nest.map_structure(lambda *pieces: tf.concat(pieces, axis=0), *parts)

    def _checked_num_samples(self, num_samples):
        """`num_samples` of `sample` or of the `sample` signature, checked.

        Eager draws are decoded in passes, so only the images returned must
        fit in one tensor; a graph decodes them in one pass.
        """
        if tf.executing_eagerly():
            limit = tensor_checks.MAX_TENSOR_VALUES // math.prod(self.image_shape)
        else:
            limit = self.max_batch_size
        return validation.check_num_samples(num_samples, limit)
