"""The pretrained registry: listing, checksum verification, loading, fine-tuning.

These tests publish tiny models into a temporary zoo folder added with
`ZOO_SAVED_MODELS`, so they do not depend on the shipped models (which stay
listed); `test_shipped_models.py` checks those.
"""

import errno
import json
import os
import zipfile

import keras
import numpy as np
import pytest

import zoo
from tests.helpers import random_images, tiny_model
from zoo import preset_saving, presets


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
    assert "tiny_dvae" in zoo.list_models()
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
    with pytest.raises(ValueError, match="Known models: .*tiny_dvae"):
        zoo.load("no_such_model")
    with pytest.raises(ValueError, match="Did you mean 'tiny_dvae'"):
        zoo.load("tiny_dvea")


def test_what_is_not_a_preset_is_named_as_such(tiny_zoo, tmp_path):
    folder, _ = tiny_zoo
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is not a zoo preset folder.*load_model_from"):
        zoo.load(tmp_path / "empty")
    with pytest.raises(ValueError, match="is a file, not a preset folder"):
        zoo.load(folder / presets.MODEL_FILE)
    for bad in ("", "  ", None, 3):
        with pytest.raises(TypeError, match="zoo model name"):
            zoo.load(bad)
    for bad in (float("nan"), -1.0, 0.0):  # NaN turned every weight into NaN in one fit
        with pytest.raises(ValueError, match="learning_rate"):
            zoo.load("tiny_dvae", learning_rate=bad)


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


def test_zoo_path_is_a_list_searched_in_order_before_the_shipped_models(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    tiny_model("ae").save_to_preset(first / "mine")
    tiny_model("vqvae").save_to_preset(second / "mine")  # shadowed by first/mine
    tiny_model("vae").save_to_preset(second / "other")
    monkeypatch.setenv("ZOO_SAVED_MODELS", os.pathsep.join([str(first), "", str(second)]))
    names = zoo.list_models()
    assert {"mine", "other", "dvae_fashion_mnist"} <= set(names)
    assert len(names) == len(set(names))
    assert isinstance(zoo.load("mine"), zoo.AE)
    assert isinstance(zoo.load("other"), zoo.VAE)
    assert presets.search_path()[-1] == presets.saved_models_dir()


@pytest.mark.parametrize("family", ["ae", "vae", "vqvae", "dvae"])
def test_save_to_preset_writes_the_zoo_layout_and_loads_by_path(family, tmp_path):
    original = tiny_model(family)
    original.compile(optimizer="adam")  # optimizer state is not shipped
    folder = original.save_to_preset(tmp_path / f"my_{family}")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "config.json", "manifest.json", "model.keras"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["README.md", "config.json", "model.keras"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model"] == family
    assert config["model_config"]["filters"] == 8 and "name" not in config["model_config"]
    card = (folder / "README.md").read_text()
    assert card.startswith(f"# my_{family}") and f"{original.count_params():,}" in card
    for loaded in (zoo.load(folder), zoo.load(str(folder)),
                   zoo.FAMILIES[family].from_preset(folder)):
        assert type(loaded) is type(original) and loaded.optimizer is not None
        images = random_images(3)
        np.testing.assert_allclose(loaded(images), original(images), atol=1e-6)
    with pytest.raises(FileExistsError, match="already exists"):
        original.save_to_preset(folder)


def test_save_to_preset_records_a_given_config_card_and_files(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text("{}")
    folder = presets.save_preset(
        tiny_model("ae"), tmp_path / "p", config={"model": "ae", "training": {"epochs": 1}},
        card="# p\n", extra_files={"metrics.json": metrics})
    assert json.loads((folder / "config.json").read_text())["training"] == {"epochs": 1}
    assert (folder / "README.md").read_text() == "# p\n"
    assert "metrics.json" in json.loads((folder / "manifest.json").read_text())["files"]
    presets.verify(folder)


def test_failed_save_leaves_the_previous_preset_and_no_debris(tmp_path, monkeypatch):
    folder = tiny_model("ae").save_to_preset(tmp_path / "p")
    before = presets.sha256(folder / "model.keras")

    def full_disk(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(preset_saving, "write_manifest", full_disk)
    with pytest.raises(OSError, match="No space left"):
        tiny_model("vae").save_to_preset(folder, overwrite=True)
    with pytest.raises(OSError, match="No space left"):
        tiny_model("vae").save_to_preset(tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]
    assert presets.sha256(folder / "model.keras") == before
    monkeypatch.undo()
    assert isinstance(zoo.load(folder), zoo.AE)
    tiny_model("vae").save_to_preset(folder, overwrite=True)
    assert isinstance(zoo.load(folder), zoo.VAE)


def test_folder_without_manifest_is_listed_with_a_warning_and_refused(tiny_zoo):
    folder, _ = tiny_zoo
    (folder / presets.MANIFEST).unlink()
    with pytest.warns(UserWarning, match=r"tiny_dvae is broken: it has no manifest\.json"):
        assert "tiny_dvae" in zoo.list_models()
    with pytest.raises(ValueError, match="is broken: it has no manifest.json"):
        zoo.load("tiny_dvae")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "no_weights"])
def test_corrupt_keras_file_is_named_not_reported_missing(tiny_zoo, damage):
    folder, _ = tiny_zoo
    path = folder / presets.MODEL_FILE
    data = path.read_bytes()
    if damage == "no_weights":  # a valid archive without its weights
        with zipfile.ZipFile(path) as archive:
            config = archive.read("config.json")
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", config)
    else:
        path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a zip",
                          "empty": b""}[damage])
    presets.write_manifest(folder)  # the checksums match: only the archive is broken
    with pytest.raises(ValueError, match=r"model\.keras .*is not a valid \.keras file"):
        zoo.load("tiny_dvae")


def test_unknown_preset_path_is_named(tmp_path):
    with pytest.raises(ValueError, match="Preset folder not found"):
        zoo.load(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="Unknown zoo model 'nowhere'.*ZOO_SAVED_MODELS"):
        zoo.load("nowhere")


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    from zoo.atomic import atomic_path

    target = tmp_path / "notes.txt"
    target.write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
