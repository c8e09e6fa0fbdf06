"""`.keras` archives: check that one is complete before loading it in safe mode,
and save one without optimizer state.

Keras reports a truncated or corrupted `.keras` file as "File not found"; the
zoo and its commands check the archive first and name the problem.
"""

import os
import pathlib
import tempfile
import warnings
import zipfile

import keras

from zoo.atomic import atomic_path


def check_keras_file(path: str | os.PathLike) -> pathlib.Path:
    """Checks that `path` is a complete `.keras` archive (exists, zip, CRCs match).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is truncated or corrupted (naming it).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such .keras file: {path}")
    problem = None
    if not zipfile.is_zipfile(path):
        problem = "not a zip archive"
    else:
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
                names = set(archive.namelist())
            if bad is not None:
                problem = f"member {bad!r} fails its CRC check"
            elif "config.json" not in names:
                problem = "it has no config.json"
            elif "model.weights.h5" not in names:
                problem = "it has no model.weights.h5"
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            problem = str(error)
    if problem:
        raise ValueError(
            f"{path} ({path.stat().st_size:,} bytes) is not a valid .keras file: {problem}. "
            "It is truncated or corrupted (an interrupted write or a full disk?)."
        )
    return path


def load_keras_file(path: str | os.PathLike, compile: bool = True) -> keras.Model:
    """Loads a `.keras` file in Keras safe mode after `check_keras_file`."""
    import zoo  # noqa: F401  (registers the zoo's classes for deserialization)

    return keras.saving.load_model(check_keras_file(path), compile=compile, safe_mode=True)


def save_without_optimizer(model: keras.Model, path: str | os.PathLike) -> None:
    """Saves `model` to `path` uncompiled: no optimizer state (a third of the size) and
    no compile config.

    A compiled model whose optimizer has not run yet would be saved with an
    unbuilt optimizer, and loading the file would warn that it skips the
    optimizer's variables. The file is written atomically.
    """
    with tempfile.TemporaryDirectory() as scratch:
        full = pathlib.Path(scratch) / "model.keras"
        model.save(full)
        with warnings.catch_warnings():
            # A nested compiled model (an ImageGenerator's prior) is compiled again on
            # load, with a fresh optimizer: the saved optimizer state is what is dropped.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            bare = load_keras_file(full, compile=False)
    with atomic_path(path) as tmp:
        bare.save(tmp)
