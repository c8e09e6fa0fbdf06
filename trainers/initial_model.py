"""The initial model of a fine-tuning run (`--init_from`) and the settings it keeps.

A run that starts from a trained model takes its family and architecture from
that model. Model options the run gives (`--set kl_weight=0`, a config file's
`model_config`) are checked against the model's own: one that leaves every
weight's shape alone (a loss weight such as `kl_weight`, `commitment_cost` or
`diversity_weight`, the dVAE's `straight_through`, the nominal `image_shape`
of these fully convolutional models) rebuilds the model with it and copies the
weights; one that would change a weight's shape (`num_embeddings`, `filters`)
or that the model does not have is refused, naming it. A VQ-VAE can start a
dVAE run (`--model=dvae`): it is converted by `zoo.DVAE.from_vqvae`.
"""

import keras

import zoo
from trainers import runs
from trainers.config import TRAINING_DEFAULTS, ConfigError


def load(init_from: str, family: str | None = None) -> keras.Model:
    """Loads the model `init_from` names (`runs.load_model_from`), as a `ConfigError` if bad.

    A VQ-VAE loaded for a `"dvae"` run becomes the dVAE that gives its codes
    and reconstructions (`zoo.DVAE.from_vqvae`).
    """
    try:
        model = runs.load_model_from(init_from)
    except ValueError as error:  # a missing file stays a FileNotFoundError
        raise ConfigError(f"--init_from={init_from}: {error}") from error
    if family == "dvae" and isinstance(model, zoo.VQVAE):
        return zoo.DVAE.from_vqvae(model)
    return model


def family_of(model: keras.Model) -> str:
    """The family name (`"dvae"`, ...) of a zoo model (a `DalleDVAE` is a `"dvae"`).

    Raises:
        ConfigError: `model` is not one of the zoo's autoencoders.
    """
    for name, cls in zoo.FAMILIES.items():
        if isinstance(model, cls):
            return name
    hint = (
        " A generator's prior trains with `python -m trainers.train_prior`."
        if isinstance(model, (zoo.ImageGenerator, zoo.TransformerPrior)) else ""
    )
    raise ConfigError(
        f"The initial model is a {type(model).__name__}, not one of the zoo's autoencoders "
        f"({', '.join(zoo.FAMILIES)}).{hint}"
    )


def settings(model: keras.Model) -> dict:
    """A model's constructor arguments (its config without Keras's `name` and `trainable`)."""
    config = model.get_config()
    config.pop("name", None)
    config.pop("trainable", None)
    return config


def resolve(config: dict) -> dict:
    """For `init_from` runs: takes family and architecture from the initial model.

    The run's `model_config` holds only the options it gives; the resolved
    config holds the initial model's settings with those applied (refused
    when one is unknown or would change a weight's shape). A dVAE's
    temperature schedule starts at the `temperature` option the run gives,
    else at the stored temperature, unless the run gives a start
    (`trainers.config` leaves it `None`).

    Args:
        config: a config from `trainers.config.resolve`.

    Returns:
        The config the run trains with (the input when it has no `init_from`).

    Raises:
        ConfigError: the model cannot be loaded, or contradicts the config.
    """
    init_from = config["training"].get("init_from")
    if not init_from:
        return config
    model = load(init_from, config.get("model"))
    family = family_of(model)
    if config.get("model") not in (None, family):
        raise ConfigError(
            f"--model={config['model']} contradicts --init_from={init_from}, which is a "
            f"{family} ({type(model).__name__}). Drop --model (the family comes from the "
            "initial model), or train a new model without --init_from."
            + (" A VQ-VAE can also start a dVAE run: --model=dvae converts it "
               "(zoo.DVAE.from_vqvae)." if isinstance(model, zoo.VQVAE) else "")
        )
    model_config = reconciled(model, config["model_config"], init_from)
    training = config["training"]
    schedule = training["temperature_schedule"]
    if schedule["start"] is None:  # not given: a given `temperature`, else the model's
        if hasattr(model, "temperature"):
            start = float(config["model_config"].get("temperature", model.temperature.numpy()))
            schedule = {**schedule, "start": start, "end": min(schedule["end"], start)}
        else:
            schedule = {**schedule, "start": TRAINING_DEFAULTS["temperature_schedule"]["start"]}
        training = {**training, "temperature_schedule": schedule}
    return {**config, "model": family, "model_config": model_config, "training": training}


def reconciled(model: keras.Model, options: dict, init_from: str) -> dict:
    """The model's settings with `options` applied; refuses what its weights cannot take."""
    stored = settings(model)
    unknown = sorted(set(options) - set(stored))
    if unknown:
        raise ConfigError(
            f"Unknown model option(s) {', '.join(unknown)} for --init_from={init_from}, a "
            f"{type(model).__name__}. Known: {', '.join(sorted(stored))}."
        )
    merged = {**stored, **options}
    if merged != stored:
        rebuilt(model, merged, init_from)  # refuses a change of architecture
    return merged


def load_with(init_from: str, model_config: dict, family: str) -> keras.Model:
    """Loads the initial model as a `family` model (see `load`), rebuilt with
    `model_config` when that differs from its own.

    Call it in the run's dtype policy and strategy scope: a rebuilt or
    converted model's variables are created there. Neither is compiled.
    """
    model = load(init_from, family)
    if model_config == settings(model):
        return model
    return rebuilt(model, model_config, init_from)


def rebuilt(model: keras.Model, model_config: dict, init_from: str) -> keras.Model:
    """A new model of the same class from `model_config`, holding `model`'s weights."""
    stored = settings(model)
    changed = sorted(k for k, v in stored.items() if model_config.get(k) != v)
    given = ", ".join(f"{k}={model_config.get(k)!r}" for k in changed)
    try:
        new = type(model).from_config(model_config)
        if not new.built:
            new.build()
    except (TypeError, ValueError) as error:
        raise ConfigError(f"--init_from={init_from} with {given}: {error}") from error
    shapes = [tuple(w.shape) for w in model.weights]
    if [tuple(w.shape) for w in new.weights] != shapes:
        was = ", ".join(f"{k}={stored[k]!r}" for k in changed)
        hint = ""
        old_shape, new_shape = stored.get("image_shape"), model_config.get("image_shape")
        if old_shape and new_shape and list(old_shape)[-1] != list(new_shape)[-1]:
            kept = [*list(new_shape)[:-1], list(old_shape)[-1]]
            hint = (f" Its first and last convolutions are made for {old_shape[-1]} channel(s), "
                    f"not {new_shape[-1]}; its height and width can change: --set "
                    f"'image_shape=[{','.join(map(str, kept))}]' keeps {old_shape[-1]} "
                    "channel(s).")
        raise ConfigError(
            f"--init_from={init_from} with {given}: its weights do not fit the model these "
            f"options describe ({was} there).{hint} The architecture comes from the initial "
            "model: drop the option, or train a new model without --init_from."
        )
    new.set_weights(model.get_weights())
    return new
