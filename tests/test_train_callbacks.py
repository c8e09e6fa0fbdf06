"""The train command's own callbacks, driven directly (no training run, no subprocess).

The end-to-end runs of test_train_cli.py cover them through a killed and
resumed run; these pin the accounting of a resumed session in seconds.
"""

import json
import math

import keras
import numpy as np
import pytest

from trainers import train_callbacks
from trainers.train_callbacks import AtomicCSVLogger, RunTimeRecorder, StopOnNaN


def test_run_time_recorder_adds_a_session_to_an_earlier_ones_time(tmp_path, monkeypatch):
    path = tmp_path / "run_info.json"
    earlier = {"seconds": 100.0, "epochs_run": 3, "machine": "m", "precision": "float32",
               "onednn": None}
    path.write_text(json.dumps({"train_seconds": 100.0, "sessions": [earlier]}))
    clock = iter([1000.0, 1010.0, 1025.0])  # on_train_begin, then two epoch ends
    monkeypatch.setattr(train_callbacks.time, "monotonic", lambda: next(clock))

    recorder = RunTimeRecorder(path, "mixed_bfloat16")
    recorder.on_train_begin()
    recorder.on_epoch_end(0)
    recorder.on_epoch_end(1)

    info = json.loads(path.read_text())
    assert info["sessions"][0] == earlier  # the earlier session is kept as it was
    assert len(info["sessions"]) == 2  # one entry per session, not per epoch
    assert info["sessions"][1]["epochs_run"] == 2 and info["sessions"][1]["seconds"] == 25.0
    assert info["sessions"][1]["precision"] == "mixed_bfloat16"
    assert info["train_seconds"] == pytest.approx(125.0)  # the sessions add up


def test_csv_logger_keeps_the_rows_of_an_earlier_session(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,0.5\n")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((4, 2), np.float32)
    model.fit(x, x[:, :1], initial_epoch=1, epochs=2, verbose=0,
              callbacks=[AtomicCSVLogger(str(path), append=True)])
    lines = path.read_text().splitlines()
    assert lines[:2] == ["epoch,loss", "0,0.5"]  # the header once, the earlier row kept
    assert len(lines) == 3 and lines[2].startswith("1,")


@pytest.mark.parametrize("loss", [math.nan, math.inf, -math.inf])
def test_stop_on_nan_stops_at_any_non_finite_loss(loss):
    with pytest.raises(FloatingPointError, match="Training diverged"):
        StopOnNaN().on_train_batch_end(3, {"loss": np.float32(loss)})
    StopOnNaN().on_train_batch_end(3, {"loss": np.float32(1.5)})  # a finite loss goes on


def test_stop_on_nan_keeps_the_checkpoint_from_a_last_step_that_diverged(tmp_path):
    # A batch's loss is measured before its update, so the update of an epoch's last
    # step showed in no training loss: one step of SGD at 1e30 per epoch trained to
    # weights whose validation loss is Inf, and last.keras saved them.
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1e30), loss="mse")
    x = np.ones((4, 1), np.float32)
    path = tmp_path / "last.keras"
    with pytest.raises(FloatingPointError, match="val_loss is inf at the end of epoch 1"):
        model.fit(x, x * 10, validation_data=(x, x * 10), epochs=2, batch_size=4, verbose=0,
                  callbacks=[StopOnNaN(), keras.callbacks.ModelCheckpoint(str(path))])
    assert not path.exists()


def test_stop_on_nan_checks_the_weights_at_an_epochs_end():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    stop = StopOnNaN()
    stop.set_model(model)
    stop.on_epoch_end(0, {"loss": 0.5})  # finite weights and loss: goes on
    model.layers[0].bias.assign([np.nan])
    with pytest.raises(FloatingPointError, match="the weights hold NaN or Inf values"):
        stop.on_epoch_end(0, {"loss": 0.5})


def test_stop_on_nan_advises_what_the_run_folder_accepts():
    # It said "lower the learning rate and re-run the same command to resume from
    # them": a lower --learning_rate in the same --model_dir is refused (differing
    # training.learning_rate), and the same command resumes at the rate that diverged.
    with pytest.raises(FloatingPointError) as raised:
        StopOnNaN().on_train_batch_end(3, {"loss": np.float32(math.nan)})
    message = str(raised.value)
    assert "re-run the same command to resume" not in message
    assert "new --model_dir" in message and "--init_from=" in message
