"""The pretrained registry: listing, checksum verification, loading, fine-tuning.

These tests publish tiny models into a temporary zoo (`ZOO_SAVED_MODELS`), so
they do not depend on the shipped models; `test_shipped_models.py` checks
those.
"""

import json

import keras
import numpy as np
import pytest

import zoo
from tests.helpers import random_images, tiny_model
from zoo import presets


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch):
    """A zoo folder with one tiny dVAE, `tiny_dvae`, published with a manifest."""
    root = tmp_path / "saved_models"
    folder = root / "tiny_dvae"
    folder.mkdir(parents=True)
    model = tiny_model("dvae", temperature=0.25)
    model.save(folder / presets.MODEL_FILE)
    (folder / "config.json").write_text(json.dumps({"model": "dvae"}))
    presets.write_manifest(folder)
    monkeypatch.setenv("ZOO_SAVED_MODELS", str(root))
    return folder, model


def test_list_and_load_verify_and_compile(tiny_zoo):
    folder, original = tiny_zoo
    assert zoo.list_models() == ["tiny_dvae"]
    model = zoo.load("tiny_dvae")
    assert isinstance(model, zoo.DVAE)
    assert model.optimizer is not None  # compiled, ready for fit
    images = random_images(4)
    np.testing.assert_allclose(model(images), original(images), atol=1e-6)
    assert float(model.temperature.numpy()) == pytest.approx(0.25)


def test_from_preset_checks_the_class(tiny_zoo):
    assert isinstance(zoo.DVAE.from_preset("tiny_dvae"), zoo.DVAE)
    with pytest.raises(ValueError, match="is a DVAE, not a VQVAE"):
        zoo.VQVAE.from_preset("tiny_dvae")


def test_unknown_name_lists_known_models(tiny_zoo):
    with pytest.raises(ValueError, match="Known models: tiny_dvae"):
        zoo.load("no_such_model")


def test_tampered_file_is_named(tiny_zoo):
    folder, _ = tiny_zoo
    with open(folder / presets.MODEL_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match=r"Checksum mismatch for .*model\.keras"):
        zoo.load("tiny_dvae")


def test_missing_file_is_named(tiny_zoo):
    folder, _ = tiny_zoo
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        zoo.load("tiny_dvae")


def test_fine_tuning_lowers_loss_and_leaves_the_zoo_untouched(tiny_zoo, tmp_path):
    folder, _ = tiny_zoo
    before = presets.sha256(folder / presets.MODEL_FILE)
    model = zoo.load("tiny_dvae", learning_rate=1e-2)
    images = random_images(16, seed=3)
    first = model.evaluate(images, batch_size=16, verbose=0, return_dict=True)
    model.fit(images, epochs=40, batch_size=16, verbose=0)
    last = model.evaluate(images, batch_size=16, verbose=0, return_dict=True)
    # The loss has a floor from the KL and diversity terms; the pixel error has none.
    assert last["loss"] < first["loss"], (first, last)
    assert last["mse"] < 0.85 * first["mse"], (first, last)
    assert presets.sha256(folder / presets.MODEL_FILE) == before
    zoo.load("tiny_dvae")  # still verifies


def test_write_manifest_lists_every_file(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"b")
    manifest = presets.write_manifest(tmp_path)
    assert sorted(manifest["files"]) == ["a.txt", "sub/b.bin"]
    assert json.loads((tmp_path / presets.MANIFEST).read_text()) == manifest


def test_loaded_model_keeps_keras_safe_mode(tiny_zoo, monkeypatch):
    calls = []
    real = keras.saving.load_model

    def spy(path, **kwargs):
        calls.append(kwargs.get("safe_mode"))
        return real(path, **kwargs)

    monkeypatch.setattr(keras.saving, "load_model", spy)
    zoo.load("tiny_dvae")
    assert calls == [True]
