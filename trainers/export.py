r"""Export a trained model for TF Serving: `python -m trainers.export`.

Loads `best.keras` (else `last.keras`) from a `trainers.train` run and writes
SavedModel version `<export_base>/<version>/` plus `<export_base>/<version>.keras`
(see `zoo.export.export_model` and docs/SERVING.md).

Examples:
    python -m trainers.export --model_dir=runs/dvae --export_base=exports/dvae
    python -m trainers.export --model_dir=runs/dvae --export_base=exports/dvae --version=7
"""

import os

from absl import app, flags, logging

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines this command's flags.

    Called only when the command runs (not on import), so `trainers.train`,
    which defines `--model_dir` too, can be imported in the same process.
    """
    flags.DEFINE_string(
        "model_dir",
        None,
        "A trainers.train run folder (holds best.keras or last.keras).",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "export_base",
        None,
        "TF Serving's --model_base_path, e.g. exports/dvae.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "version",
        None,
        "Version to write; defaults to the next integer.",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "keras_file", True, "Also write <export_base>/<version>.keras.", flag_values=flag_values
    )


MODEL_FILES = ("best.keras", "last.keras")
"""The files `find_model_file` looks for, in order of preference."""


def find_model_file(model_dir: str) -> str:
    """Returns the model file of a training run: `best.keras`, else `last.keras`.

    Args:
        model_dir: str. A folder written by `trainers.train`.

    Returns:
        The path of the first of `MODEL_FILES` that exists in `model_dir`.

    Raises:
        FileNotFoundError: if `model_dir` is not a folder or holds neither file.
    """
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(
            f"--model_dir {model_dir!r} is not a folder. Expected a trainers.train run "
            f"holding one of {list(MODEL_FILES)}."
        )
    for name in MODEL_FILES:
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            return path
    looked_for = [os.path.join(model_dir, name) for name in MODEL_FILES]
    found = sorted(os.listdir(model_dir))
    raise FileNotFoundError(
        f"No trained model in {model_dir!r}: looked for {looked_for}. "
        f"The folder holds {found}. Train first with "
        f"`python -m trainers.train --model=... --model_dir={model_dir}`."
    )


def export_run(
    model_dir: str, export_base: str, version: int | None = None, keras_file: bool = True
) -> str:
    """Loads the model of a training run and exports it (see `zoo.export.export_model`).

    Args:
        model_dir: str. A folder written by `trainers.train`.
        export_base: str. TF Serving's model base path.
        version: int. The version; defaults to the next integer.
        keras_file: bool. Also write `<export_base>/<version>.keras`.

    Returns:
        The path of the new version folder.
    """
    import keras

    import zoo  # noqa: F401  (registers the zoo classes for deserialization)
    from zoo.export import export_model

    model = keras.saving.load_model(find_model_file(model_dir), compile=False)
    return export_model(model, export_base, version=version, keras_file=keras_file)


def main(argv, flag_values: flags.FlagValues = FLAGS):
    del argv
    if not flag_values.model_dir or not flag_values.export_base:
        raise app.UsageError("--model_dir and --export_base are required.")
    logging.set_verbosity(logging.WARNING)
    try:
        path = export_run(
            flag_values.model_dir,
            flag_values.export_base,
            flag_values.version,
            flag_values.keras_file,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        raise SystemExit(f"Export failed: {error}") from error
    print(f"Exported {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
