"""Run configuration: defaults -> config file -> flags -> `--set` overrides.

A run's config is one JSON-serialisable dict:

    {"model": "dvae",
     "model_config": {...},           # the family's constructor arguments
     "training": {...}}               # everything else, see TRAINING_DEFAULTS

The train command writes the resolved config to `<model_dir>/config.json`,
so any run can be reproduced with `--config=<model_dir>/config.json`.
"""

import copy
import inspect
import json
import os
import pathlib

import zoo

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
    "precision": "float32",
    "init_from": None,
    # dVAE only: the TemperatureAnnealing callback. steps=None -> all steps of the run.
    "temperature_schedule": {"start": 1.0, "end": 1.0 / 16.0, "steps": None, "schedule": "cosine"},
    # VAE and dVAE: KLWarmup over this many steps; None -> 10% of the run, 0 -> no warm-up.
    "kl_warmup_steps": None,
}


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


def default_config(model: str) -> dict:
    """The full default config of a family (`"ae"`, `"vae"`, `"vqvae"`, `"dvae"`)."""
    if model not in zoo.FAMILIES:
        raise ValueError(f"Unknown model {model!r}. Expected one of {sorted(zoo.FAMILIES)}.")
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


def apply_override(config: dict, assignment: str) -> None:
    """Applies one `key=value` in place.

    `key` is a model option (`filters=64`), or a dotted path into the config
    (`training.epochs=3`, `training.temperature_schedule.steps=1000`).
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
    if path[-1] not in node:
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


def load(path: str | os.PathLike) -> dict:
    """Reads a config JSON file."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such config file: {path}")
    return json.loads(path.read_text())


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
        raise ValueError(
            f"--model={model} contradicts the config file's model {from_file['model']!r}."
        )
    config = default_config(name or "dvae")
    config = merge(config, {k: v for k, v in from_file.items() if k != "model"})
    config["training"] = merge(config["training"], training_overrides or {})
    for assignment in assignments:
        apply_override(config, assignment)
    return config


def save(config: dict, path: str | os.PathLike) -> None:
    """Writes a config as indented JSON."""
    pathlib.Path(path).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


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
