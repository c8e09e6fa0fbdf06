"""The models shipped in `saved_models/`: they load by name, meet their cards, fine-tune, export.

The default test re-evaluates each model on the first 1,000 Fashion-MNIST test
images and compares with the values `trainers.publish` recorded for that
subset; the slow test re-evaluates the whole test set against the card.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

import zoo
from trainers import data
from trainers.evaluation import evaluate_model
from zoo import presets

EXPECTED = ["ae_fashion_mnist", "dvae_fashion_mnist", "dvae_from_vqvae_14x14_fashion_mnist",
            "dvae_from_vqvae_fashion_mnist", "dvae_perceptual_fashion_mnist", "vae_fashion_mnist",
            "vae_perceptual_fashion_mnist", "vqvae_14x14_fashion_mnist", "vqvae_fashion_mnist",
            "vqvae_perceptual_fashion_mnist"]
# Evaluation is deterministic; the tolerance only absorbs float reordering
# between runs (oneDNN, batch composition).
RTOL = 1e-3


def _metrics(name: str) -> dict:
    return json.loads((presets.saved_models_dir() / name / "metrics.json").read_text())


def _compare(measured: dict, recorded: dict) -> None:
    for key, value in recorded.items():
        if key in ("latent_bits_per_image", "num_images"):
            assert measured.get(key, value) == value
            continue
        assert measured[key] == pytest.approx(value, rel=RTOL, abs=1e-5), key


@pytest.fixture(scope="module")
def test_images():
    return data.load_split("fashion_mnist", "test")


def test_the_zoo_lists_the_autoencoders_and_the_generators():
    from tests.test_shipped_priors import PRIORS

    assert zoo.list_models() == sorted(EXPECTED + list(PRIORS))


@pytest.mark.parametrize("name", EXPECTED)
def test_shipped_model_meets_its_recorded_metrics(name, test_images):
    model = zoo.load(name)
    recorded = _metrics(name)["first_1000_test_images"]
    subset = data.Split(test_images.images[:1000], None, 1000, "fashion_mnist")
    measured = evaluate_model(model, data.make_dataset(subset, 256, shuffle=False))
    _compare(measured, recorded)
    card = (presets.saved_models_dir() / name / "README.md").read_text()
    assert f"{_metrics(name)['mse']:.6g}" in card  # the card shows the full-test-set MSE


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_shipped_model_meets_its_card_on_the_whole_test_set(name, test_images):
    model = zoo.load(name)
    recorded = {k: v for k, v in _metrics(name).items() if isinstance(v, (int, float))}
    measured = evaluate_model(model, data.make_dataset(test_images, 256, shuffle=False))
    _compare(measured, recorded)


# One model per architecture: a variant (perceptual, from a VQ-VAE) has its family's
# layers, so fine-tuning and exporting it again would add time, not coverage.
ARCHITECTURES = ["ae_fashion_mnist", "dvae_fashion_mnist", "vae_fashion_mnist",
                 "vqvae_fashion_mnist"]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_load_fit_export(name, test_images, tmp_path):
    from zoo.export import export_model

    model = zoo.load(name)
    images = test_images.images[:32].astype("float32") / 255.0
    history = model.fit(images, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    path = export_model(model, str(tmp_path / name), keras_file=False)
    served = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(images[:4]))
    np.testing.assert_allclose(served["reconstructions"], model(images[:4]), atol=1e-5)
