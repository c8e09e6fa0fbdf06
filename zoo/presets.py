"""The pretrained zoo: preset folders, loaded by name or path, written by `save_preset`.

A preset is a folder holding `model.keras`, `config.json` (the training config
that produced it), a model card `README.md`, optionally `metrics.json` and
pictures, and `manifest.json` with the sha256 of every other file. `load`
verifies every checksum before loading.

Presets are found by name in the folders of `$ZOO_SAVED_MODELS` (a list
separated by `os.pathsep`, searched first, in order) and then in the models
shipped with the package (`saved_models/` of the repository, installed as
`zoo/saved_models/`). `load` also accepts the path of a preset folder.
"""

import datetime
import difflib
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import warnings

import keras

from zoo import validation
from zoo.atomic import TMP_PREFIX, write_text
from zoo.keras_file import load_keras_file, save_without_optimizer

MANIFEST = "manifest.json"
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
ENV_VAR = "ZOO_SAVED_MODELS"


def saved_models_dir() -> pathlib.Path:
    """The folder of the models shipped with the package.

    `zoo/saved_models/` in an installed package (package data), else the
    repository's top-level `saved_models/` (a source checkout).
    """
    package = pathlib.Path(__file__).resolve().parent
    installed = package / "saved_models"
    return installed if installed.is_dir() else package.parent / "saved_models"


def is_installed() -> bool:
    """Whether the zoo runs from an installed package (its models are package data),
    not from a source checkout."""
    return (pathlib.Path(__file__).resolve().parent / "saved_models").is_dir()


def publish_root(output_root: str | os.PathLike | None) -> pathlib.Path:
    """Where a model is published: `output_root`, or by default the shipped models'
    folder of a source checkout.

    Raises:
        ValueError: no `output_root` in an installed package, whose models are
            package data that pip neither tracks nor keeps.
    """
    if output_root is not None:
        return pathlib.Path(output_root).expanduser()
    if is_installed():
        raise ValueError(
            f"Give an output folder (--output_root): the default, {saved_models_dir()}, is the "
            "installed package's data, which pip does not track and a reinstall replaces. "
            f"List your folder in ${ENV_VAR} to load its models by name."
        )
    return saved_models_dir()


def _restore_hint(path: pathlib.Path) -> str:
    """How to get a shipped file back: from git in a checkout, from pip when installed."""
    shipped = saved_models_dir().resolve()
    if is_installed() and shipped in path.resolve().parents:
        return "reinstall the package (`pip install --force-reinstall autoencoder-zoo`)"
    return f"restore it (e.g. `git checkout -- {path}`)"


def search_path() -> list[pathlib.Path]:
    """The folders searched for presets by name: `$ZOO_SAVED_MODELS`, then the shipped ones."""
    extra = [
        pathlib.Path(entry).expanduser()
        for entry in os.environ.get(ENV_VAR, "").split(os.pathsep)
        if entry.strip()
    ]
    return [*extra, saved_models_dir()]


def _preset_folders(root: pathlib.Path) -> list[pathlib.Path]:
    """Sub-folders of `root` that are presets, complete or broken (a model or a manifest)."""
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir()
        and not p.name.startswith((".", TMP_PREFIX))
        and ((p / MANIFEST).is_file() or (p / MODEL_FILE).exists())
    )


def list_models() -> list[str]:
    """Names of the presets in the search path (`search_path()`), sorted.

    A folder whose `manifest.json` is missing is listed too, with a warning
    that names it: `load` refuses it until the manifest is restored.

    Returns:
        list of str.

    Example:
    >>> import zoo
    >>> zoo.list_models()  # doctest: +NORMALIZE_WHITESPACE
    ['ae_fashion_mnist', 'dvae_fashion_mnist', 'dvae_from_vqvae_14x14_fashion_mnist',
     'dvae_from_vqvae_fashion_mnist', 'dvae_perceptual_fashion_mnist', 'prior_dvae_fashion_mnist',
     'prior_dvae_from_vqvae_fashion_mnist', 'prior_vqvae_fashion_mnist', 'vae_fashion_mnist',
     'vae_perceptual_fashion_mnist', 'vqvae_14x14_fashion_mnist', 'vqvae_fashion_mnist',
     'vqvae_perceptual_fashion_mnist']
    """
    names = set()
    for root in search_path():
        for folder in _preset_folders(root):
            names.add(folder.name)
            if not (folder / MANIFEST).is_file():
                warnings.warn(_broken_message(folder), stacklevel=2)
    return sorted(names)


def _broken_message(folder: pathlib.Path) -> str:
    if not (folder / MODEL_FILE).is_file():
        return (
            f"{folder} is not a zoo preset folder: it has no {MANIFEST} and no {MODEL_FILE}. "
            "A preset is written by `model.save_to_preset(folder)`; a training run folder or "
            "a `.keras` file loads with `trainers.runs.load_model_from(path)`."
        )
    return (
        f"Zoo model folder {folder} is broken: it has no {MANIFEST}, so its files cannot be "
        f"verified. To get it back, {_restore_hint(folder)}; or, if you trust its files, "
        f"write a new one with `zoo.presets.write_manifest({str(folder)!r})`. (A training "
        "run folder is not a preset: load it with `trainers.runs.load_model_from(path)`.)"
    )


def lookup(name: str) -> pathlib.Path | None:
    """The folder of the preset called `name` in the search path (the first one), or None."""
    for root in search_path():
        if name in {p.name for p in _preset_folders(root)}:
            return root / name
    return None


