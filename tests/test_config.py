"""trainers.config: defaults -> config file -> flag values -> `--set` overrides."""

import json

import pytest

import zoo
from trainers import config as config_lib


@pytest.mark.parametrize("family", sorted(zoo.FAMILIES))
def test_default_config_holds_every_constructor_argument(family):
    config = config_lib.default_config(family)
    model_config = zoo.FAMILIES[family]().get_config()
    assert config["model"] == family
    assert set(config["model_config"]) == set(model_config) - {"name", "trainable"}
    assert config["training"] == config_lib.TRAINING_DEFAULTS
    assert config["training"] is not config_lib.TRAINING_DEFAULTS  # a copy, safe to edit


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="'gan'.*'ae'"):
        config_lib.default_config("gan")


@pytest.mark.parametrize(
    "assignment, path, expected",
    [
        ("filters=8", ("model_config", "filters"), 8),
        ("kl_weight=1e-2", ("model_config", "kl_weight"), 0.01),
        ("straight_through=true", ("model_config", "straight_through"), True),
        ("straight_through=False", ("model_config", "straight_through"), False),
        ("likelihood=logit_laplace", ("model_config", "likelihood"), "logit_laplace"),
        ("image_shape=[32, 32, 3]", ("model_config", "image_shape"), [32, 32, 3]),
        ("training.batch_size=64", ("training", "batch_size"), 64),
        ("training.dataset=/data/my images", ("training", "dataset"), "/data/my images"),
        ("training.steps_per_epoch=None", ("training", "steps_per_epoch"), None),
        (
            "training.temperature_schedule.steps=1000",
            ("training", "temperature_schedule", "steps"),
            1000,
        ),
        ("training.dataset=a=b", ("training", "dataset"), "a=b"),  # split at the first =
    ],
)
def test_set_parses_values_and_dotted_keys(assignment, path, expected):
    config = config_lib.resolve("dvae", assignments=[assignment])
    node = config
    for part in path:
        node = node[part]
    assert node == expected and type(node) is type(expected)
    untouched = config_lib.default_config("dvae")
    assert config["training"]["epochs"] == untouched["training"]["epochs"]


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("filtrs=8", "Unknown config key 'filtrs'.*'filters'"),
        ("training.epoch=3", "Unknown config key 'training.epoch'.*'epochs'"),
        ("nothing.epochs=3", "'nothing' is not a section"),
        ("training.epochs.x=3", "'epochs' is not a section"),
        ("filters", "key=value"),
    ],
)
def test_set_refuses_unknown_keys_and_bad_syntax(assignment, message):
    with pytest.raises(ValueError, match=message):
        config_lib.resolve("vqvae", assignments=[assignment])


def test_config_file_then_flags_then_set(tmp_path):
    path = tmp_path / "partial.json"
    path.write_text(
        json.dumps(
            {
                "model": "vqvae",
                "model_config": {"num_embeddings": 32},
                "training": {"epochs": 2, "batch_size": 16, "temperature_schedule": {"steps": 5}},
            }
        )
    )
    config = config_lib.resolve(
        None,
        path,
        training_overrides={"batch_size": 8, "learning_rate": 0.01},
        assignments=["training.learning_rate=0.5", "embedding_dim=4"],
    )
    defaults = config_lib.default_config("vqvae")
    assert config["model"] == "vqvae"
    assert config["model_config"] == {
        **defaults["model_config"],
        "num_embeddings": 32,
        "embedding_dim": 4,
    }
    training = config["training"]
    assert training["epochs"] == 2  # file
    assert training["batch_size"] == 8  # flag beats file
    assert training["learning_rate"] == 0.5  # --set beats flag
    assert training["temperature_schedule"] == {
        **defaults["training"]["temperature_schedule"],
        "steps": 5,
    }  # nested merge keeps the rest


def test_saved_config_reproduces_the_run(tmp_path):
    config = config_lib.resolve(
        "vae", training_overrides={"epochs": 1}, assignments=["filters=8", "training.seed=3"]
    )
    config_lib.save(config, tmp_path / "config.json")
    assert config_lib.resolve(None, tmp_path / "config.json") == config
    assert config_lib.resolve("vae", tmp_path / "config.json") == config


def test_a_relative_dataset_path_is_recorded_absolute(tmp_path, monkeypatch):
    # A run trained on --dataset=my_images/ must be evaluable (and its preset's card
    # commands runnable) from any other folder: config.json names the folder absolutely.
    from trainers import train_prior

    (tmp_path / "my_images").mkdir()
    (tmp_path / "images.npy").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    config = config_lib.resolve("ae", training_overrides={"dataset": "my_images/"})
    assert config["training"]["dataset"] == str(tmp_path / "my_images")
    assert config_lib.resolve("ae", assignments=["training.dataset=images.npy"])[
        "training"]["dataset"] == str(tmp_path / "images.npy")
    prior = train_prior.resolve("vqvae_fashion_mnist", training_overrides={"dataset": "my_images"})
    assert prior["training"]["dataset"] == str(tmp_path / "my_images")
    for kept in ("fashion_mnist", "mnist", "missing/"):  # names, and paths that do not exist
        assert config_lib.resolve(
            "ae", training_overrides={"dataset": kept})["training"]["dataset"] == kept
    # A run recorded with the relative path resumes from the folder it was started in.
    recorded = {**config, "training": {**config["training"], "dataset": "my_images/"}}
    assert config_lib.differing_keys(config_lib.comparable(recorded),
                                     config_lib.comparable(config)) == []


@pytest.mark.parametrize(
    "content, message",
    [
        ({"training": {"epoch": 3}}, "Unknown config key 'epoch'"),
        ({"model_config": {"filtrs": 8}}, "Unknown config key 'filtrs'"),
        ({"optimizer": "sgd"}, "Unknown config key 'optimizer'"),
    ],
)
def test_config_file_with_unknown_keys_is_refused(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"model": "ae", **content}))
    with pytest.raises(ValueError, match=message):
        config_lib.resolve(None, path)


def test_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        config_lib.resolve("ae", tmp_path / "missing.json")
    path = tmp_path / "vq.json"
    path.write_text(json.dumps({"model": "vqvae"}))
    with pytest.raises(ValueError, match="--model=ae contradicts.*'vqvae'"):
        config_lib.resolve("ae", path)


def test_learning_rate_defaults_lower_when_fine_tuning():
    from trainers.training import learning_rate_schedule

    constant = {"learning_rate": None, "lr_schedule": "constant"}
    assert learning_rate_schedule(constant, 100) == pytest.approx(1e-3)
    assert learning_rate_schedule({**constant, "init_from": "ae_fashion_mnist"}, 100) == (
        pytest.approx(1e-4))
    given = {"learning_rate": 0.02, "lr_schedule": "constant", "init_from": "ae_fashion_mnist"}
    assert learning_rate_schedule(given, 100) == pytest.approx(0.02)  # a given rate wins
    cosine = learning_rate_schedule({"learning_rate": 0.02, "lr_schedule": "cosine"}, 100)
    assert float(cosine(0)) == pytest.approx(0.02)
    assert float(cosine(100)) == pytest.approx(0.02 * 0.05)  # decays to 5 %, not to 0
