"""The pretrained zoo: preset folders, loaded by name or path, written by `save_preset`.

A preset is a folder holding `model.keras`, `config.json` (the training config
that produced it), a model card `README.md`, optionally `metrics.json` and
pictures, and `manifest.json` with the sha256 of every other file. `load`
verifies every checksum before loading.

This module holds the presets' public names and `PresetMixin`, which gives a
model `from_preset` and `save_to_preset`. Finding presets by name (in
`$ZOO_SAVED_MODELS`, then the shipped models), verifying and loading them is
`zoo.preset_registry`; writing them is `zoo.preset_saving`.
"""

import os
import pathlib

import keras

from zoo.atomic import TMP_PREFIX  # noqa: F401  (re-exported, as before the split)
from zoo.preset_registry import (  # noqa: F401  (re-exported: zoo.presets.find, ...)
    CARD_FILE,
    CONFIG_FILE,
    ENV_VAR,
    MANIFEST,
    MODEL_FILE,
    find,
    is_installed,
    list_models,
    load,
    lookup,
    publish_root,
    saved_models_dir,
    search_path,
    sha256,
    verify,
)
from zoo.preset_saving import model_type_name, save_preset, write_manifest  # noqa: F401


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