def find(preset: str | os.PathLike) -> pathlib.Path:
    """The folder of a preset given by name (searched in `search_path()`) or by path.

    Raises:
        ValueError: neither an existing folder nor a known name (the message
            lists the known names, the closest one, and the folders
            searched), or the path of a file.
        TypeError: `preset` is not a non-empty str or PathLike.
    """
    if not isinstance(preset, (str, os.PathLike)) or not str(preset).strip():
        raise TypeError(
            "`preset` must be a zoo model name (see `zoo.list_models()`) or the path of a "
            f"preset folder. Received: {preset!r}"
        )
    path = pathlib.Path(preset).expanduser()
    is_path = isinstance(preset, os.PathLike) or any(sep in str(preset) for sep in "/\\")
    if not is_path and lookup(str(preset)) is not None:
        return lookup(str(preset))
    if path.is_dir():
        return path
    if path.is_file():
        raise ValueError(
            f"{path} is a file, not a preset folder; a `.keras` file loads with "
            "`trainers.runs.load_model_from(path)` (or `keras.saving.load_model`)."
        )
    if is_path:
        raise ValueError(f"Preset folder not found: {path}")
    known = list_models()
    close = difflib.get_close_matches(str(preset), known, n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    searched = ", ".join(str(p) for p in search_path())
    raise ValueError(
        f"Unknown zoo model {str(preset)!r}. {hint}Known models: {', '.join(known) or 'none'} "
        f"(searched {searched}; add folders with ${ENV_VAR})."
    )


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def verify(preset: str | os.PathLike) -> pathlib.Path:
    """Checks every file of a preset against its manifest.

    Args:
        preset: str or PathLike. A name (see `list_models`) or a preset folder.

    Returns:
        The preset's folder.

    Raises:
        ValueError: unknown name (the message lists the known ones), a folder
            without a manifest, or a checksum mismatch (naming the file).
        FileNotFoundError: a file of the manifest is missing (naming it).
    """
    folder = find(preset)
    if not (folder / MANIFEST).is_file():
        raise ValueError(_broken_message(folder))
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{folder / MANIFEST} is not a valid manifest ({error}); expected "
            '{"files": {"<file>": "<sha256>", ...}}.'
        ) from error
    if MODEL_FILE not in files:
        raise ValueError(f"{folder / MANIFEST} does not list {MODEL_FILE}.")
    for relative, expected in files.items():
        path = folder / relative
        if not path.is_file():
            raise FileNotFoundError(
                f"Zoo model {folder.name!r} is missing {path} (listed in its manifest)."
            )
        actual = sha256(path)
        if actual != expected:
            raise ValueError(
                f"Checksum mismatch for {path}: expected sha256 {expected}, found {actual}. "
                f"The file was modified or corrupted; {_restore_hint(path)}."
            )
    return folder


def load(preset: str | os.PathLike, learning_rate: float = 1e-4) -> keras.Model:
    """Loads a pretrained model by name or preset folder, verified and compiled.

    The checksums of all files are verified first, then the model is loaded
    in Keras safe mode and compiled with Adam, ready for `model.fit`.

    Args:
        preset: str or PathLike. One of `list_models()`, or the path of a
            folder written by `save_preset` / `model.save_to_preset`.
        learning_rate: float. Adam learning rate of the returned model.
            Defaults to `1e-4` (fine-tuning).

    Returns:
        The compiled model.

    Raises:
        ValueError: an unknown name (the message lists the known ones and
            the closest), a folder without a valid manifest, a checksum
            mismatch (naming the file), or `learning_rate` <= 0.
        FileNotFoundError: a file listed in the manifest is missing.
        TypeError: `preset` is not a str or PathLike.

    Example:
    >>> import numpy as np, zoo
    >>> model = zoo.load("dvae_fashion_mnist")
    >>> codes = model.encode(np.zeros((2, 28, 28, 1), "float32"))
    >>> tuple(codes.shape)
    (2, 7, 7)
    """
    learning_rate = validation.positive_float("learning_rate", learning_rate)
    folder = verify(preset)
    model = load_keras_file(folder / MODEL_FILE, compile=False)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


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


class PresetMixin:
    """`from_preset` and `save_to_preset` (keras-hub's names) for the project's models.

    Mixed into `keras.Model` subclasses (`class MyModel(PresetMixin, keras.Model)`).
    """

    @classmethod
    def from_preset(cls, preset: str | os.PathLike, **kwargs) -> keras.Model:
        """Loads a preset by name or folder, as `zoo.load(preset)` does.

        Checksums are verified; the model must be an instance of this class.

        Args:
            preset: str or PathLike. One of `zoo.list_models()` or a preset folder.
            **kwargs: passed to `zoo.load` (e.g. `learning_rate`).

        Returns:
            The compiled model.

        Example:
        >>> import zoo
        >>> type(zoo.DVAE.from_preset("dvae_fashion_mnist")).__name__
        'DVAE'
        """
        model = load(preset, **kwargs)
        if not isinstance(model, cls):
            raise ValueError(
                f"Zoo model {str(preset)!r} is a {type(model).__name__}, not a {cls.__name__}."
            )
        return model

    def save_to_preset(self, preset_dir: str | os.PathLike, **kwargs) -> pathlib.Path:
        """Writes this model as a preset folder (see `zoo.presets.save_preset`).

        Args:
            preset_dir: str or PathLike. The new folder; its name is the preset name.
            **kwargs: passed to `save_preset` (`config`, `card`, `extra_files`,
                `overwrite`).

        Returns:
            pathlib.Path. The folder, loadable with `zoo.load(folder)`.
        """
        return save_preset(self, preset_dir, **kwargs)
