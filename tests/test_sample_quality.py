"""trainers.sample_quality: Fréchet distance, classifier accuracy, the shipped classifier."""

import json

import numpy as np
import pytest

from trainers import sample_quality as sq


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form():
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    # |mu_a - mu_b|^2 + sum (sqrt(var_a) - sqrt(var_b))^2 = 5 + (1 + 0 + 4)
    distance = sq.frechet_distance_from_statistics(mean_a, np.diag(var_a), mean_b, np.diag(var_b))
    assert distance == pytest.approx(10.0, abs=1e-9)


def test_frechet_distance_matches_the_eigenvalue_formula_for_general_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    cov_a, cov_b = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mean_a, mean_b = rng.normal(size=6), rng.normal(size=6)
    # tr sqrt(cov_a cov_b) = sum of the square roots of the (real, positive) eigenvalues
    # of the non-symmetric product: an independent route to the same number.
    trace_root = np.sum(np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real))
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b) - 2 * trace_root
    distance = sq.frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b)
    assert distance == pytest.approx(expected, rel=1e-9)
    assert sq.frechet_distance_from_statistics(mean_b, cov_b, mean_a, cov_a) == pytest.approx(
        distance, rel=1e-9)
    assert sq.frechet_distance_from_statistics(mean_a, cov_a, mean_a, cov_a) == pytest.approx(
        0.0, abs=1e-9)


def test_frechet_distance_of_sampled_gaussians_approaches_the_known_value():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, size=(20_000, 4))
    b = rng.normal(0.5, 2.0, size=(20_000, 4))
    # 4 * 0.5^2 + 4 * (2 - 1)^2 = 5
    assert sq.frechet_distance(a, b) == pytest.approx(5.0, rel=0.03)
    # Two draws of one distribution: near zero, and shrinking with the sample count.
    small = sq.frechet_distance(a[:200], rng.normal(size=(200, 4)))
    large = sq.frechet_distance(a, rng.normal(size=(20_000, 4)))
    assert large < small and large < 0.01


def test_frechet_distance_refuses_mismatched_features():
    with pytest.raises(ValueError, match=r"shape \(N, D\) with N >= 2"):
        sq.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="one D"):
        sq.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


def test_accuracy_counts_the_images_classified_as_their_label():
    classifier = sq.build_classifier((28, 28, 1), 10)
    images = np.random.default_rng(0).uniform(size=(12, 28, 28, 1)).astype("float32")
    predicted = sq.predict_classes(classifier, images)
    assert predicted.shape == (12,) and predicted.dtype == np.int32
    labels = predicted.copy()
    labels[:3] = (labels[:3] + 1) % 10  # three wrong
    assert sq.classifier_accuracy(classifier, images, labels) == pytest.approx(9 / 12)
    assert sq.classifier_features(classifier, images).shape == (12, 128)
    with pytest.raises(ValueError, match=r"`labels` must have shape \(12,\)"):
        sq.classifier_accuracy(classifier, images, labels[:5])
    with pytest.raises(TypeError, match="float in \\[0, 1\\]"):
        sq.classifier_accuracy(classifier, (images * 255).astype("uint8"), labels)
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28, 1\)"):
        sq.classifier_features(classifier, images[..., 0])


def test_real_floor_draws_count_images():
    classifier = sq.build_classifier((28, 28, 1), 10)
    rng = np.random.default_rng(0)
    real = (rng.uniform(size=(50, 28, 28, 1)) * 255).astype("uint8")
    reference = sq.classifier_features(classifier, real[:30] / np.float32(255))
    seen = []
    features = sq.classifier_features

    def capture(model, images):
        seen.append(np.array(images))
        return features(model, images)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sq, "classifier_features", capture)
        floor = sq.real_floor(classifier, real, reference, count=30)
    (drawn,) = seen
    # `count` distinct real images, in [0, 1], and the floor is their distance to the reference.
    assert drawn.shape == (30, 28, 28, 1) and drawn.dtype == np.float32
    rows = {image.tobytes(): i for i, image in enumerate(real / np.float32(255))}
    assert len({rows[image.tobytes()] for image in drawn}) == 30
    assert floor == pytest.approx(
        sq.frechet_distance(features(classifier, drawn), reference), rel=1e-6)
    # Drawn at random (not the first rows) and the same for the same seed.
    assert sorted(rows[image.tobytes()] for image in drawn) != list(range(30))
    assert sq.real_floor(classifier, real, reference, count=30) == pytest.approx(floor, rel=1e-6)
    with pytest.raises(ValueError, match=r"`count` must be in \[2, 50\]"):
        sq.real_floor(classifier, real, reference, count=51)


def test_load_classifier_checks_the_sha256(tmp_path):
    weights = tmp_path / "c.weights.h5"
    sq.build_classifier((28, 28, 1), 3).save_weights(weights)
    from zoo.presets import sha256

    info = {"sha256": sha256(weights), "image_shape": [28, 28, 1], "num_classes": 3}
    sq.info_path(weights).write_text(json.dumps(info))
    assert sq.load_classifier(weights).output_shape == (None, 3)
    info["sha256"] = "0" * 64
    sq.info_path(weights).write_text(json.dumps(info))
    with pytest.raises(ValueError, match="Checksum mismatch"):
        sq.load_classifier(weights)
    with pytest.raises(FileNotFoundError, match="train_classifier"):
        sq.load_classifier(tmp_path / "missing.weights.h5")


def test_shipped_classifier_is_verified_and_accurate():
    from trainers import data, labels

    info = json.loads(sq.info_path(sq.CLASSIFIER_WEIGHTS).read_text())
    assert info["test_accuracy"] >= 0.90
    classifier = sq.load_classifier()
    images = data.to_unit_float(data.load_split("fashion_mnist", "test").images[:1000])
    accuracy = sq.classifier_accuracy(classifier, images, labels.load_labels("fashion_mnist",
                                                                             "test")[:1000])
    assert accuracy >= 0.88  # the first 1,000 test images; the JSON holds all 10,000


def test_reports_name_the_shipped_classifier_by_its_place_in_the_package(tmp_path):
    shipped = "trainers/assets/fashion_mnist_classifier.weights.h5"
    assert sq.classifier_name() == shipped
    assert sq.classifier_name(str(sq.CLASSIFIER_WEIGHTS)) == shipped
    own = tmp_path / "mine.weights.h5"
    assert sq.classifier_name(own) == str(own)
