"""Sample quality of generative models, measured with a Fashion-MNIST classifier.

A measuring tool, not part of the zoo API. A small CNN, trained by
`python -m trainers.train_classifier`, ships with the repository
(`trainers/assets/fashion_mnist_classifier.weights.h5`, its sha256 and
test accuracy in `fashion_mnist_classifier.json` beside it). With it:

- `classifier_accuracy(classifier, images, labels)`: how often the
  classifier finds the class a conditional sample was asked for;
- `classifier_features(classifier, images)`: its penultimate-layer
  activations, and `frechet_distance(features_a, features_b)` between two
  feature sets (the FID recipe of Heusel et al. 2017, with this classifier
  in place of Inception);
- `real_floor(...)`: the distance between two sets of real images, the
  lowest a generator can expect at that sample count.

Example:
>>> import numpy as np
>>> from trainers import data, sample_quality
>>> classifier = sample_quality.load_classifier()
>>> test = data.load_split("fashion_mnist", "test").images[:500] / 255.0
>>> noise = np.random.default_rng(0).random(test.shape).astype("float32")
>>> real = sample_quality.classifier_features(classifier, test[:250])
>>> fake = sample_quality.classifier_features(classifier, noise[:250])
>>> same = sample_quality.classifier_features(classifier, test[250:])
>>> bool(sample_quality.frechet_distance(real, same) < sample_quality.frechet_distance(real, fake))
True
"""

import json
import os
import pathlib
import weakref

import keras
import numpy as np

ASSETS = pathlib.Path(__file__).resolve().parent / "assets"
CLASSIFIER_WEIGHTS = ASSETS / "fashion_mnist_classifier.weights.h5"
FEATURES_LAYER = "features"
# The feature-matching network of training (`zoo.perceptual.FeatureMatching`), a
# different architecture from the evaluation classifier's so that training does not
# optimise the measuring instrument.
FEATURE_NETWORK_WEIGHTS = ASSETS / "fashion_mnist_features.weights.h5"
# Its convolution stages are named `stage_1`, `stage_2`, ... (`feature_map_layers`).
FEATURE_STAGE_PREFIX = "stage_"
_EXTRACTORS = weakref.WeakKeyDictionary()  # classifier -> its feature model


def build_classifier(image_shape=(28, 28, 1), num_classes: int = 10) -> keras.Model:
    """The evaluation CNN: three 3x3 conv-BN-ReLU + max-pool stages, a 128-unit feature layer.

    Inputs are float32 images in [0, 1]; outputs are class logits. The
    layer named `"features"` (128 ReLU units) gives the Fréchet distance's
    features.

    Args:
        image_shape: tuple. `(height, width, channels)`. Defaults to `(28, 28, 1)`.
        num_classes: int. Defaults to `10`.

    Returns:
        An uncompiled `keras.Model`.
    """
    layers = keras.layers
    inputs = keras.Input(image_shape)
    x = inputs
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.Activation("relu")(layers.BatchNormalization()(x))
        x = layers.MaxPooling2D(2)(x)
    x = layers.Dropout(0.3)(layers.Flatten()(x))
    x = layers.Dense(128, activation="relu", name=FEATURES_LAYER)(x)
    outputs = layers.Dense(num_classes, name="logits")(layers.Dropout(0.3)(x))
    return keras.Model(inputs, outputs, name="fashion_mnist_classifier")


def build_feature_network(image_shape=(28, 28, 1), num_classes: int = 10,
                          head: str = "flatten", filters=(32, 64)) -> keras.Model:
    """The feature-matching network: 3x3 conv-ReLU + max-pool stages and a linear head.

    The stages (named `stage_1`, `stage_2`, ..., one per entry of `filters`,
    no batch norm) give the feature maps a training run compares
    (`training.feature_matching_weight`); the head only trains them as a
    classifier.

    Args:
        image_shape: tuple. `(height, width, channels)`. Defaults to `(28, 28, 1)`.
        num_classes: int. Defaults to `10`.
        head: `"flatten"` (a linear classifier on the flattened maps) or `"pool"`
            (on their global average: a weaker classifier, whose features
            `bench.feature_loss` found of little use). Defaults to `"flatten"`.
        filters: channels of each stage. Defaults to `(32, 64)`.

    Returns:
        An uncompiled `keras.Model` from images in [0, 1] to class logits.
    """
    inputs = keras.Input(image_shape)
    x = inputs
    for index, width in enumerate(filters, start=1):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu",
                                name=f"{FEATURE_STAGE_PREFIX}{index}")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    pooled = keras.layers.Flatten() if head == "flatten" else keras.layers.GlobalAveragePooling2D()
    outputs = keras.layers.Dense(num_classes, name="logits")(pooled(x))
    return keras.Model(inputs, outputs, name="feature_network")


