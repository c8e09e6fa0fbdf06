r"""Train a class-conditional prior over a frozen autoencoder's codes.

    python -m trainers.train_prior --autoencoder=dvae_fashion_mnist --model_dir=runs/prior

`--autoencoder` is a zoo name, a preset or run folder, or a `.keras` file
of a VQ-VAE or dVAE. The labelled dataset (`--dataset`, see
`trainers.labels`) is encoded once by the frozen autoencoder, with a
progress bar, into `<model_dir>/codes.npz` (codes and labels of the training
and validation splits; reused when the run resumes), then a
`zoo.TransformerPrior` trains on `(codes, labels)` with `fit`.

The run layout is `trainers.train`'s (`trainers.run_layout.fit_run`):
resolved `config.json`, `best.keras` (lowest `val_bits_per_image`) and
`last.keras`, `backup/` (re-running the command resumes), `logs/`,
`history.csv`, `run_info.json`, and each epoch `images/epoch_NNN.png`, a
grid of samples with one row per class. The `.keras` files hold the whole
`zoo.ImageGenerator` (the autoencoder, the prior and the class names), so
`trainers.generate --model=<model_dir>` and `keras.saving.load_model` give
a generator directly; `generator.prior` is the trained prior.

Examples:
    python -m trainers.train_prior --autoencoder=vqvae_fashion_mnist --model_dir=runs/pv \
        --epochs=10 --set num_layers=4
    python -m trainers.train_prior --config=configs/prior_dvae_fashion_mnist.json \
        --model_dir=runs/zoo/prior_dvae_fashion_mnist
"""

import json
import pathlib

from absl import flags, logging

from trainers import cli

FLAGS = flags.FLAGS
TRAINING_FLAGS = ("dataset", "epochs", "batch_size", "learning_rate", "steps_per_epoch", "seed",
                  "strategy", "precision")
TRAINING_DEFAULTS = {
    "dataset": "fashion_mnist",
    "epochs": 10,
    "batch_size": 128,
    "learning_rate": 1e-3,
    "lr_schedule": "cosine",
    "validation_fraction": 0.1,
    "steps_per_epoch": None,
    "seed": 0,
    "strategy": "auto",
    "precision": "float32",
    "encode_batch_size": 500,
}
# The sampling options the epoch pictures and the published figures use (`sampling.top_k=...`);
# `guidance_scale` is also the trained generator's own default (`ImageGenerator.guidance_scale`).
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_k": None, "guidance_scale": 1.0}
# Taken from the autoencoder and the dataset when left at None.
DERIVED = ("num_embeddings", "grid_shape", "num_classes")
MONITOR = "val_bits_per_image"
CODES_FILE = "codes.npz"


def define_flags() -> None:
    """Defines this command's flags (only when it runs, as `trainers.evaluate`)."""
    flags.DEFINE_string("autoencoder", None,
                        "VQ-VAE or dVAE: zoo name, preset or run folder, or .keras file.")
    flags.DEFINE_string("model_dir", None, "Where the run's files go (required).")
    flags.DEFINE_string("dataset", None, "A labelled source: fashion_mnist, .npz, class folders.")
    flags.DEFINE_integer("epochs", None, "Number of epochs.")
    flags.DEFINE_integer("batch_size", None, "Global batch size (split over replicas).")
    flags.DEFINE_float("learning_rate", None, "Adam learning rate (cosine decay to 5 %).")
    flags.DEFINE_integer("steps_per_epoch", None, "Limit each epoch to this many steps.")
    flags.DEFINE_integer("seed", None, "Seed of weights, shuffling and dropout (default 0). The "
                         "condition dropout has the prior's own seed: --set seed=N.")
    flags.DEFINE_string("config", None, "A config JSON (for example another run's config.json), "
                        "or a shipped recipe by name (e.g. prior_dvae_fashion_mnist).")
    flags.DEFINE_multi_string("set", [], "key=value prior option, or training.key=value.")
    flags.DEFINE_enum("strategy", None, ["auto", "one_device", "mirrored", "multi_worker"],
                      "tf.distribute strategy; multi_worker reads TF_CONFIG.")
    flags.DEFINE_enum("precision", None, ["float32", "mixed_float16", "mixed_bfloat16"],
                      "Keras dtype policy.")


def default_config() -> dict:
    """The default prior config: `zoo.TransformerPrior`'s defaults and `TRAINING_DEFAULTS`."""
    import copy

    import zoo
    from trainers.config import constructor_defaults

    model_config = {name: None for name in DERIVED}
    model_config.update(constructor_defaults(zoo.TransformerPrior))
    return {"model": "prior", "autoencoder": None, "model_config": model_config,
            "training": copy.deepcopy(TRAINING_DEFAULTS), "sampling": dict(SAMPLING_DEFAULTS)}


