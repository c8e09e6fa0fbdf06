"""`trainers.train_classifier --reconstructed_by`: a classifier of a model's reconstructions."""

import json

import numpy as np
import pytest

from tests.helpers import tiny_model
from trainers import data, labels, sample_quality, train_classifier


def test_a_classifier_of_reconstructions_is_trained_and_tested_on_them(tmp_path):
    model = tiny_model("ae")
    model.save(tmp_path / "tiny.keras")
    output = tmp_path / "reconstructions.weights.h5"
    info = train_classifier.train_classifier(
        output=output, epochs=1, max_images=64, verbose=0,
        reconstructed_by=str(tmp_path / "tiny.keras"))

    originals = data.load_split("fashion_mnist", "test").images.astype(np.float32) / 255.0
    reconstructions = model.predict(originals, batch_size=256, verbose=0)
    assert not np.allclose(reconstructions, originals, atol=0.05)
    classifier = sample_quality.load_classifier(output)
    ids = labels.load_labels("fashion_mnist", "test")
    # The recorded test accuracy is the one on the reconstructions, not on the images.
    assert info["test_accuracy"] == pytest.approx(
        sample_quality.classifier_accuracy(classifier, reconstructions, ids), abs=1e-4)
    written = json.loads(sample_quality.info_path(output).read_text())
    assert written["reconstructed_by"] == str(tmp_path / "tiny.keras")
    assert written["num_train_images"] == 64


def test_a_classifier_of_reconstructions_must_not_replace_the_shipped_one(tmp_path):
    before = sample_quality.CLASSIFIER_WEIGHTS.stat().st_mtime_ns
    with pytest.raises(ValueError, match="needs an `output` path"):
        train_classifier.train_classifier(epochs=1, max_images=64,
                                          reconstructed_by=str(tmp_path / "any.keras"))
    assert sample_quality.CLASSIFIER_WEIGHTS.stat().st_mtime_ns == before



@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 48, 3)])
def test_a_classifier_of_other_data_must_not_replace_the_shipped_one(tmp_path, image_shape):
    # `--dataset=my_data.npz --image_shape=32,48,3` without --output in a checkout
    # overwrote trainers/assets/fashion_mnist_classifier.weights.h5, which
    # evaluate_prior reads for every Fashion-MNIST generator.
    before = sample_quality.CLASSIFIER_WEIGHTS.stat().st_mtime_ns
    dataset = tmp_path / "my_shapes.npz"
    np.savez(dataset, images=np.zeros((20, 32, 48, 3), np.uint8), labels=np.arange(20) % 2)
    with pytest.raises(ValueError, match="needs an `output` path"):
        train_classifier.train_classifier(str(dataset), epochs=1, verbose=0,
                                          image_shape=image_shape)
    assert sample_quality.CLASSIFIER_WEIGHTS.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="needs an `output` path"):  # the same with the flags
        train_classifier.output_path(None, "evaluation", None, "fashion_mnist", (32, 48, 3))