def feature_map_layers(network: keras.Model) -> list[str]:
    """The names of a feature network's convolution stages, in order (`stage_1`, ...)."""
    names = [layer.name for layer in network.layers
             if layer.name.startswith(FEATURE_STAGE_PREFIX)]
    if not names:
        raise ValueError(f"{network.name} has no layers named {FEATURE_STAGE_PREFIX}1, ...: it is "
                         "not a feature network of `trainers.train_classifier "
                         "--architecture=features`.")
    return names


# `trainers.train_classifier --architecture=...`; the JSON beside the weights names it.
ARCHITECTURES = {
    "evaluation": build_classifier,
    "features": build_feature_network,
    "features_pooled": lambda image_shape, num_classes: build_feature_network(
        image_shape, num_classes, head="pool"),
    "features_deep": lambda image_shape, num_classes: build_feature_network(
        image_shape, num_classes, filters=(32, 64, 128)),
}


def info_path(weights_path: str | os.PathLike) -> pathlib.Path:
    """The JSON written beside a classifier's weights (sha256, accuracy, command)."""
    weights_path = pathlib.Path(weights_path)
    return weights_path.with_name(weights_path.name.replace(".weights.h5", ".json"))


def classifier_name(path: str | os.PathLike | None = None) -> str:
    """How a report names a classifier: the shipped one by its place in the package.

    A report published with a model (`saved_models/*/metrics.json`) must not carry
    the publishing machine's absolute path.

    Args:
        path: a `.weights.h5` file, or `None` for the shipped evaluation classifier.

    Returns:
        `"trainers/assets/<file>"` for the shipped classifier, else `path` as given.
    """
    if path is None or pathlib.Path(path).resolve() == CLASSIFIER_WEIGHTS.resolve():
        return f"trainers/assets/{CLASSIFIER_WEIGHTS.name}"
    return str(path)


def load_classifier(path: str | os.PathLike | None = None) -> keras.Model:
    """Loads a classifier of `trainers.train_classifier` after checking its weights' sha256.

    Args:
        path: a `.weights.h5` file written by `trainers.train_classifier`.
            Defaults to the evaluation classifier shipped in `trainers/assets/`.

    Returns:
        The classifier (the architecture its JSON names, `build_classifier` when it
        names none) with the trained weights.

    Raises:
        FileNotFoundError: the weights or their JSON are missing.
        ValueError: the sha256 differs from the one recorded at training.
    """
    from zoo.presets import sha256

    path = pathlib.Path(path or CLASSIFIER_WEIGHTS)
    info_file = info_path(path)
    for needed in (path, info_file):
        if not needed.is_file():
            raise FileNotFoundError(
                f"Classifier file missing: {needed}. Train it with "
                "`python -m trainers.train_classifier`."
            )
    info = json.loads(info_file.read_text())
    actual = sha256(path)
    if actual != info["sha256"]:
        raise ValueError(
            f"Checksum mismatch for {path}: expected sha256 {info['sha256']} (from {info_file}), "
            f"found {actual}. Restore the file or retrain with "
            "`python -m trainers.train_classifier`."
        )
    build = ARCHITECTURES[info.get("architecture", "evaluation")]
    classifier = build(tuple(info["image_shape"]), info["num_classes"])
    classifier.load_weights(path)
    return classifier


def _check_images(images, classifier: keras.Model) -> np.ndarray:
    images = np.asarray(images)
    expected = tuple(classifier.input_shape[1:])
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(
            f"Images must have shape (N, {', '.join(map(str, expected))}). "
            f"Received shape {images.shape}."
        )
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"Images must be float in [0, 1]. Received dtype {images.dtype}.")
    return images.astype(np.float32)


