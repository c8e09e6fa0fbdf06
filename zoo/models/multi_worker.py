"""What a `keras.Model` of the zoo needs to `fit` under `MultiWorkerMirroredStrategy`.

Keras 3.15's TensorFlow trainer breaks `fit` across workers in two places
(BUILD_NOTES.md, "The MultiWorkerMirroredStrategy fix"). `MultiWorkerFitMixin`
overrides both; a model mixes it in before `keras.Model`, builds itself in
`__init__`, returns its step logs through `_logs_for_trainer` and names its
inputs in `symbolic_build_inputs`.
"""

import tensorflow as tf

from zoo import distribution


class MultiWorkerFitMixin:
    """Makes Keras 3.15's `fit`/`evaluate` work under `MultiWorkerMirroredStrategy`.

    For a model that is built in `__init__` from its config. Subclasses
    implement `symbolic_build_inputs()` and pass the logs returned by
    `train_step`/`test_step` through `_logs_for_trainer`.
    """

    def symbolic_build_inputs(self):
        """The model's input `x` as `keras.KerasTensor`s (batch dimension `None`)."""
        raise NotImplementedError

    def _logs_for_trainer(self, logs: dict) -> dict:
        """Gives step logs the shape Keras's TF trainer can reduce.

        Under a multi-worker `MultiWorkerMirroredStrategy`, Keras 3.15's
        `reduce_per_replica` reduces each replica's step logs with
        `strategy.reduce("MEAN", value, axis=0)`, which rejects scalars
        ("Invalid reduction dimension 0"). For a value of shape (1,), that
        reduce averages over the one element of axis 0 and over all replicas
        of all workers, so it returns the scalar mean over replicas: exactly
        what `reduce_per_replica` returns for scalars on one worker
        (`tf.reduce_mean` of the local results). Logs are reshaped there and
        nowhere else, so single-worker logs keep their scalar shape. Epoch
        logs are read from the metric trackers (sync-on-read variables summed
        over replicas), not from these.
        """
        if distribution.is_multi_worker(self.distribute_strategy):
            return {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Completes the build from the model's input spec, not from data.

        Keras 3.15's TF trainer (`fit`, `evaluate`, `train_on_batch`, ...)
        fetches the first distributed batch and averages it over replicas with
        `strategy.reduce("MEAN", batch, axis=None)` only to learn its shapes
        and dtypes for a symbolic build. Under `MultiWorkerMirroredStrategy`
        that reduce is a cross-worker all-reduce of a whole batch, and it
        fails outright for a structured batch such as `(images, labels)` or
        `(codes, labels)`. A zoo model is built in `__init__` from its config,
        so its input spec is known (`symbolic_build_inputs`). The symbolic
        build (optimizer variables, compiled metrics if any) is run from that
        spec, inside the strategy scope, as Keras does.

        Without a strategy Keras defers the build to the first traced step,
        which then creates the optimizer's variables; when that first trace
        fails (a uint8 batch, say), every later `fit` of the model fails with
        "Creating variables on a non-first call to a function decorated with
        tf.function". The zoo builds from the spec in that case too.
        """
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=(self.symbolic_build_inputs(),))
