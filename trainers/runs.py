"""Finding and loading the model a training run wrote."""

import pathlib

import keras

MODEL_FILES = ("best.keras", "last.keras")


def find_model_file(model_dir) -> pathlib.Path:
    """The model a run produced: `best.keras`, else `last.keras`.

    Raises:
        FileNotFoundError: naming the files looked for.
    """
    model_dir = pathlib.Path(model_dir)
    for name in MODEL_FILES:
        if (model_dir / name).exists():
            return model_dir / name
    raise FileNotFoundError(
        f"No trained model in {model_dir}: looked for {', '.join(MODEL_FILES)}. "
        "Train one with `python -m trainers.train --model_dir=...`."
    )


def load_run_model(model_dir) -> keras.Model:
    """Loads the run's model (safe mode)."""
    return keras.saving.load_model(find_model_file(model_dir), safe_mode=True)
