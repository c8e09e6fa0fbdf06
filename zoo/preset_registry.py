"""Finding, verifying and loading presets: the reading side of the pretrained zoo.

Presets are found by name in the folders of `$ZOO_SAVED_MODELS` (a list
separated by `os.pathsep`, searched first, in order) and then in the models
shipped with the package (`saved_models/` of the repository, installed as
`zoo/saved_models/`). `load` also accepts the path of a preset folder, and
verifies every file against the preset's `manifest.json` before loading.
Writing presets is `zoo.preset_saving`; the public names of both are in
`zoo.presets`.
"""

import difflib
import hashlib
import json
import os
import pathlib
import warnings

import keras

from zoo import validation
from zoo.atomic import TMP_PREFIX
from zoo.keras_file import load_keras_file

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

