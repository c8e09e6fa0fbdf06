r"""Train any zoo family: `python -m trainers.train --model=dvae --model_dir=runs/dvae`.

Into `--model_dir` it writes the resolved `config.json`, `BackupAndRestore`
state (`backup/`: re-running the same command after a crash resumes at the
last finished epoch), `best.keras` (lowest `val_mse`; for the VAE lowest
`val_bits_per_dim`, `trainers.training.MONITOR`) and `last.keras`, TensorBoard logs
(`logs/`), `history.csv`, `run_info.json` (wall time, machine and TensorFlow's oneDNN
answer), and a PNG of validation images and their reconstructions each epoch (`images/`).

Examples:
    python -m trainers.train --model=dvae --model_dir=runs/dvae --epochs=3
    python -m trainers.train --model=vqvae --model_dir=runs/vq --set num_embeddings=256 \
        --set training.batch_size=64
    python -m trainers.train --config=runs/dvae/config.json --model_dir=runs/dvae2
    python -m trainers.train --config=dvae_fashion_mnist --model_dir=runs/recipe  # a recipe
    python -m trainers.train --init_from=dvae_fashion_mnist --dataset=~/my_images \
        --model_dir=runs/finetune --epochs=2

Mistakes in flags, config or data end the command with one line and exit
status 1; re-running a finished command says so and trains no more.
"""

import json
import pathlib

from absl import app, flags, logging

from trainers import cli

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines this command's flags (on `FLAGS` at import, as the multi-worker tests expect)."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_enum("model", None, ["ae", "vae", "vqvae", "dvae"], "Model family.", **fv)
    flags.DEFINE_string("model_dir", None, "Where the run's files go (required).", **fv)
    flags.DEFINE_string(
        "dataset", None, "fashion_mnist, a tensorflow-datasets name, a folder or .npy/.npz; "
        "converted to the model's image_shape (default 28x28x1: --set 'image_shape=[32,32,3]' "
        "for 32x32 RGB).", **fv
    )
    flags.DEFINE_integer("epochs", None, "Number of epochs.", **fv)
    flags.DEFINE_integer("batch_size", None, "Global batch size (split over replicas).", **fv)
    flags.DEFINE_float("learning_rate", None, "Adam learning rate for the global batch (default "
                       "1e-3; 1e-4 with --init_from).", **fv)
    flags.DEFINE_integer("steps_per_epoch", None, "Limit each epoch to this many steps.", **fv)
    flags.DEFINE_integer("seed", None, "Seed of weight initialisation and shuffling (default 0). "
                         "The noise of the VAE, the dVAE and VQ-VAE code restarts has the "
                         "model's own seed: --set seed=N.", **fv)
    flags.DEFINE_string("config", None, "A config JSON (for example another run's config.json), "
                        "or a shipped recipe by name (e.g. dvae_fashion_mnist).", **fv)
    flags.DEFINE_multi_string("set", [], "key=value model option, or training.key=value.", **fv)
    flags.DEFINE_string("init_from", None, "Start from a model: a zoo name, a preset folder, a run "
                        "folder or a .keras file.", **fv)
    flags.DEFINE_enum("strategy", None, ["auto", "one_device", "mirrored", "multi_worker"],
                      "tf.distribute strategy; multi_worker reads TF_CONFIG.", **fv)
    flags.DEFINE_enum("precision", None, ["auto", "float32", "mixed_float16", "mixed_bfloat16"],
                      "Keras dtype policy (default auto: mixed_bfloat16 on CPUs with bfloat16 "
                      "instructions and no GPU, else float32).", **fv)


define_flags()

TRAINING_FLAGS = ("dataset", "epochs", "batch_size", "learning_rate", "steps_per_epoch", "seed",
                  "init_from", "strategy", "precision")


def _check_model_dir(model_dir: pathlib.Path, config: dict) -> None:
    """Refuses to mix two different runs in one model_dir."""
    from trainers import config as config_lib

    saved = model_dir / "config.json"
    if model_dir.exists() and not model_dir.is_dir():
        raise ValueError(f"--model_dir={model_dir} is a file, not a folder.")
    if saved.exists():
        try:
            previous = json.loads(saved.read_text())
        except ValueError as error:
            raise ValueError(f"{saved} (of an earlier run) is not valid JSON: {error}") from error
        current = json.loads(json.dumps(config))
        # A training key an older config lacks had its default then.
        previous["training"] = {**config_lib.TRAINING_DEFAULTS, **previous.get("training", {})}
        if current["training"].get("init_from"):
            # train() saved what the initial model dictates (family, architecture,
            # the temperature start unless given): compare what the run gives.
            start_given = current["training"]["temperature_schedule"]["start"] is not None
            options = current["model_config"]
            previous, current = (_given_by_init_run(previous, options, start_given),
                                 _given_by_init_run(current, options, start_given))
        differ = config_lib.differing_keys(config_lib.comparable(previous),
                                           config_lib.comparable(current))
        if differ:
            raise ValueError(
                f"{model_dir} already holds a run with a different config ({saved}; differing: "
                f"{', '.join(differ)}). Use a new --model_dir, or --config={saved} to resume it."
            )


def _given_by_init_run(config: dict, options: dict, start_given: bool) -> dict:
    """What an `--init_from` run's config sets itself: its training values, the
    model `options` it gives and, if `start_given`, the temperature schedule's
    start and end (else the initial model's temperature sets the start and caps
    the end). The rest comes from the initial model."""
    training = dict(config.get("training", {}))
    schedule = dict(training.get("temperature_schedule", {}))
    if not start_given:
        schedule.pop("start", None)
        schedule.pop("end", None)
    training["temperature_schedule"] = schedule
    model_config = config.get("model_config", {})
    return {"training": training, "model_config": {k: model_config.get(k) for k in options}}



def main(argv, flag_values: flags.FlagValues = FLAGS):
    del argv
    from trainers import config as config_lib
    from trainers.distribute import BackupError
    from trainers.training import train

    fv = flag_values
    cli.require(fv, "model_dir")
    if not (fv.model or fv.config or fv.init_from):
        raise app.UsageError("Give --model (ae, vae, vqvae, dvae), --config or --init_from.")
    overrides = {name: fv[name].value for name in TRAINING_FLAGS if fv[name].present}
    with cli.user_errors("Training refused"):
        config = config_lib.resolve(fv.model, fv.config, overrides, fv.set)
        model_dir = pathlib.Path(fv.model_dir).expanduser()
        _check_model_dir(model_dir, config)
    logging.set_verbosity(logging.WARNING)
    with cli.training_stops():
        with cli.user_errors("Training refused", config_lib.ConfigError, BackupError,
                             FileNotFoundError):
            train(config, model_dir)


if __name__ == "__main__":
    cli.run(main)
