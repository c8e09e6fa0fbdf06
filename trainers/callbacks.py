"""Keras callbacks that drive the models' schedule variables.

`TemperatureAnnealing` sets the dVAE's Gumbel-softmax temperature and
`KLWarmup` ramps the KL weight of the VAE and the dVAE up from 0. Both read
the step from the optimizer's iteration counter, not from a count of their
own, so a resumed run (`BackupAndRestore`, or `fit` called again) continues
the schedule where it stopped.
"""

import math

import keras

SCHEDULES = ("cosine", "exponential", "linear")


def schedule_value(step: int, start: float, end: float, steps: int, schedule: str) -> float:
    """The value of a schedule from `start` to `end` over `steps` steps.

    Args:
        step: int. The current step; values past `steps` stay at `end`.
        start: float. Value at step 0.
        end: float. Value from step `steps` on.
        steps: int. Length of the schedule.
        schedule: str. `"cosine"` (half a cosine period), `"exponential"`
            (geometric interpolation; needs `start` and `end` > 0) or `"linear"`.

    Returns:
        The scheduled value (float).
    """
    progress = min(max(step, 0) / steps, 1.0) if steps > 0 else 1.0
    if schedule == "cosine":
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "exponential":
        return start * (end / start) ** progress
    if schedule == "linear":
        return start + (end - start) * progress
    raise ValueError(f"`schedule` must be one of {list(SCHEDULES)}. Received: {schedule!r}")


class ScheduledVariable(keras.callbacks.Callback):
    """Sets a scalar variable of the model every batch from a schedule.

    The value is read from `model.optimizer.iterations`, so a resumed run
    continues its schedule. Keras calls batch callbacks once per execution: with
    `compile(steps_per_execution=N)` the value changes every N steps (the
    schedule's shape is kept, in steps of N).

    Args:
        attribute: str. Name of the model attribute holding the variable.
        start: float. Value at step 0.
        end: float. Value after `steps` steps.
        steps: int. Length of the schedule in optimizer updates.
        schedule: str. One of `"cosine"`, `"exponential"`, `"linear"`.
    """

    def __init__(self, attribute: str, start: float, end: float, steps: int, schedule: str):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"`schedule` must be one of {list(SCHEDULES)}. Received: {schedule!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"`steps` must be an integer >= 0. Received: steps={steps!r}")
        if schedule == "exponential" and not (start > 0 and end > 0):
            raise ValueError(
                "The exponential schedule needs start and end > 0. "
                f"Received: start={start!r}, end={end!r}"
            )
        self.attribute = attribute
        self.start, self.end, self.steps, self.schedule = start, end, steps, schedule

    def set_model(self, model):
        variable = getattr(model, self.attribute, None)
        if not isinstance(variable, keras.Variable):
            raise ValueError(
                f"{type(self).__name__} needs a model with a `{self.attribute}` variable "
                f"(for example {self._expected_models}). Received: {type(model).__name__}."
            )
        super().set_model(model)

    _expected_models = "a zoo model"

    def value_at(self, step: int) -> float:
        """The scheduled value at optimizer step `step`."""
        return schedule_value(step, self.start, self.end, self.steps, self.schedule)

    def _variable(self) -> keras.Variable:
        return getattr(self.model, self.attribute)

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_train_begin(self, logs=None):
        self._variable().assign(self.value_at(self._step()))

    def on_train_batch_begin(self, batch, logs=None):
        self._variable().assign(self.value_at(self._step()))


class TemperatureAnnealing(ScheduledVariable):
    """Anneals the dVAE temperature from `start` to `end` over `steps` updates.

    DALL-E annealed from 1 to 1/16 over its first 150k updates with a cosine
    schedule and reports that a linear schedule typically diverged.

    Args:
        start: float. Temperature at step 0. Defaults to `1.0`.
        end: float. Temperature after `steps` updates. Defaults to `1/16`.
        steps: int. Length of the annealing in optimizer updates.
            Defaults to `150_000`.
        schedule: str. `"cosine"`, `"exponential"` or `"linear"`.
            Defaults to `"cosine"`.

    Example:
    >>> import numpy as np
    >>> import zoo
    >>> from trainers.callbacks import TemperatureAnnealing
    >>> images = np.random.rand(64, 28, 28, 1).astype("float32")  # in [0, 1]
    >>> annealing = TemperatureAnnealing(start=1.0, end=1 / 16, steps=4)
    >>> model = zoo.DVAE()
    >>> model.compile(optimizer="adam")
    >>> history = model.fit(images, epochs=2, batch_size=32, verbose=0,
    ...                     callbacks=[annealing])
    >>> [round(t, 3) for t in history.history["temperature"]]  # mean of 2 steps each
    [0.931, 0.366]
    >>> round(float(model.temperature.numpy()), 3)  # at step 3 (the 4th update)
    0.2
    """

    _expected_models = "zoo.DVAE"

    def __init__(
        self,
        start: float = 1.0,
        end: float = 1.0 / 16.0,
        steps: int = 150_000,
        schedule: str = "cosine",
    ):
        if not (start > 0 and end > 0):
            raise ValueError(
                f"Temperatures must be > 0. Received: start={start!r}, end={end!r}"
            )
        super().__init__("temperature", start, end, steps, schedule)


class KLWarmup(ScheduledVariable):
    """Warms the KL weight up: scales it from 0 to 1 over `steps` updates.

    Sets the model's `kl_warmup` factor (the effective weight is
    `kl_weight * kl_warmup`). DALL-E warmed its KL weight up over the first
    5,000 updates with a cosine schedule.

    Args:
        steps: int. Length of the warm-up in optimizer updates.
            Defaults to `5000`.
        schedule: str. `"cosine"` or `"linear"`. Defaults to `"cosine"`.

    Example:
    >>> import numpy as np
    >>> import zoo
    >>> from trainers.callbacks import KLWarmup
    >>> images = np.random.rand(64, 28, 28, 1).astype("float32")  # in [0, 1]
    >>> model = zoo.VAE()
    >>> model.compile(optimizer="adam")
    >>> history = model.fit(images, epochs=1, batch_size=32, verbose=0,
    ...                     callbacks=[KLWarmup(steps=1000, schedule="linear")])
    >>> round(float(model.kl_warmup.numpy()), 6)  # step 1 of 1000: 0.1 % of the KL weight
    0.001
    """

    _expected_models = "zoo.VAE or zoo.DVAE"

    def __init__(self, steps: int = 5000, schedule: str = "cosine"):
        if schedule == "exponential":
            raise ValueError("KLWarmup starts at 0, so it cannot use the exponential schedule.")
        super().__init__("kl_warmup", 0.0, 1.0, steps, schedule)
