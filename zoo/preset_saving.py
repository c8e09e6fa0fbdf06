"""Writing presets: `save_preset` and the manifest of sha256 checksums.

`save_preset` assembles a preset folder (the layout of the shipped
`saved_models/<name>/`) under a temporary name and renames it into place;
`write_manifest` records the checksum of every file, which
`zoo.preset_registry.verify` checks before a preset loads.
"""

import datetime
import json
import os
import pathlib
import shutil
import tempfile

import keras

from zoo.atomic import TMP_PREFIX, write_text
from zoo.keras_file import save_without_optimizer
from zoo.preset_registry import CARD_FILE, CONFIG_FILE, ENV_VAR, MANIFEST, MODEL_FILE, sha256


def write_manifest(folder: str | os.PathLike) -> dict:
    """Writes `manifest.json` with the sha256 of every other file in `folder`.

    Args:
        folder: str or PathLike. A preset folder.

    Returns:
        dict. The manifest written, `{"files": {<relative path>: <sha256>}}`.
    """
    folder = pathlib.Path(folder)
    files = {
        p.relative_to(folder).as_posix(): sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(TMP_PREFIX)
    }
    manifest = {"files": files}
    write_text(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def model_type_name(model: keras.Model) -> str:
    """`"dvae"`, ... for the zoo's families, else the class's registered Keras name."""
    import zoo

    for name, cls in zoo.FAMILIES.items():
        if type(model) is cls:
            return name
    return keras.saving.get_registered_name(type(model))


def _card_stub(name: str, model: keras.Model) -> str:
    today = datetime.date.today().isoformat()
    return f"""# {name}

A `{type(model).__name__}` ({model.count_params():,} parameters) saved with
`save_to_preset` on {today} (Keras {keras.__version__}). Describe here the data it was trained
on, the command that trained it and its test metrics.

Load it with `zoo.load("path/to/{name}")`, or by name, `zoo.load("{name}")`, once the folder
that holds it is listed in `${ENV_VAR}`. The sha256 of every file is in `{MANIFEST}`.
"""


def save_preset(
    model: keras.Model,
    folder: str | os.PathLike,
    config: dict | None = None,
    card: str | None = None,
    extra_files: dict | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes a model as a preset folder: the layout of the shipped `saved_models/<name>/`.

    Writes `model.keras` (without optimizer state: `load` compiles a fresh
    one), `config.json`, the card `README.md`, any `extra_files` and
    `manifest.json`. The folder is assembled under a temporary name and
    renamed into place, so an interrupted save leaves no half-written preset.

    Args:
        model: keras.Model. A zoo model (or any registered Keras model).
        folder: str or PathLike. The preset folder; its name is the preset name.
        config: dict. The training config to record. Defaults to
            `{"model": <family>, "model_config": model.get_config()}` (usable
            as `trainers.train --config`).
        card: str. The card's Markdown. Defaults to a stub to complete.
        extra_files: dict. `{file name: source path}` copied in (metrics,
            pictures). Defaults to none.
        overwrite: bool. Replace an existing preset folder. Defaults to `False`.

    Returns:
        pathlib.Path. The folder.

    Raises:
        FileExistsError: `folder` exists and `overwrite` is false.
        TypeError: `model` is not a `keras.Model`.

    Example:
    >>> import tempfile, zoo
    >>> model = zoo.AE(filters=8, num_res_blocks=1, latent_channels=4)
    >>> folder = model.save_to_preset(tempfile.mkdtemp() + "/my_ae")
    >>> sorted(p.name for p in folder.iterdir())
    ['README.md', 'config.json', 'manifest.json', 'model.keras']
    >>> type(zoo.load(folder)).__name__
    'AE'
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model).__name__}")
    folder = pathlib.Path(folder).expanduser()
    if folder.exists() and not overwrite:
        raise FileExistsError(
            f"Preset folder {folder} already exists; choose a new folder or pass overwrite=True."
        )
    if config is None:
        model_config = {
            k: v for k, v in model.get_config().items() if k not in ("name", "trainable")
        }
        config = {"model": model_type_name(model), "model_config": model_config}
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(
        tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{folder.name}-", dir=folder.parent)
    )
    try:
        save_without_optimizer(model, staging / MODEL_FILE)
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if card is None:
            card = _card_stub(folder.name, model)
        (staging / CARD_FILE).write_text(card)
        for name, source in (extra_files or {}).items():
            shutil.copy(source, staging / name)
        write_manifest(staging)
        _replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _replace_folder(staging: pathlib.Path, folder: pathlib.Path) -> None:
    """Moves `staging` to `folder`, replacing an old `folder` only once the new one is complete."""
    if not folder.exists():
        os.replace(staging, folder)
        return
    old = folder.with_name(f"{TMP_PREFIX}old-{os.getpid()}-{folder.name}")
    os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)