def predict_classes(classifier: keras.Model, images, batch_size: int = 500) -> np.ndarray:
    """The classifier's predicted class ids, int32 (N,), for float images in [0, 1]."""
    images = _check_images(images, classifier)
    logits = classifier.predict(images, batch_size=batch_size, verbose=0)
    return np.argmax(logits, axis=-1).astype(np.int32)


def classifier_accuracy(classifier: keras.Model, images, labels, batch_size: int = 500) -> float:
    """The share of `images` the classifier assigns to their `labels`.

    Args:
        classifier: from `load_classifier` (or `build_classifier`).
        images: float array (N, H, W, C) in [0, 1].
        labels: int array (N,), the classes the images should show.
        batch_size: int. Defaults to `500`.

    Returns:
        Accuracy in [0, 1].
    """
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(
            f"`labels` must have shape ({len(images)},), one per image. Received {labels.shape}."
        )
    return float(np.mean(predict_classes(classifier, images, batch_size) == labels))


def classifier_features(classifier: keras.Model, images, batch_size: int = 500) -> np.ndarray:
    """Penultimate-layer (`"features"`) activations, float64 (N, 128)."""
    images = _check_images(images, classifier)
    extractor = _EXTRACTORS.get(classifier)
    if extractor is None:  # one per classifier: a new model per call would retrace predict
        extractor = keras.Model(classifier.inputs, classifier.get_layer(FEATURES_LAYER).output)
        _EXTRACTORS[classifier] = extractor
    return extractor.predict(images, batch_size=batch_size, verbose=0).astype(np.float64)


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of a feature set (N, D), float64."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(
            f"Features must have shape (N, D) with N >= 2. Received shape {features.shape}."
        )
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b) -> float:
    """Fréchet distance between the Gaussians N(mean_a, cov_a) and N(mean_b, cov_b).

    `|mean_a - mean_b|^2 + tr(cov_a + cov_b - 2 (cov_a cov_b)^(1/2))`, with
    `tr (cov_a cov_b)^(1/2)` computed as the sum of the square roots of the
    eigenvalues of the symmetric `A^(1/2) cov_b A^(1/2)` (`A = cov_a`), which
    has the same eigenvalues and needs no complex matrix square root.
    """
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (
        mean_a.shape + mean_a.shape
    ):
        raise ValueError(
            f"Statistics must be means (D,) and covariances (D, D) of one D. Received means "
            f"{mean_a.shape}, {mean_b.shape} and covariances {cov_a.shape}, {cov_b.shape}."
        )
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    product = root_a @ cov_b @ root_a
    trace_root = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0.0, None)))
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))


def frechet_distance(features_a, features_b) -> float:
    """Fréchet distance between two feature sets (N_a, D) and (N_b, D).

    Each set is summarised by its mean and covariance; see
    `frechet_distance_from_statistics`. Like FID, it is biased upwards at
    small N: compare distances computed at the same sample count.

    Example:
    >>> import numpy as np
    >>> from trainers.sample_quality import frechet_distance
    >>> a = np.random.default_rng(0).normal(size=(5000, 2))
    >>> round(frechet_distance(a, a + [3.0, 4.0]), 2)     # |mean shift|^2
    25.0
    """
    return frechet_distance_from_statistics(
        *feature_statistics(features_a), *feature_statistics(features_b)
    )


def real_floor(classifier: keras.Model, real_images, reference_features, count: int,
               seed: int = 0) -> float:
    """Fréchet distance from `count` real images (drawn at random) to the reference features.

    The distance a perfect generator would get with `count` samples: the
    floor to read a generator's figure against.

    Args:
        classifier: the evaluation classifier.
        real_images: array (N, H, W, C), uint8 or float in [0, 1], N >= `count`;
            not the images behind `reference_features`.
        reference_features: features of the reference set (the test images).
        count: int. The sample count of the figures it is compared with.
        seed: int. Which images are drawn. Defaults to `0`.
    """
    if not 2 <= count <= len(real_images):
        raise ValueError(
            f"`count` must be in [2, {len(real_images)}] (the number of real images). "
            f"Received: {count}"
        )
    chosen = np.random.default_rng(seed).choice(len(real_images), count, replace=False)
    from trainers.data import to_unit_float

    chosen_images = to_unit_float(np.asarray(real_images)[np.sort(chosen)])
    return frechet_distance(classifier_features(classifier, chosen_images), reference_features)
