"""The training run behind `python -m trainers.train`, usable from Python too."""

import csv
import json
import math
import pathlib
import sys

import keras
import numpy as np

import zoo
from trainers import callbacks as schedule_callbacks
from trainers import config as config_lib
from trainers import data, distribute, initial_model, sample_quality
from trainers.config import ConfigError
from trainers.train_callbacks import (
    AtomicCSVLogger,
    AtomicModelCheckpoint,
    ReconstructionGrid,
    RunTimeRecorder,
    StopOnNaN,
)
from zoo import atomic
from zoo.perceptual import FeatureMatching

# What "best.keras" minimises: the VAE's bits/dim does not move with the KL
# warm-up; for the others the pixel MSE is the quantity users compare.
MONITOR = {"ae": "val_mse", "vae": "val_bits_per_dim", "vqvae": "val_mse", "dvae": "val_mse"}
GRID_IMAGES = 12
LEARNING_RATE = 1e-3
FINE_TUNING_LEARNING_RATE = 1e-4


def _schedule_callbacks(model, training: dict, total_steps: int) -> list:
    result = []
    if hasattr(model, "temperature"):
        schedule = dict(training["temperature_schedule"])
        steps = schedule.pop("steps")
        steps = max(int(round(0.75 * total_steps)), 1) if steps is None else steps
        result.append(schedule_callbacks.TemperatureAnnealing(steps=steps, **schedule))
    if hasattr(model, "kl_warmup"):
        steps = training["kl_warmup_steps"]
        steps = max(int(round(0.1 * total_steps)), 1) if steps is None else steps
        if steps > 0:
            result.append(schedule_callbacks.KLWarmup(steps=steps))
    return result


def learning_rate_schedule(training: dict, total_steps: int):
    """The learning rate (schedule) a run's optimizer uses."""
    rate, kind = training["learning_rate"], training.get("lr_schedule", "constant")
    if rate is None:
        rate = FINE_TUNING_LEARNING_RATE if training.get("init_from") else LEARNING_RATE
    if kind == "constant":
        return rate
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(rate, max(total_steps, 1), alpha=0.05)
    raise ValueError(f"`lr_schedule` must be 'cosine' or 'constant'. Received: {kind!r}")


def feature_matching(training: dict, image_shape) -> FeatureMatching | None:
    """The perceptual term a run's `feature_matching_weight` asks for (None when 0).

    Raises:
        ConfigError: the network file is not a feature network of
            `trainers.train_classifier --architecture=features` for these images.
    """
    weight = training["feature_matching_weight"]
    if not weight:
        return None
    path = training["feature_network"] or sample_quality.FEATURE_NETWORK_WEIGHTS
    try:
        network = sample_quality.load_classifier(path)
        matching = FeatureMatching(network, sample_quality.feature_map_layers(network), weight)
        matching.check_image_shape(image_shape)
    except ValueError as error:  # a missing file stays a FileNotFoundError
        raise ConfigError(f"training.feature_network={path}: {error}") from error
    return matching


def freeze_parts(model: keras.Model, parts) -> None:
    """Freezes the named parts of a model (`training.freeze`) before it is compiled.

    A frozen part keeps its weights and runs in inference mode in `fit`: a
    frozen encoder gives the codes inference gives (the dVAE's argmax, not a
    relaxed sample) and a frozen VQ-VAE quantizer makes no EMA updates, so
    freezing `["encoder", "quantizer"]` keeps every image's code while the
    decoder learns.

    Args:
        model: a zoo autoencoder.
        parts: names among `trainers.config.FREEZABLE_PARTS`.

    Raises:
        ConfigError: the model has no such part, or nothing would be left to train.
    """
    for part in parts:
        layer = getattr(model, part, None)
        if not isinstance(layer, keras.layers.Layer):
            present = [p for p in config_lib.FREEZABLE_PARTS if hasattr(model, p)]
            raise ConfigError(
                f"training.freeze: {type(model).__name__} has no {part!r}; its parts are "
                f"{present}."
            )
        layer.trainable = False
    if parts and not model.trainable_weights:
        raise ConfigError(f"training.freeze={list(parts)} leaves nothing of the model to train.")


