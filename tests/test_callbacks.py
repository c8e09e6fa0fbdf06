"""TemperatureAnnealing and KLWarmup: schedules, resuming, refusing the wrong model."""

import math

import keras
import numpy as np
import pytest

from tests.helpers import random_images, tiny_model
from trainers.callbacks import KLWarmup, TemperatureAnnealing

END = 1.0 / 16.0


class Recorder(keras.callbacks.Callback):
    """Records model attributes at the start of every batch (after the schedulers)."""

    def __init__(self, *attributes):
        super().__init__()
        self.attributes = attributes
        self.values = {name: [] for name in attributes}

    def on_train_batch_begin(self, batch, logs=None):
        for name in self.attributes:
            self.values[name].append(float(getattr(self.model, name).numpy()))


def _drive(callback, model, steps: int, attribute: str) -> list[float]:
    """Runs `callback` as `fit` would at optimizer steps 0..steps-1."""
    callback.set_model(model)
    values = []
    for step in range(steps):
        model.optimizer.iterations.assign(step)
        callback.on_train_batch_begin(step)
        values.append(float(getattr(model, attribute).numpy()))
    return values


@pytest.fixture(scope="module")
def dvae():
    model = tiny_model("dvae")
    model.compile(optimizer="adam")
    return model


@pytest.mark.parametrize("schedule", ["cosine", "exponential", "linear"])
def test_temperature_schedule_is_monotone_and_reaches_the_end(dvae, schedule):
    callback = TemperatureAnnealing(start=1.0, end=END, steps=10, schedule=schedule)
    values = _drive(callback, dvae, 14, "temperature")
    assert values[0] == pytest.approx(1.0)
    assert values[10:] == pytest.approx([END] * 4)
    assert all(a > b for a, b in zip(values[:10], values[1:11], strict=True))
    if schedule == "linear":
        np.testing.assert_allclose(np.diff(values[:11]), (END - 1.0) / 10, rtol=1e-5)
    elif schedule == "exponential":
        ratios = np.array(values[1:11]) / np.array(values[:10])
        np.testing.assert_allclose(ratios, END ** (1 / 10), rtol=1e-5)
    else:
        assert values[5] == pytest.approx((1.0 + END) / 2, rel=1e-5)
        # Cosine: slow at both ends, fastest in the middle.
        steps = -np.diff(values[:11])
        assert steps[0] < steps[4] and steps[-1] < steps[5]


def test_schedule_reads_the_optimizer_step_not_its_own_count(dvae):
    callback = TemperatureAnnealing(start=1.0, end=END, steps=10, schedule="linear")
    callback.set_model(dvae)
    dvae.optimizer.iterations.assign(7)
    callback.on_train_begin()
    assert float(dvae.temperature.numpy()) == pytest.approx(1.0 + 0.7 * (END - 1.0))


def test_fit_anneals_the_temperature_and_a_second_fit_resumes():
    """Two `fit` calls with fresh callbacks (as a restarted job would create)
    continue one schedule; the logged `temperature` is the one used."""
    model = tiny_model("dvae")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = random_images(6)

    def fit_once():
        recorder = Recorder("temperature", "kl_warmup")
        callbacks = [TemperatureAnnealing(steps=4), KLWarmup(steps=2, schedule="linear"), recorder]
        history = model.fit(
            images, epochs=1, batch_size=2, shuffle=False, verbose=0, callbacks=callbacks
        )
        return recorder.values, history.history

    first, history = fit_once()
    second, resumed_history = fit_once()
    expected = [END + (1 - END) * 0.5 * (1 + math.cos(math.pi * min(s / 4, 1))) for s in range(6)]
    assert first["temperature"] + second["temperature"] == pytest.approx(expected, rel=1e-6)
    assert float(model.temperature.numpy()) == pytest.approx(END)
    assert first["kl_warmup"] + second["kl_warmup"] == pytest.approx([0, 0.5, 1, 1, 1, 1])
    assert float(model.kl_warmup.numpy()) == 1.0
    # The compiled train step reads the variable, not a value frozen at tracing.
    assert history["temperature"][-1] == pytest.approx(np.mean(expected[:3]), rel=1e-5)
    assert resumed_history["temperature"][-1] == pytest.approx(np.mean(expected[3:]), rel=1e-5)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_kl_warmup_ramps_from_zero_to_one(schedule):
    for family in ("vae", "dvae"):
        model = tiny_model(family)
        model.compile(optimizer="adam")
        values = _drive(KLWarmup(steps=8, schedule=schedule), model, 11, "kl_warmup")
        assert values[0] == 0.0
        assert values[8:] == [1.0, 1.0, 1.0]
        assert all(a < b for a, b in zip(values[:8], values[1:9], strict=True))


@pytest.mark.parametrize(
    "callback,family,needs",
    [
        (TemperatureAnnealing(), "ae", "temperature"),
        (TemperatureAnnealing(), "vqvae", "temperature"),
        (TemperatureAnnealing(), "vae", "temperature"),
        (KLWarmup(), "ae", "kl_warmup"),
        (KLWarmup(), "vqvae", "kl_warmup"),
    ],
)
def test_refuses_a_model_without_the_variable(callback, family, needs):
    model = tiny_model(family)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=needs) as error:
        model.fit(random_images(2), epochs=1, verbose=0, callbacks=[callback])
    assert type(model).__name__ in str(error.value)
    assert int(model.optimizer.iterations.numpy()) == 0  # refused before training


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TemperatureAnnealing(start=0.0), "start=0.0"),
        (lambda: TemperatureAnnealing(end=-1.0), "end=-1.0"),
        (lambda: TemperatureAnnealing(schedule="step"), "`schedule` must be one of"),
        (lambda: TemperatureAnnealing(steps=-1), "steps=-1"),
        (lambda: TemperatureAnnealing(steps=1.5), "steps=1.5"),
        (lambda: KLWarmup(schedule="exponential"), "cannot use the exponential"),
        (lambda: KLWarmup(steps=-5), "steps=-5"),
    ],
)
def test_invalid_arguments_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()