def resolve(autoencoder=None, config_file=None, training_overrides=None, assignments=()) -> dict:
    """Resolves a prior config: defaults -> file -> flags -> `--set` (as `trainers.config`)."""
    from trainers import config as config_lib

    from_file = config_lib.load(config_file) if config_file else {}
    if from_file.get("model", "prior") != "prior":
        raise ValueError(f"{config_file} is a {from_file['model']!r} config, not a prior's.")
    config = config_lib.merge(default_config(), from_file)
    config["training"] = config_lib.merge(config["training"], training_overrides or {})
    if autoencoder:
        config["autoencoder"] = str(autoencoder)
    for assignment in assignments:
        config_lib.apply_override(config, assignment)
    if not config["autoencoder"]:
        raise ValueError("No autoencoder: give --autoencoder (or `autoencoder` in --config).")
    config["training"]["dataset"] = config_lib.dataset_location(config["training"]["dataset"])
    return validate(config)


def validate(config: dict) -> dict:
    """Checks the training and sampling options of a resolved prior config.

    Before any work: the codes are encoded first, and the sampling options are
    first used at the end of the first epoch (its picture).

    Raises:
        ConfigError: naming the key, what it must be and what it is.
    """
    from trainers import config as config_lib
    from zoo import validation

    training, sampling = config["training"], config["sampling"]
    config_lib.validate_training(training, evaluate_command="trainers.evaluate_prior")
    checks = {
        "training.encode_batch_size": (validation.positive_int, training["encode_batch_size"]),
        "sampling.temperature": (validation.positive_float, sampling["temperature"]),
        "sampling.top_k": (validation.non_negative_int,
                           0 if sampling["top_k"] is None else sampling["top_k"]),
        "sampling.guidance_scale": (validation.non_negative_float, sampling["guidance_scale"]),
    }
    for key, (check, value) in checks.items():
        try:
            check(key, value)
        except ValueError as error:
            raise config_lib.ConfigError(str(error)) from None
    if config["model_config"].get("condition_dropout") == 0 and sampling["guidance_scale"] != 1:
        raise config_lib.ConfigError(
            "`sampling.guidance_scale` must be 1 when `condition_dropout` is 0: guidance mixes "
            "in the prior's predictions without a condition, which only a condition dropout "
            "> 0 trains. Received: sampling.guidance_scale="
            f"{sampling['guidance_scale']!r}, condition_dropout=0."
        )
    return config


def check_model_dir(model_dir: pathlib.Path, config: dict) -> None:
    """Refuses to mix two different runs in one model_dir (derived sizes left at None match)."""
    from trainers import config as config_lib

    saved = model_dir / "config.json"
    if not saved.exists():
        return
    previous = json.loads(saved.read_text())
    current = json.loads(json.dumps(config))
    for name in DERIVED:
        if current["model_config"].get(name) is None:
            current["model_config"][name] = previous.get("model_config", {}).get(name)
    differ = config_lib.differing_keys(config_lib.comparable(previous),
                                       config_lib.comparable(current))
    if differ:
        raise ValueError(
            f"{model_dir} already holds a run with a different config ({saved}; differing: "
            f"{', '.join(differ)}). Use a new --model_dir, or --config={saved} to resume it."
        )


def codes_fingerprint(autoencoder, training: dict) -> str:
    """sha256 of what the codes depend on: the autoencoder's weights and the data it encodes.

    The data is named by `dataset` and `validation_fraction`, not hashed: a file
    replaced at the same path keeps the fingerprint.
    """
    import hashlib

    digest = hashlib.sha256(json.dumps(
        [str(training["dataset"]), training["validation_fraction"],
         list(autoencoder.image_shape)]).encode())
    for weight in autoencoder.weights:
        value = weight.numpy()
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def load_codes(write_dir: pathlib.Path, autoencoder, training: dict) -> dict:
    """The run's codes and labels: read from `codes.npz`, or encoded once and written there.

    The file is reused only if it holds codes of this autoencoder (its weights, not
    its path) and dataset (`codes_fingerprint`); otherwise the codes are encoded again.
    """
    import numpy as np

    from trainers import data, generation, labels

    path = write_dir / CODES_FILE
    fingerprint = codes_fingerprint(autoencoder, training)
    if path.exists():
        with np.load(path) as archive:
            arrays = {key: archive[key] for key in archive.files}
        if str(arrays.pop("fingerprint", "")) == fingerprint:
            print(f"Reusing the codes in {path}.")
            return arrays
        print(f"The codes in {path} are of another autoencoder or dataset (or were written "
              "before codes were fingerprinted): encoding them again.")
    arrays = {}
    fraction = training["validation_fraction"]
    for split in ("train", "validation"):
        images = data.load_split(training["dataset"], split, autoencoder.image_shape,
                                 fraction, verbose=True).images  # a folder: its progress
        print(f"Encoding the {split} split ({len(images)} images) with the frozen autoencoder:")
        arrays[f"{split}_codes"] = generation.encode_images(
            autoencoder, images, training["encode_batch_size"])
        arrays[f"{split}_labels"] = labels.load_labels(training["dataset"], split, fraction)
    temporary = path.with_name(".tmp-" + path.name)
    np.savez(temporary, **arrays, fingerprint=np.array(fingerprint))
    temporary.replace(path)  # a killed run never leaves half a codes file
    return arrays


