"""The training run behind `python -m trainers.train`, usable from Python too."""

import math
import pathlib

import keras
import numpy as np

import zoo
from trainers import callbacks as schedule_callbacks
from trainers import config as config_lib
from trainers import data, distribute, initial_model, sample_quality
from trainers.config import ConfigError
from trainers.run_layout import (  # noqa: F401  (best_so_far re-exported)
    best_so_far,
    fit_run,
    restored_epoch,
    resumed_stream,
)
from trainers.train_callbacks import ReconstructionGrid
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
        val_split = data.load_split(
            training["dataset"], "validation", image_shape, fraction, verbose=True
        )
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
    train_ds = data.make_dataset(
        train_split, batch_size, repeat=repeat, seed=training["seed"],
        **resumed_stream(model_dir, training),
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
