"""The pretrained zoo: models shipped in `saved_models/<name>/`, loaded by name.

Each folder holds `model.keras`, `config.json` (the training config that
produced it), `metrics.json` (test-set metrics from `trainers.evaluate`), a
model card `README.md`, pictures, and `manifest.json` with the sha256 of
every other file. `load(name)` verifies every checksum before loading.
"""

import hashlib
import json
import os
import pathlib

import keras

MANIFEST = "manifest.json"
MODEL_FILE = "model.keras"


def saved_models_dir() -> pathlib.Path:
    """The folder of pretrained models (`$ZOO_SAVED_MODELS` or the repo's `saved_models/`)."""
    default = pathlib.Path(__file__).resolve().parents[1] / "saved_models"
    return pathlib.Path(os.environ.get("ZOO_SAVED_MODELS", default))


def list_models() -> list[str]:
    """Names of the pretrained models, sorted.

    Example:
    >>> zoo.list_models()
    ['ae_fashion_mnist', 'dvae_fashion_mnist', 'vae_fashion_mnist', 'vqvae_fashion_mnist']
    """
    root = saved_models_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST).is_file())


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: str | os.PathLike) -> dict:
    """Writes `manifest.json` with the sha256 of every other file in `folder`."""
    folder = pathlib.Path(folder)
    files = {
        p.relative_to(folder).as_posix(): sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def verify(name: str) -> pathlib.Path:
    """Checks every file of a pretrained model against its manifest.

    Returns:
        The model's folder.

    Raises:
        ValueError: unknown name (the message lists the known ones) or a
            checksum mismatch (naming the file).
        FileNotFoundError: a file of the manifest is missing (naming it).
    """
    known = list_models()
    if name not in known:
        raise ValueError(f"Unknown zoo model {name!r}. Known models: {', '.join(known) or 'none'}.")
    folder = saved_models_dir() / name
    manifest = json.loads((folder / MANIFEST).read_text())
    if MODEL_FILE not in manifest["files"]:
        raise ValueError(f"{folder / MANIFEST} does not list {MODEL_FILE}.")
    for relative, expected in manifest["files"].items():
        path = folder / relative
        if not path.is_file():
            raise FileNotFoundError(
                f"Zoo model {name!r} is missing {path} (listed in its manifest)."
            )
        actual = sha256(path)
        if actual != expected:
            raise ValueError(
                f"Checksum mismatch for {path}: expected sha256 {expected}, found {actual}. "
                "The file was modified or corrupted; restore it (e.g. `git checkout -- "
                f"{path}`)."
            )
    return folder


def load(name: str, learning_rate: float = 1e-4) -> keras.Model:
    """Loads a pretrained model by name, verified and compiled for fine-tuning.

    The checksums of all files are verified first, then the model is loaded
    in Keras safe mode and compiled with Adam, ready for `model.fit`.

    Args:
        name: str. One of `list_models()`.
        learning_rate: float. Adam learning rate of the returned model.
            Defaults to `1e-4` (fine-tuning).

    Returns:
        The compiled model.

    Example:
    >>> model = zoo.load("dvae_fashion_mnist")
    >>> codes = model.encode(images)
    """
    folder = verify(name)
    model = keras.saving.load_model(folder / MODEL_FILE, safe_mode=True)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model
