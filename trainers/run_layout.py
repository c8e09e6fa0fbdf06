"""The run layout every training command shares: `fit_run` and how a run resumes.

`fit_run` runs `model.fit` into a run folder (`backup/`, `last.keras`,
`best.keras`, `history.csv`, `logs/`, `run_info.json`) so that a killed
session resumes where its last committed epoch ended. `trainers.training`
(the autoencoders) and `trainers.train_prior` (the Transformer prior) both
train through it.
"""

import csv
import json
import math
import pathlib
import sys

import keras

from trainers import distribute
from trainers.train_callbacks import (
    AtomicCSVLogger,
    AtomicModelCheckpoint,
    RunTimeRecorder,
    StopOnNaN,
)
from zoo import atomic


class _SaveOther(AtomicModelCheckpoint):
    """An `AtomicModelCheckpoint` that writes another model than the one `fit` trains."""

    def __init__(self, saved_model: keras.Model, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.saved_model = saved_model

    def set_model(self, model):
        super().set_model(self.saved_model)  # the checkpoint only uses its model to save it


def best_so_far(model_dir, monitor: str, before_epoch: int | None = None) -> float | None:
    """The lowest `monitor` in the run's `history.csv`, when `best.keras` exists.

    A resumed run starts `best.keras`'s checkpoint from this value, so its
    first epoch cannot replace a better model of the earlier session (Keras's
    `ModelCheckpoint` would start from infinity).

    Args:
        model_dir: the run's folder.
        monitor: str. The column `best.keras` minimises.
        before_epoch: int or `None`. Only rows of earlier epochs count (the
            epoch the backup resumes at: later rows were not committed).

    Returns:
        The value, or `None` for a new run (no `best.keras`, or no finite
        value in the history).
    """
    model_dir = pathlib.Path(model_dir)
    history = model_dir / "history.csv"
    if not (model_dir / "best.keras").is_file() or not history.is_file():
        return None
    with open(history, newline="") as f:
        values = []
        for row in csv.DictReader(f):
            try:
                if before_epoch is not None and int(row.get("epoch") or 0) >= before_epoch:
                    continue  # an epoch the backup did not commit: it runs again
                values.append(float(row.get(monitor) or "nan"))
            except ValueError:
                continue
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else None


def restored_epoch(model_dir) -> int | None:
    """The epoch a run resumes at: what its `backup/` committed (None: no backup)."""
    path = pathlib.Path(model_dir) / "backup" / "training_metadata.json"
    try:
        return int(json.loads(path.read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resumed_stream(model_dir, training: dict) -> dict:
    """Where a resumed run's training stream starts: `skip` and `skip_epochs`.

    The arguments of `data.make_dataset` (and `train_prior`'s dataset) that let
    a resumed run go on where its backup's epoch ended, instead of training
    again on the first epochs' images (every worker reads the chief's backup):
    with `steps_per_epoch`, the images of the repeated stream its committed
    epochs used; without, the committed epochs of the shuffled order.

    Args:
        model_dir: the run's folder.
        training: the run config's `training` dict (`batch_size`,
            `steps_per_epoch`).

    Returns:
        `{"skip": images, "skip_epochs": epochs}`; both 0 for a new run.
    """
    epochs = restored_epoch(model_dir) or 0
    steps = training["steps_per_epoch"]
    if steps is not None:
        return {"skip": epochs * steps * training["batch_size"], "skip_epochs": 0}
    return {"skip": 0, "skip_epochs": epochs}


class _CommitBackup(keras.callbacks.Callback):
    """Saves the `BackupAndRestore` state once every other epoch-end callback ran."""

    def __init__(self, backup):
        super().__init__()
        self.backup = backup

    def on_epoch_end(self, epoch, logs=None):
        self.backup.commit(epoch, logs)


def fit_run(
    model: keras.Model,
    train_ds,
    val_ds,
    *,
    model_dir,
    strategy,
    epochs: int,
    steps_per_epoch: int,
    monitor: str,
    callbacks: list | tuple = (),
    saved_model: keras.Model | None = None,
    pictures: str = "pictures per epoch",
    command: str = "trainers.train",
    evaluate_command: str = "trainers.evaluate",
    verbose="auto",
) -> keras.callbacks.History:
    """Runs `model.fit` with the run layout every training command shares.

    Into `model_dir` (the chief's; other workers write to a temporary copy):
    `backup/` (`BackupAndRestore`, kept after the run so a finished command
    re-run trains no more), `last.keras`, `best.keras` (lowest `monitor`),
    `history.csv`, `logs/` (TensorBoard) and `run_info.json` (wall time,
    added up over resumed sessions); `StopOnNaN` stops at the first
    non-finite loss. The caller writes `config.json` before.

    Args:
        model: the compiled model to fit (built in `strategy.scope()`).
        train_ds: training data for `fit`.
        val_ds: validation data.
        model_dir: the run's folder.
        strategy: the `tf.distribute.Strategy` the model was built under.
        epochs: int. Number of epochs.
        steps_per_epoch: int. Steps per epoch.
        monitor: str. The validation metric `best.keras` minimises.
        callbacks: run-specific callbacks (schedules, pictures), run after
            the checkpoints and logs at each epoch's end.
        saved_model: the model written to `best.keras`/`last.keras`.
            Defaults to `model` (`trainers.train_prior` saves the
            `ImageGenerator` that holds the prior it fits).
        pictures: str. What `images/` holds, for the final message.
        command: str. The training command's module, for the final message.
        evaluate_command: str. The command that evaluates the run, for the
            final message.
        verbose: `"auto"` (progress bars on a terminal, a line per epoch
            otherwise), or a `fit` verbosity (0, 1, 2).

    Returns:
        The `History` of `fit`.
    """
    model_dir = pathlib.Path(model_dir)
    write_dir = pathlib.Path(distribute.write_path(str(model_dir), strategy))

    def checkpoint(path, **kwargs):
        if saved_model is None:
            return AtomicModelCheckpoint(str(path), **kwargs)
        return _SaveOther(saved_model, str(path), **kwargs)

    if distribute.is_chief(strategy):
        for folder in (write_dir, write_dir / "images", write_dir / "backup"):
            atomic.remove_stale(folder)  # what a killed session was writing
    first_epoch = restored_epoch(model_dir) or 0  # where fit resumes (the chief's backup)
    # Kept after the run: re-running a finished command restores the last
    # epoch and trains no more, instead of silently starting over. It restores
    # first (the schedules read the restored step) and saves last (`_CommitBackup`):
    # an epoch counts as done only once its checkpoints, history row, time and
    # pictures are written.
    backup = distribute.WorkerBackupAndRestore(
        str(model_dir / "backup"), strategy, delete_checkpoint=False, commit_last=True
    )
    all_callbacks = [
        backup,
        StopOnNaN(),
        checkpoint(write_dir / "last.keras"),  # write_dir: chief only
        checkpoint(write_dir / "best.keras", monitor=monitor, mode="min", save_best_only=True,
                   initial_value_threshold=best_so_far(write_dir, monitor, first_epoch)),
        AtomicCSVLogger(str(write_dir / "history.csv"), first_epoch, append=True),
        keras.callbacks.TensorBoard(str(write_dir / "logs")),
        RunTimeRecorder(write_dir / "run_info.json", model.dtype_policy.name),
        # Last: a picture that fails does not cost the epoch its checkpoints, history row
        # and time.
        *callbacks,
        _CommitBackup(backup),
    ]
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    history = model.fit(
        train_ds,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=val_ds,
        callbacks=all_callbacks,
        verbose=verbose,
        shuffle=False,  # the dataset shuffles itself
    )
    # A non-chief's backup sits in model_dir/workertemp_<id>/ (write_path of
    # model_dir/backup); it is never read back (workers restore from the chief's).
    distribute.remove_temporary(str(model_dir / "backup"), strategy)
    distribute.remove_temporary(str(model_dir), strategy)
    if distribute.is_chief(strategy) and verbose:
        print(_summary(model_dir, history, epochs, pictures, command, evaluate_command))
    return history


def _summary(model_dir: pathlib.Path, history, epochs: int,
             pictures: str = "reconstructions per epoch", command: str = "trainers.train",
             evaluate_command: str = "trainers.evaluate") -> str:
    """What the run did and where its files are; says so when it was already complete."""
    if not history.epoch:
        more = (f"start a new run from it: python -m trainers.train --init_from={model_dir} "
                f"--model_dir={model_dir}_more --epochs=N (add the same --dataset and other "
                "flags)" if command == "trainers.train" else
                f"run python -m {command} with more --epochs and a new --model_dir")
        return (
            f"\nThe run in {model_dir}/ was already complete ({epochs} epochs; its backup/ "
            f"says so), so nothing was trained and no file changed. To train longer, {more}. "
            f"To evaluate it: python -m {evaluate_command} --model={model_dir}"
        )
    return (
        f"\nRun written to {model_dir}/: config.json, best.keras, last.keras, history.csv, "
        f"logs/ (tensorboard --logdir {model_dir}/logs), images/ ({pictures}), "
        f"backup/ (resume state). Next: python -m {evaluate_command} --model={model_dir}"
    )