def train(
    config: dict, model_dir, verbose="auto", callbacks=()
) -> tuple[keras.Model, keras.callbacks.History]:
    """Trains the model a resolved config describes, writing the run into `model_dir`.

    Re-running with the same `model_dir` resumes from its `BackupAndRestore`
    state (the last finished epoch). Under `MultiWorkerMirroredStrategy`
    every worker runs this; only the chief writes into `model_dir`.

    Args:
        config: a resolved config (`trainers.config.resolve`).
        model_dir: folder of the run.
        verbose: `"auto"` (progress bars on a terminal, a line per epoch
            otherwise), or a `fit` verbosity (0, 1, 2).
        callbacks: extra Keras callbacks, run after the train command's own
            (the time-to-quality benchmark adds its clock and test evaluation).

    Returns:
        `(model, history)`.

    Example:
    >>> import numpy as np
    >>> from trainers import config as config_lib
    >>> from trainers.training import train
    >>> np.save("images.npy", np.random.randint(0, 256, (100, 28, 28, 1), np.uint8))
    >>> cfg = config_lib.resolve("ae", training_overrides={
    ...     "dataset": "images.npy", "epochs": 2, "batch_size": 16})
    >>> model, history = train(cfg, "runs/ae", verbose=0)
    >>> sorted(history.history)[:4]
    ['loss', 'mse', 'psnr', 'reconstruction_loss']
    >>> import os
    >>> sorted(os.listdir("runs/ae"))
    ['backup', 'best.keras', 'config.json', 'history.csv', 'images', 'last.keras',
     'logs', 'run_info.json']
    """
    # The strategy comes first: a multi-worker strategy must be created
    # before any other TensorFlow op runs in the process.
    try:
        strategy = distribute.make_strategy(config["training"]["strategy"])
    except ValueError as error:  # TF_CONFIG missing or malformed: the user's to fix
        raise ConfigError(str(error)) from None
    config = initial_model.resolve(config)
    training = config["training"]
    keras.utils.set_random_seed(training["seed"])
    model_dir = pathlib.Path(model_dir)
    write_dir = pathlib.Path(distribute.write_path(str(model_dir), strategy))

    image_shape = tuple(config["model_config"]["image_shape"])
    fraction = training["validation_fraction"]
    try:
        train_split = data.load_split(
            training["dataset"], "train", image_shape, fraction, verbose=True
        )
        val_split = data.load_split(training["dataset"], "validation", image_shape, fraction)
    except (ValueError, TypeError) as error:  # a missing file stays a FileNotFoundError
        raise ConfigError(f"--dataset={training['dataset']}: {error}") from error
    note = data.conversion_note(train_split.source_shape, image_shape, training["dataset"],
                                fixed_channels=bool(training.get("init_from")))
    if note and verbose:
        print(note)
    batch_size = training["batch_size"]
    full_epoch = math.ceil(train_split.num_examples / batch_size)
    steps_per_epoch = training["steps_per_epoch"] or full_epoch
    repeat = training["steps_per_epoch"] is not None
    # A resumed run goes on with the stream where its backup's epoch ended, instead of
    # training again on the first epochs' images (every worker reads the chief's backup).
    resumed_steps = (restored_epoch(model_dir) or 0) * steps_per_epoch if repeat else 0
    train_ds = data.make_dataset(
        train_split, batch_size, repeat=repeat, seed=training["seed"],
        skip=resumed_steps * batch_size,
    )
    val_ds = data.make_dataset(val_split, batch_size, shuffle=False)

    with distribute.precision(training["precision"]), strategy.scope():
        if training.get("init_from"):
            model = initial_model.load_with(training["init_from"], config["model_config"],
                                            config["model"])
        else:
            try:
                model = zoo.FAMILIES[config["model"]](**config["model_config"])
            except (TypeError, ValueError) as error:
                raise ConfigError(f"Invalid model_config for {config['model']}: {error}") from error
        freeze_parts(model, training["freeze"])
        model.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate_schedule(training, steps_per_epoch * training["epochs"])
            ),
            feature_matching=feature_matching(training, model.image_shape),
        )

    # Created once the data and the model are known to work: a config that
    # fails (a dataset typo) must not claim model_dir, or leave an empty one.
    write_dir.mkdir(parents=True, exist_ok=True)
    config_lib.save(config, write_dir / "config.json")
    grid_images = np.concatenate([b.numpy() for b in val_ds.take(1)])[:GRID_IMAGES]
    history = fit_run(
        model, train_ds, val_ds, model_dir=model_dir, strategy=strategy,
        epochs=training["epochs"], steps_per_epoch=steps_per_epoch,
        monitor=MONITOR[config["model"]],
        callbacks=[
            *_schedule_callbacks(model, training, steps_per_epoch * training["epochs"]),
            ReconstructionGrid(grid_images, write_dir / "images"),
            *callbacks,
        ],
        pictures="reconstructions per epoch", verbose=verbose,
    )
    return model, history


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
