"""What every trainable zoo model adds to `keras.Model`, whatever its family.

Each model computes its own per-example loss in `train_step` and is built
from its config rather than by a first call. So: Keras's example weights
would reach the step unused (refused instead), a model with nothing
trainable must still `fit` as a `keras.Model` does, and Keras's own `export`
needs the input signature the model declares in `symbolic_build_inputs`.
"""

import warnings

import tensorflow as tf

from zoo import validation


class ZooModelMixin:
    """Mixed in before `keras.Model` by `Autoencoder` and `TransformerPrior`."""

    def fit(self, x=None, *args, **kwargs):
        validation.refuse_weights(kwargs, "fit")
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        validation.refuse_weights(kwargs, "evaluate")
        return super().evaluate(x, *args, **kwargs)

    def _apply_gradients(self, tape: tf.GradientTape, loss: tf.Tensor) -> None:
        """The optimizer step of `train_step`.

        A model with no trainable weights (`model.trainable = False`, or a
        VQ-VAE whose encoder and decoder are frozen and whose EMA codebook
        still learns) takes no optimizer step, with Keras's own warning, as
        `keras.Model` does; its `fit` still runs the updates that need no
        gradient, and the metrics.
        """
        variables = self.trainable_variables
        if not variables:
            warnings.warn("The model does not have any trainable weights.", stacklevel=2)
            return
        gradients = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None,
               **kwargs):
        """Keras's `export`, with `symbolic_build_inputs()` as the default input.

        Keras cannot infer the signature of a model built from its config
        ("The model provided has never called"). This gives Keras's single
        `serve` endpoint; `zoo.export.export_model` (`python -m
        trainers.export`) writes the served SavedModel with every named
        signature.
        """
        if input_signature is None:
            input_signature = [self.symbolic_build_inputs()]  # the prior's: one (codes, labels)
        return super().export(filepath, format=format, verbose=verbose,
                              input_signature=input_signature, **kwargs)