def _dataset(codes, ids, batch_size: int, shuffle: bool, repeat: bool, seed: int,
             skip: int = 0, skip_epochs: int = 0):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((codes, ids))
    if shuffle:
        dataset = dataset.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat().skip(skip)  # skip: where a resumed run's stream left off
    dataset = dataset.batch(batch_size)
    if skip_epochs:  # a resumed run of whole epochs: the order of its next epoch (make_dataset)
        dataset = dataset.repeat().skip(skip_epochs * -(-len(ids) // batch_size))
    return dataset.prefetch(tf.data.AUTOTUNE)


def train_prior(config: dict, model_dir, verbose="auto"):
    """Trains the prior a resolved config describes, writing the run into `model_dir`.

    Returns:
        `(generator, history)`: the `zoo.ImageGenerator` and `fit`'s history.
    """
    import math

    import keras

    import zoo
    from trainers import config as config_lib
    from trainers import distribute, generation, labels
    from trainers.run_layout import fit_run, resumed_stream
    from trainers.runs import load_model_from
    from trainers.training import learning_rate_schedule

    # The strategy comes first: a multi-worker strategy must be created
    # before any other TensorFlow op runs in the process.
    strategy = distribute.make_strategy(config["training"]["strategy"])
    training = config["training"]
    keras.utils.set_random_seed(training["seed"])
    model_dir = pathlib.Path(model_dir)
    write_dir = pathlib.Path(distribute.write_path(str(model_dir), strategy))

    autoencoder = load_model_from(config["autoencoder"])
    try:
        generation.check_discrete(autoencoder)
    except TypeError as error:  # the user's choice of model: a one-line refusal
        raise ValueError(f"--autoencoder={config['autoencoder']}: {error}") from error
    write_dir.mkdir(parents=True, exist_ok=True)  # after the refusals above: no empty folder
    autoencoder.trainable = False
    names = labels.class_names(training["dataset"])
    arrays = load_codes(write_dir, autoencoder, training)
    model_config = dict(config["model_config"])
    derived = {"num_embeddings": autoencoder.num_embeddings,
               "grid_shape": list(autoencoder.latent_grid), "num_classes": len(names)}
    for name, value in derived.items():
        if model_config[name] is not None and model_config[name] != value:
            raise ValueError(
                f"`{name}` must match the autoencoder and dataset ({value}). Received: "
                f"{model_config[name]}")
        model_config[name] = value
    config = {**config, "model_config": model_config}

    batch_size = training["batch_size"]
    num_train = len(arrays["train_labels"])
    steps_per_epoch = training["steps_per_epoch"] or math.ceil(num_train / batch_size)
    repeat = training["steps_per_epoch"] is not None
    train_ds = _dataset(arrays["train_codes"], arrays["train_labels"], batch_size, True,
                        repeat, training["seed"], **resumed_stream(model_dir, training))
    val_ds = _dataset(arrays["validation_codes"], arrays["validation_labels"], batch_size,
                      False, False, training["seed"])
    with distribute.precision(training["precision"]), strategy.scope():
        kwargs = {**model_config, "grid_shape": tuple(model_config["grid_shape"])}
        prior = zoo.TransformerPrior(**kwargs)
        prior.compile(optimizer=keras.optimizers.Adam(
            learning_rate_schedule(training, steps_per_epoch * training["epochs"])))
        generator = zoo.ImageGenerator(autoencoder, prior, names,
                                       guidance_scale=config["sampling"]["guidance_scale"])
    config_lib.save(config, write_dir / "config.json")
    history = fit_run(
        prior, train_ds, val_ds, model_dir=model_dir, strategy=strategy,
        epochs=training["epochs"], steps_per_epoch=steps_per_epoch, monitor=MONITOR,
        callbacks=[generation.SampleGrid(generator, write_dir / "images",
                                         **config["sampling"])],
        saved_model=generator, pictures="samples per epoch, one row per class",
        command="trainers.train_prior", evaluate_command="trainers.evaluate_prior",
        verbose=verbose,
    )
    return generator, history


def main(argv):
    del argv
    cli.require(FLAGS, "model_dir")
    overrides = {name: FLAGS[name].value for name in TRAINING_FLAGS if FLAGS[name].present}
    with cli.user_errors("Training refused"):
        config = resolve(FLAGS.autoencoder, FLAGS.config, overrides, FLAGS.set)
        model_dir = pathlib.Path(FLAGS.model_dir).expanduser()
        check_model_dir(model_dir, config)
    logging.set_verbosity(logging.WARNING)
    with cli.training_stops():
        # The user's to fix: a bad autoencoder or dataset, unlabelled data, a bad --set value.
        # (Not TypeError: one raised inside fit is a bug and keeps its traceback.)
        with cli.user_errors("Training refused", ValueError, FileNotFoundError):
            train_prior(config, model_dir)


if __name__ == "__main__":
    cli.run(main, define_flags)
