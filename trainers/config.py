"""Run configuration: defaults -> config file -> flags -> `--set` overrides.

A run's config is one JSON-serialisable dict:

    {"model": "dvae",
     "model_config": {...},           # the family's constructor arguments
     "training": {...}}               # everything else, see TRAINING_DEFAULTS

The train command writes the resolved config to `<model_dir>/config.json`,
so any run can be reproduced with `--config=<model_dir>/config.json`. The
recipes of the pretrained models (the repository's `configs/`, installed as
`trainers/recipes/`) are also found by name: `--config=dvae_fashion_mnist`.
"""

import copy
import inspect
import json
import math
import os
import pathlib

import zoo
from zoo import validation
from zoo.atomic import write_text


class ConfigError(ValueError):
    """A run's config, flags or inputs are invalid: the user's to fix, reported in one line."""


TRAINING_DEFAULTS = {
    "dataset": "fashion_mnist",
    "epochs": 5,
    "batch_size": 128,
    # Adam learning rate for the global batch. None: 1e-3, or 1e-4 when fine-tuning
    # (`init_from`), where a fresh Adam's first full-size steps undo what was learned.
    "learning_rate": None,
    # "cosine": decay to 5% of learning_rate over the run; "constant".
    "lr_schedule": "cosine",
    "validation_fraction": 0.1,
    "steps_per_epoch": None,
    "seed": 0,
    "strategy": "auto",
    # Keras dtype policy; "auto": mixed_bfloat16 on CPUs with bfloat16 instructions
    # (AMX / AVX512_BF16) and no GPU, else float32 (`trainers.distribute.resolve_precision`).
    "precision": "auto",
    "init_from": None,
    # dVAE only: the TemperatureAnnealing callback. steps=None -> all steps of the run.
    "temperature_schedule": {"start": 1.0, "end": 1.0 / 16.0, "steps": None, "schedule": "cosine"},
    # VAE and dVAE: KLWarmup over this many steps; None -> 10% of the run, 0 -> no warm-up.
    "kl_warmup_steps": None,
    # A perceptual term (zoo.perceptual.FeatureMatching) on the feature maps of a frozen
    # network of `trainers.train_classifier --architecture=features`; 0 -> off.
    "feature_matching_weight": 0.0,
    # Its .weights.h5 file; None -> the shipped Fashion-MNIST one (28x28x1 images).
    "feature_network": None,
    # Parts of the model left as they are: "encoder", "quantizer", "decoder". Freezing the
    # encoder (and a VQ-VAE's quantizer) keeps every image's code, so a prior trained on the
    # codes still applies to the fine-tuned decoder (`trainers.training.freeze_parts`).
    "freeze": [],
}

FREEZABLE_PARTS = ("encoder", "quantizer", "decoder")


def constructor_defaults(cls) -> dict:
    """The keyword defaults of a model class and its bases, read without building it.

    (Building a model would start TensorFlow before a multi-worker strategy
    can be configured.)
    """
    defaults = {}
    for klass in reversed(cls.__mro__):
        if "__init__" not in vars(klass) or klass.__module__.split(".")[0] != "zoo":
            continue
        for name, parameter in inspect.signature(klass.__init__).parameters.items():
            if parameter.default is not inspect.Parameter.empty:
                value = parameter.default
                defaults[name] = list(value) if isinstance(value, tuple) else value
    return defaults


def unknown_model(model) -> ConfigError:
    """The error for a `model` that `trainers.train` cannot train (a prior's recipe included)."""
    if model == "prior":
        return ConfigError(
            "This config trains a Transformer prior (\"model\": \"prior\"), which "
            "`trainers.train` does not train; use `python -m trainers.train_prior "
            "--config=...` instead."
        )
    return ConfigError(f"Unknown model {model!r}. Expected one of {sorted(zoo.FAMILIES)}.")


def default_config(model: str) -> dict:
    """The full default config of a family (`"ae"`, `"vae"`, `"vqvae"`, `"dvae"`)."""
    if model not in zoo.FAMILIES:
        raise unknown_model(model)
    model_config = constructor_defaults(zoo.FAMILIES[model])
    training = copy.deepcopy(TRAINING_DEFAULTS)
    return {"model": model, "model_config": model_config, "training": training}


_LITERALS = {"true": True, "false": False, "none": None, "null": None}


