"""The callbacks the train command adds to every run (beyond Keras's own).

Every file they write goes through `zoo.atomic.atomic_path`: a crash or a full
disk leaves the previous good file, never a truncated one.
"""

import io
import json
import math
import pathlib
import time

import keras
import numpy as np

from trainers import images as image_io
from trainers import machine
from zoo import runtime
from zoo.atomic import atomic_path, write_text


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras's `ModelCheckpoint`, writing to a temporary file renamed over the checkpoint.

    Uses `ModelCheckpoint`'s own decision (`_should_save_model`, which also
    tracks the best value) and path formatting (`_get_file_path`) of the
    pinned Keras 3.15; only the write differs.
    """

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):
            with atomic_path(filepath) as tmp:
                if self.save_weights_only:
                    self.model.save_weights(tmp, overwrite=True)
                else:
                    self.model.save(tmp, overwrite=True)


class AtomicCSVLogger(keras.callbacks.CSVLogger):
    """Keras's `CSVLogger` (appending rows), rewriting the whole file atomically each epoch.

    The rows are formatted by `CSVLogger` into memory; the file on disk is
    replaced only by a complete copy, so it is never empty or cut mid-row.

    Args:
        filename: str. The CSV file.
        first_epoch: int or `None`. The epoch this session starts at (a resumed
            run's restored epoch); earlier sessions' rows from it on are dropped.
        **kwargs: `separator`, `append` of `keras.callbacks.CSVLogger`.
    """

    def __init__(self, filename, first_epoch: int | None = None, **kwargs):
        super().__init__(filename, **kwargs)
        self.first_epoch = first_epoch

    def on_train_begin(self, logs=None):
        path = pathlib.Path(self.filename)
        previous = path.read_text() if self.append and path.exists() else ""
        if previous and self.first_epoch is not None:
            # Rows of epochs the backup did not commit (a session killed after writing
            # them) are dropped: those epochs run again and write their rows again.
            header, *rows = previous.splitlines(keepends=True)
            epoch = lambda row: row.split(self.sep, 1)[0]  # noqa: E731 (the first column)
            previous = header + "".join(
                row for row in rows
                if not epoch(row).isdigit() or int(epoch(row)) < self.first_epoch
            )
        self.append_header = not previous.strip()
        self.csv_file = io.StringIO(previous)
        self.csv_file.seek(0, io.SEEK_END)
        self.writer, self.keys = None, None

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        write_text(self.filename, self.csv_file.getvalue())


_DIVERGED_ADVICE = (
    "The checkpoints of the last completed epoch, if any, are kept. The learning rate is part "
    "of the run's config.json (the same command resumes with it, and a lower one is refused "
    "in this --model_dir): give the lower --learning_rate to a new --model_dir, where "
    "trainers.train can start from this run's model with --init_from=<this run's folder>."
)
"""What `StopOnNaN` tells the user to do. Until 2026-12-08 it said "lower the learning rate
and re-run the same command to resume", which the run folder's config check refuses."""


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first NaN/Inf loss by raising, so nothing is saved.

    Keras's `TerminateOnNaN` stops at the end of the epoch, after which the
    epoch-end checkpoints would save the diverged weights. Raising instead
    leaves `last.keras`, `best.keras` and the `BackupAndRestore` state of the
    last good epoch untouched. A batch's loss is computed before that batch's
    update, so the update of an epoch's last step shows in no training loss:
    at the epoch's end (before the checkpoints, which come after this callback)
    the validation loss and the weights themselves are checked too.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(np.asarray(loss).reshape(-1)[0])):
            raise FloatingPointError(
                f"Training diverged: loss is {float(np.asarray(loss).reshape(-1)[0])} at batch "
                f"{batch}. {_DIVERGED_ADVICE}"
            )

    def on_epoch_end(self, epoch, logs=None):
        found = [
            f"{name} is {float(np.asarray(value).reshape(-1)[0])}"
            for name, value in (logs or {}).items()
            if name in ("loss", "val_loss")
            and not math.isfinite(float(np.asarray(value).reshape(-1)[0]))
        ]
        if not found and not all(np.isfinite(w).all() for w in self.model.get_weights()):
            found = ["the weights hold NaN or Inf values"]
        if found:
            raise FloatingPointError(
                f"Training diverged: {', '.join(found)} at the end of epoch {epoch + 1}. "
                f"{_DIVERGED_ADVICE}"
            )


class ReconstructionGrid(keras.callbacks.Callback):
    """Writes a PNG of fixed validation images and their reconstructions each epoch.

    Args:
        images: float32 array (N, H, W, C) in [0, 1], a few images (8-16).
        directory: folder for `epoch_001.png`, `epoch_002.png`, ...
    """

    def __init__(self, images: np.ndarray, directory):
        super().__init__()
        self.images = np.asarray(images, np.float32)
        self.directory = pathlib.Path(directory)

    def on_epoch_end(self, epoch, logs=None):
        reconstructions = self.model.predict(self.images, verbose=0)
        with atomic_path(self.directory / f"epoch_{epoch + 1:03d}.png") as tmp:
            image_io.save_comparison(self.images, reconstructions, tmp)


class RunTimeRecorder(keras.callbacks.Callback):
    """Keeps the run's wall time in `run_info.json`, rewritten at each epoch's end.

    Each `fit` session adds an entry (seconds, epochs run, the machine's CPU
    model and SIMD flags, the precision, whether TensorFlow ran oneDNN's
    kernels) and `train_seconds` is the sum over sessions, so resumed runs add
    up. Written at every epoch's end, a session that is killed keeps the time
    of its finished epochs (the unfinished one runs again when the run
    resumes, and is counted then).

    Args:
        path: the run's `run_info.json`.
        precision: str. The dtype policy the model trains under.
    """

    def __init__(self, path, precision: str):
        super().__init__()
        self.path = pathlib.Path(path)
        self.precision = precision

    def on_train_begin(self, logs=None):
        self._started = time.monotonic()
        self._epochs = 0
        self._info = (json.loads(self.path.read_text()) if self.path.exists()
                      else {"train_seconds": 0.0, "sessions": []})
        self._before = float(self._info["train_seconds"])

    def on_epoch_end(self, epoch, logs=None):
        self._epochs += 1
        seconds = time.monotonic() - self._started
        session = {
            "seconds": round(seconds, 1),
            "epochs_run": self._epochs,
            "machine": machine.describe(),
            "precision": self.precision,
            "onednn": runtime.onednn_enabled(),  # float32 speed on AVX2 CPUs depends on it
        }
        if self._epochs == 1:  # this session's entry, replaced at each later epoch
            self._info["sessions"].append(session)
        self._info["sessions"][-1] = session
        self._info["train_seconds"] = self._before + seconds
        write_text(self.path, json.dumps(self._info, indent=2) + "\n")
