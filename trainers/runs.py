"""Finding and loading a model: the one resolver behind every command's `--model`.

A model is given as a zoo name (`dvae_fashion_mnist`), a preset folder
(written by `save_to_preset` or `trainers.publish`), a training run folder
(`best.keras`, else `last.keras`) or a `.keras` file.
"""

import json
import os
import pathlib
import warnings

import keras

from trainers.cli import MODEL_HELP  # noqa: F401  (the --model flag's help, without TF)
from zoo import keras_file, presets, tensor_checks

MODEL_FILES = ("best.keras", "last.keras")


def find_model_file(model_dir: str | os.PathLike) -> pathlib.Path:
    """The model a run produced: `best.keras`, else `last.keras`.

    A file that is not a complete `.keras` archive (for instance truncated by
    a full disk in an older version) is skipped with a warning.

    Args:
        model_dir: str or PathLike. A folder written by `trainers.train`.

    Returns:
        pathlib.Path. The model file.

    Raises:
        FileNotFoundError: no valid model file (naming the files looked for).
    """
    model_dir = pathlib.Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(
            f"No trained model in {model_dir}: it is not a folder (looked for "
            f"{', '.join(MODEL_FILES)})."
        )
    for name in MODEL_FILES:
        path = model_dir / name
        if path.exists():
            try:
                return keras_file.check_keras_file(path)
            except ValueError as error:
                warnings.warn(f"Skipping {error}", stacklevel=2)
    raise FileNotFoundError(
        f"No trained model in {model_dir}: looked for {', '.join(MODEL_FILES)} "
        f"(the folder holds {sorted(p.name for p in model_dir.iterdir()) or 'nothing'}). "
        "Train one with `python -m trainers.train --model_dir=...`."
    )


def locate_model(spec: str | os.PathLike) -> pathlib.Path:
    """Resolves a model spec to a `.keras` file or a preset folder, checking it exists.

    Args:
        spec: str or PathLike. A zoo name, a preset folder, a run folder or a
            `.keras` file.

    Returns:
        pathlib.Path. The `.keras` file, or the preset folder (for zoo names
        and preset folders).

    Raises:
        FileNotFoundError: a path that does not exist, or a folder without a model.
        ValueError: an unknown name, or a broken `.keras` file.
    """
    text = os.fspath(spec)
    if not text:
        raise ValueError(
            "Expected a model: a zoo name, a preset folder, a run folder or a .keras file. "
            "Received: an empty string."
        )
    path = pathlib.Path(text).expanduser()
    is_path = any(sep in text for sep in "/\\")
    if not is_path and path.suffix != ".keras" and presets.lookup(text) is not None:
        return presets.lookup(text)  # a zoo name wins over a folder of that name here
    if path.suffix == ".keras":
        if not path.exists():
            raise FileNotFoundError(f"No such .keras file: {path}")
        return keras_file.check_keras_file(path)
    if path.is_dir():
        if (path / presets.MANIFEST).exists() or (path / presets.MODEL_FILE).exists():
            return path
        if any((path / name).exists() for name in MODEL_FILES):
            return find_model_file(path)
        raise FileNotFoundError(
            f"No model in {path}: looked for a training run's {', '.join(MODEL_FILES)} and a "
            f"preset's {presets.MODEL_FILE} (the folder holds "
            f"{sorted(p.name for p in path.iterdir()) or 'nothing'}). Train one with "
            "`python -m trainers.train --model_dir=...`."
        )
    if is_path:
        raise FileNotFoundError(f"No such model folder or file: {path}")
    return presets.find(text)


def load_model_from(spec: str | os.PathLike, learning_rate: float = 1e-4) -> keras.Model:
    """Loads the model a spec names (see `locate_model`), in Keras safe mode, compiled.

    Zoo names and preset folders are verified against their manifests. The
    model is compiled with Adam at `learning_rate` (a run's saved optimizer
    state is not reused), so it is ready for `fit`, `evaluate` or export.

    Args:
        spec: str or PathLike. A zoo name, a preset folder, a run folder or a
            `.keras` file.
        learning_rate: float. Adam learning rate. Defaults to `1e-4`.

    Returns:
        The model.

    Raises:
        ValueError: its weights hold NaN or Inf (a run that diverged).

    Example:
    >>> from trainers.runs import load_model_from
    >>> type(load_model_from("ae_fashion_mnist")).__name__
    'AE'
    """
    location = locate_model(spec)
    if location.is_dir():
        model = presets.load(location, learning_rate=learning_rate)
    else:
        model = keras_file.load_keras_file(location, compile=False)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    tensor_checks.check_finite_weights(model)
    return model


def model_file(spec: str | os.PathLike) -> pathlib.Path:
    """The `.keras` file a spec loads (a preset's `model.keras`, a run's best or last)."""
    location = locate_model(spec)
    return location / presets.MODEL_FILE if location.is_dir() else location


def training_config(spec: str | os.PathLike) -> dict:
    """The `training` part of the `config.json` beside the model a spec loads, or `{}`.

    A run folder and a preset keep the resolved config beside the model file.
    """
    path = model_file(spec).parent / "config.json"
    try:
        config = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        config = {}
    return config.get("training", {}) if isinstance(config, dict) else {}


def trained_on(spec: str | os.PathLike, default: str = "fashion_mnist") -> str:
    """The dataset the model a spec loads was trained on: its `config.json`'s, else `default`."""
    return training_config(spec).get("dataset") or default


def held_out_fraction(spec: str | os.PathLike, default: float = 0.1) -> float:
    """The `validation_fraction` the model a spec loads was trained with: its
    `config.json`'s, else `default` (the training default)."""
    return training_config(spec).get("validation_fraction") or default


def load_run_model(model_dir: str | os.PathLike) -> keras.Model:
    """Loads a run's model (`best.keras`, else `last.keras`) in safe mode."""
    return keras_file.load_keras_file(find_model_file(model_dir))