def parse_value(text: str):
    """Parses a `--set` value as JSON when it is JSON (numbers, lists, true), else a string.

    `True`/`False`/`None` (any case) are booleans and None too: as a string,
    `"False"` would be truthy.
    """
    if text.strip().lower() in _LITERALS:
        return _LITERALS[text.strip().lower()]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_override(config: dict, assignment: str, known_keys_only: bool = True) -> None:
    """Applies one `key=value` in place.

    `key` is a model option (`filters=64`), or a dotted path into the config
    (`training.epochs=3`, `training.temperature_schedule.steps=1000`). With
    `known_keys_only=False` the last key may be new (checked later).
    """
    if "=" not in assignment:
        raise ValueError(f"--set expects key=value. Received: {assignment!r}")
    key, text = assignment.split("=", 1)
    path = key.strip().split(".")
    if len(path) == 1:
        path = ["model_config", *path]
    node = config
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            raise ValueError(f"Unknown config key {key!r}: {part!r} is not a section.")
        node = node[part]
    if known_keys_only and path[-1] not in node:
        raise ValueError(f"Unknown config key {key!r}. Known keys here: {sorted(node)}")
    node[path[-1]] = parse_value(text)


def merge(base: dict, update: dict) -> dict:
    """Recursively merges `update` into a copy of `base`, refusing unknown keys."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if key not in merged:
            raise ValueError(f"Unknown config key {key!r}. Known keys: {sorted(merged)}")
        if isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def recipes_dir() -> pathlib.Path:
    """The folder of the shipped recipes: `trainers/recipes/` when installed, else `configs/`."""
    package = pathlib.Path(__file__).resolve().parent
    installed = package / "recipes"
    return installed if installed.is_dir() else package.parent / "configs"


def list_recipes() -> list[str]:
    """Names of the shipped recipes (`--config=<name>`), sorted."""
    folder = recipes_dir()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def load(path: str | os.PathLike) -> dict:
    """Reads a config JSON file, or a shipped recipe by name (`"dvae_fashion_mnist"`).

    Raises:
        FileNotFoundError: neither a file nor a recipe (the message lists the recipes).
        ConfigError: the file is not a JSON object (the message names the file).
    """
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        text = str(path)
        recipe = recipes_dir() / f"{text}.json"
        if not any(sep in text for sep in "/\\") and path.suffix != ".json" and recipe.is_file():
            path = recipe
        else:
            raise FileNotFoundError(
                f"No such config file or recipe: {text}. Recipes: {', '.join(list_recipes())}."
            )
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"Config file {path} is not valid JSON: {error}") from error
    if not isinstance(config, dict):
        raise ConfigError(
            f"Config file {path} must hold a JSON object. Received: {type(config).__name__}"
        )
    return config


def resolve(model: str | None, config_file=None, training_overrides=None, assignments=()) -> dict:
    """Resolves a run config: family defaults -> file -> flag values -> `--set`.

    Args:
        model: family name, or `None` to take it from the file.
        config_file: optional path of a config JSON (a full or partial config).
        training_overrides: dict of training values given as flags.
        assignments: `key=value` strings (`--set`).

    Returns:
        The resolved config dict.
    """
    from_file = load(config_file) if config_file else {}
    name = model or from_file.get("model")
    if from_file.get("model") and model and from_file["model"] != model:
        raise ConfigError(
            f"--model={model} contradicts the config file's model {from_file['model']!r}."
        )
    config = default_config(name or "dvae")
    from_file = _with_legacy_layout(from_file, config["model_config"])
    options = from_file.get("model_config", {})
    _check(isinstance(options, dict), "model_config", "a JSON object", options)
    model_assignments = [a for a in assignments if _is_model_option(a)]
    try:
        config = merge(config, {k: v for k, v in from_file.items()
                                if k not in ("model", "model_config")})
        config["training"] = merge(config["training"], training_overrides or {})
        for assignment in assignments:
            if not _is_model_option(assignment):
                apply_override(config, assignment)
        if config["training"].get("init_from"):
            # Only the options given: `trainers.initial_model` checks them against
            # the initial model's own, which give the family and the rest.
            config["model_config"] = dict(options)
            for assignment in model_assignments:
                apply_override(config, assignment, known_keys_only=False)
            config["model"] = name  # None: the family comes from the initial model
            _initial_model_defaults(config["training"], from_file, assignments)
        else:
            config["model_config"] = merge(config["model_config"], options)
            for assignment in model_assignments:
                apply_override(config, assignment)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    validate(config)
    config["training"]["dataset"] = dataset_location(config["training"]["dataset"])
    return config


def dataset_location(dataset):
    """`dataset` as a run records it: a folder or file that exists here becomes its
    absolute path (`~` expanded), so the run's `config.json`, and a preset published
    from it, name the same images from any working directory (`trainers.evaluate
    --model=<run>` reads them from there); `"fashion_mnist"`, a tensorflow-datasets
    name and a path that does not exist are kept as given."""
    if not isinstance(dataset, str) or dataset == "fashion_mnist":
        return dataset
    path = pathlib.Path(dataset).expanduser()
    return os.path.abspath(path) if path.exists() else dataset


def _initial_model_defaults(training: dict, from_file: dict, assignments) -> None:
    """What an `--init_from` run takes from its initial model unless given: no KL
    warm-up (its weight was warmed) and, as `None` until `trainers.initial_model`
    reads it, the dVAE's stored temperature as the schedule's start (a trained
    dVAE sits at its end temperature; restarting at 1.0 would undo the annealing)."""
    if not _gives(from_file, assignments, ("training", "kl_warmup_steps")):
        training["kl_warmup_steps"] = 0
    if not _gives(from_file, assignments, ("training", "temperature_schedule", "start")):
        training["temperature_schedule"]["start"] = None


def _gives(from_file: dict, assignments, path: tuple[str, ...]) -> bool:
    """Whether the config file or a `--set` assignment gives the value at `path`."""
    node = from_file
    for key in path:
        if not isinstance(node, dict) or key not in node:
            break
        node = node[key]
    else:
        return True
    keys = {assignment.split("=", 1)[0].strip() for assignment in assignments}
    return any(".".join(path[:end]) in keys for end in range(2, len(path) + 1))


def _is_model_option(assignment: str) -> bool:
    """Whether a `--set` assignment sets a model option (`filters=64`, `model_config.x=1`)."""
    path = assignment.split("=", 1)[0].strip().split(".")
    return len(path) == 1 or path[0] == "model_config"


def _with_legacy_layout(from_file: dict, defaults: dict) -> dict:
    """A complete config written before the layout arguments existed keeps its layout.

    Such a file (another run's `config.json`, a shipped model's) lists every
    model argument but the layout ones; like `from_config` for `.keras`
    files, it describes `zoo.blocks.LEGACY_LAYOUT`, not today's defaults.
    A partial file (a recipe) takes today's defaults for what it omits.
    """
    from zoo.blocks import LEGACY_LAYOUT

    model_config = from_file.get("model_config")
    if not isinstance(model_config, dict) or set(LEGACY_LAYOUT) & set(model_config):
        return from_file
    if not (set(defaults) - set(LEGACY_LAYOUT)) <= set(model_config):
        return from_file
    return {**from_file, "model_config": {**LEGACY_LAYOUT, **model_config}}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_CHOICES = {
    "lr_schedule": ("cosine", "constant"),
    "strategy": ("auto", "one_device", "mirrored", "multi_worker"),
    "precision": ("auto", "float32", "mixed_float16", "mixed_bfloat16"),
}
_SCHEDULES = ("cosine", "exponential", "linear")


def _check(ok: bool, key: str, expected: str, value) -> None:
    if not ok:
        raise ConfigError(
            f"`{key}` must be {expected}. Received: {value!r} ({type(value).__name__})"
        )


def validate_training(t: dict, evaluate_command: str = "trainers.evaluate") -> None:
    """Checks the training options every train command shares (`trainers.train`, `train_prior`).

    `evaluate_command` is named in the refusal of 0 epochs.

    Raises:
        ConfigError: naming the key, what it must be and what it is.
    """
    _check(isinstance(t["dataset"], str) and t["dataset"].strip() != "", "training.dataset",
           "a dataset name, folder or file", t["dataset"])
    _check(_is_int(t["epochs"]) and t["epochs"] >= 1, "training.epochs",
           f"an integer >= 1 (to evaluate a model without training, use {evaluate_command})",
           t["epochs"])
    _check(_is_int(t["batch_size"]) and t["batch_size"] >= 1, "training.batch_size",
           "an integer >= 1", t["batch_size"])
    _check(t["steps_per_epoch"] is None or (_is_int(t["steps_per_epoch"])
                                            and t["steps_per_epoch"] >= 1),
           "training.steps_per_epoch", "an integer >= 1 or null (whole epochs)",
           t["steps_per_epoch"])
    _check(t["learning_rate"] is None or (_is_number(t["learning_rate"])
                                          and t["learning_rate"] > 0),
           "training.learning_rate", "a number > 0 or null (the default)", t["learning_rate"])
    _check(_is_number(t["validation_fraction"]) and 0 < t["validation_fraction"] < 1,
           "training.validation_fraction", "a number in (0, 1)", t["validation_fraction"])
    _check(_is_int(t["seed"]) and t["seed"] >= 0, "training.seed", "an integer >= 0", t["seed"])
    for key, choices in _CHOICES.items():
        _check(t[key] in choices, f"training.{key}", f"one of {list(choices)}", t[key])


def validate(config: dict) -> dict:
    """Checks the training part of a resolved config; model options are checked by the model.

    Raises:
        ConfigError: naming the key, what it must be and what it is.
    """
    model = config.get("model")
    if model is not None and model not in zoo.FAMILIES:
        raise unknown_model(model)
    _check(isinstance(config.get("model_config"), dict), "model_config", "a JSON object",
           config.get("model_config"))
    if "image_shape" in config["model_config"]:  # read by the data pipeline before the model
        try:
            validation.image_shape(config["model_config"]["image_shape"])
        except (ValueError, TypeError) as error:
            raise ConfigError(
                f"`model_config.image_shape` must be [height, width, channels], e.g. "
                f"[28, 28, 1] (`--set image_shape=[28,28,1]`): {error}"
            ) from None
    t = config["training"]
    validate_training(t)
    _check(t["init_from"] is None or (isinstance(t["init_from"], str) and t["init_from"] != ""),
           "training.init_from", "a zoo name, preset or run folder, .keras file, or null",
           t["init_from"])
    _check(t["kl_warmup_steps"] is None or (_is_int(t["kl_warmup_steps"])
                                            and t["kl_warmup_steps"] >= 0),
           "training.kl_warmup_steps", "an integer >= 0 or null (10 % of the run)",
           t["kl_warmup_steps"])
    _check(_is_number(t["feature_matching_weight"]) and t["feature_matching_weight"] >= 0,
           "training.feature_matching_weight", "a number >= 0 (0: off)",
           t["feature_matching_weight"])
    _check(t["feature_network"] is None or (isinstance(t["feature_network"], str)
                                            and t["feature_network"] != ""),
           "training.feature_network", "a .weights.h5 file or null (the shipped one)",
           t["feature_network"])
    freeze = t["freeze"]
    _check(isinstance(freeze, list) and all(p in FREEZABLE_PARTS for p in freeze)
           and len(set(freeze)) == len(freeze),
           "training.freeze", f"a list of distinct parts among {list(FREEZABLE_PARTS)} (as in "
           "--set 'training.freeze=[\"encoder\"]')", freeze)
    schedule = t["temperature_schedule"]
    _check(isinstance(schedule, dict) and set(schedule) == {"start", "end", "steps", "schedule"},
           "training.temperature_schedule", "an object with start, end, steps, schedule",
           schedule)
    for key in ("start", "end"):
        from_model = key == "start" and schedule[key] is None and t["init_from"]
        _check(from_model or (_is_number(schedule[key]) and schedule[key] > 0),
               f"training.temperature_schedule.{key}", "a number > 0", schedule[key])
    _check(schedule["steps"] is None or (_is_int(schedule["steps"]) and schedule["steps"] >= 1),
           "training.temperature_schedule.steps", "an integer >= 1 or null (75 % of the run)",
           schedule["steps"])
    _check(schedule["schedule"] in _SCHEDULES, "training.temperature_schedule.schedule",
           f"one of {list(_SCHEDULES)}", schedule["schedule"])
    return config


def save(config: dict, path: str | os.PathLike) -> None:
    """Writes a config as indented JSON (atomically)."""
    write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


EXECUTION_KEYS = ("strategy",)
"""Training keys that say where a run executes, not what it computes (the batch is global)."""


def comparable(config: dict) -> dict:
    """`config` without its `EXECUTION_KEYS`, its dataset as `dataset_location`
    records it: what a rerun into the same model_dir must match.

    A run resumes under another strategy (a multi-worker job on one machine
    after losing a worker, two GPUs instead of one): its steps are the same
    global-batch steps. A run recorded with a relative dataset path resumes
    from the folder it was started in.
    """
    training = {k: v for k, v in config.get("training", {}).items() if k not in EXECUTION_KEYS}
    if "dataset" in training:
        training["dataset"] = dataset_location(training["dataset"])
    return {**config, "training": training}


def differing_keys(previous: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configs (to name them in refusals)."""
    keys = []
    for key in sorted(set(previous) | set(current)):
        old, new = previous.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            keys += differing_keys(old, new, f"{prefix}{key}.")
        elif old != new:
            keys.append(prefix + key)
    return keys
