"""`trainers.train_prior` refuses bad training and sampling options before any work.

Its config was not checked: `--epochs=0` encoded the dataset and reported a
finished run, `--batch_size=0` ended in a ZeroDivisionError traceback,
`--learning_rate=-1` trained uphill without a word, `--steps_per_epoch=0` ran
whole epochs, and a bad `sampling.*` value (the epoch pictures' options) was
refused only after the first epoch had trained, leaving a run folder that a
corrected command then refused as "a different config".
"""

import pytest

from tests.test_prior_commands import run_command
from trainers import config as config_lib
from trainers import train_prior


@pytest.mark.parametrize("overrides, assignments, key", [
    ({"epochs": 0}, [], "training.epochs"),
    ({"batch_size": 0}, [], "training.batch_size"),
    ({"learning_rate": -1.0}, [], "training.learning_rate"),
    ({"steps_per_epoch": 0}, [], "training.steps_per_epoch"),
    ({}, ["training.validation_fraction=2"], "training.validation_fraction"),
    ({}, ["training.lr_schedule=foo"], "training.lr_schedule"),
    ({}, ["training.encode_batch_size=0"], "training.encode_batch_size"),
    ({}, ["sampling.temperature=0"], "sampling.temperature"),
    ({}, ["sampling.top_k=-1"], "sampling.top_k"),
    ({}, ["sampling.guidance_scale=-1"], "sampling.guidance_scale"),
])
def test_bad_options_are_refused_when_the_config_resolves(overrides, assignments, key):
    with pytest.raises(config_lib.ConfigError, match=rf"`{key}` must be"):
        train_prior.resolve("dvae_fashion_mnist", training_overrides=overrides,
                            assignments=assignments)


def test_guidance_without_a_trained_unconditional_stream_is_refused():
    with pytest.raises(config_lib.ConfigError, match=r"`sampling.guidance_scale` must be 1 when"):
        train_prior.resolve("dvae_fashion_mnist",
                            assignments=["condition_dropout=0", "sampling.guidance_scale=2"])
    train_prior.resolve("dvae_fashion_mnist", assignments=["condition_dropout=0"])  # scale 1


def test_the_shipped_recipes_and_the_defaults_pass():
    for recipe in ("prior_dvae_fashion_mnist", "prior_vqvae_fashion_mnist"):
        train_prior.resolve(config_file=recipe)
    train_prior.resolve("dvae_fashion_mnist", assignments=["sampling.top_k=0"])


def test_the_command_refuses_in_one_line_without_a_run_folder(tmp_path):
    model_dir = tmp_path / "run"
    refused = run_command(["-m", "trainers.train_prior", "--autoencoder=dvae_fashion_mnist",
                           f"--model_dir={model_dir}", "--epochs=0"])
    assert refused.returncode != 0
    assert "Training refused: `training.epochs` must be an integer >= 1" in refused.stderr
    assert "trainers.evaluate_prior" in refused.stderr and "Traceback" not in refused.stderr
    assert not model_dir.exists()
