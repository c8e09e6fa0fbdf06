"""`trainers.runs`: the one resolver behind every command's `--model`."""

import pathlib

import pytest

import zoo
from tests.helpers import tiny_model
from trainers import runs


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A run folder (best and last), a preset folder and a lone .keras file of tiny AEs."""
    root = tmp_path_factory.mktemp("models")
    run = root / "run"
    run.mkdir()
    tiny_model("ae").save(run / "last.keras")
    tiny_model("vae").save(run / "best.keras")
    tiny_model("vqvae").save_to_preset(root / "preset")
    tiny_model("dvae").save(root / "single.keras")
    return root


@pytest.mark.parametrize(
    "spec, family",
    [("run", zoo.VAE), ("run/last.keras", zoo.AE), ("preset", zoo.VQVAE),
     ("single.keras", zoo.DVAE)],
)
def test_every_kind_of_spec_loads_compiled(saved, spec, family):
    model = runs.load_model_from(saved / spec)
    assert type(model) is family and model.optimizer is not None


def test_a_zoo_name_loads_the_shipped_model():
    assert type(runs.load_model_from("ae_fashion_mnist")) is zoo.AE
    assert runs.model_file("ae_fashion_mnist").name == "model.keras"


def test_broken_best_falls_back_to_last_with_a_warning(saved, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.keras").write_bytes((saved / "run" / "last.keras").read_bytes())
    (run / "best.keras").write_bytes((saved / "run" / "best.keras").read_bytes()[:1000])
    with pytest.warns(UserWarning, match=r"best\.keras .*not a valid \.keras file"):
        assert runs.find_model_file(run) == run / "last.keras"
    (run / "last.keras").write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError, match="No trained model"):
        runs.find_model_file(run)


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("", ValueError, "empty string"),
        ("no_such_zoo_model", ValueError, "Unknown zoo model 'no_such_zoo_model'"),
        ("missing/folder", FileNotFoundError, "No such model folder or file"),
        ("missing.keras", FileNotFoundError, "No such .keras file"),
        ("empty_dir", FileNotFoundError, "looked for a training run's best.keras, last.keras"),
        ("broken.keras", ValueError, "not a valid .keras file"),
    ],
)
def test_bad_specs_say_what_was_looked_for(tmp_path, monkeypatch, spec, error, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(error, match=message):
        runs.load_model_from(spec)


def test_a_bare_name_is_the_zoo_model_and_a_path_is_the_folder(saved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "ae_fashion_mnist"  # a run folder named like a zoo model
    run.mkdir()
    (run / "last.keras").write_bytes((saved / "single.keras").read_bytes())
    assert runs.locate_model("ae_fashion_mnist").parent.name == "saved_models"
    assert runs.locate_model("./ae_fashion_mnist") == pathlib.Path("ae_fashion_mnist/last.keras")


def test_a_model_with_nan_weights_is_refused_by_the_commands_and_export(tmp_path):
    # Graph-mode calls of such a model answered finite images: trainers.evaluate
    # printed an mse, and trainers.export wrote a version that served them.
    import numpy as np

    from zoo.export import export_model

    model = tiny_model("ae")
    weights = model.get_weights()
    weights[0][...] = np.nan
    model.set_weights(weights)
    model.save(tmp_path / "diverged.keras")
    named = r"weights hold NaN or Inf values \(ae\w*/encoder/stem/kernel\)"
    with pytest.raises(ValueError, match=named):
        runs.load_model_from(tmp_path / "diverged.keras")
    with pytest.raises(ValueError, match="weights hold NaN or Inf"):
        export_model(model, str(tmp_path / "export"))
    assert not (tmp_path / "export").exists() or not any((tmp_path / "export").iterdir())
