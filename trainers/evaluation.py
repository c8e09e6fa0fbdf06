"""Test-set evaluation shared by `trainers.evaluate`, the zoo cards and the tests."""

import keras
import numpy as np
import tensorflow as tf

from zoo.image_metrics import per_example_mse, psnr
from zoo.quantizers import code_histogram

SSIM_WINDOW = 11
"""The side of `tf.image.ssim`'s Gaussian window (its `filter_size`): images
smaller than it have no SSIM (the op fails on them)."""


def evaluate_model(
    model, dataset: tf.data.Dataset, num_images: int | None = None
) -> dict[str, float]:
    """Evaluates a zoo model over a whole batched dataset of images in [0, 1].

    Args:
        model: a zoo model.
        dataset: batched `tf.data.Dataset` of float32 images (or `(images, _)`).
        num_images: int. When given, a progress bar counts the images up to
            it. Defaults to `None` (silent).

    Returns:
        A dict: `mse` (mean over pixels and images), `psnr` and `ssim` (mean
        over images, `tf.image.ssim` with max value 1; no `ssim` for images
        smaller than its 11x11 window), `num_images`; for the
        VAE `bits_per_dim` (negative ELBO, single-sample estimate); for the
        discrete models `perplexity` and `codebook_usage` over all codes of
        the dataset.
    """
    discrete = hasattr(model, "num_embeddings")

    @tf.function
    def step(images):
        terms = model.compute_terms(images, training=False)
        reconstructions = terms["reconstructions"]
        per_image = {
            "mse": per_example_mse(images, reconstructions),
            "psnr": psnr(images, reconstructions),
        }
        if min(size or SSIM_WINDOW for size in images.shape[1:3]) >= SSIM_WINDOW:
            per_image["ssim"] = tf.image.ssim(images, reconstructions, max_val=1.0)
        if "bits_per_dim" in terms:
            per_image["bits_per_dim"] = terms["bits_per_dim"]
        if discrete:
            histogram = code_histogram(model.encode(images), model.num_embeddings)
        else:
            histogram = tf.zeros([1])
        return {k: tf.reduce_sum(v) for k, v in per_image.items()}, histogram

    totals, histogram, count = {}, None, 0
    progress = keras.utils.Progbar(num_images, unit_name="image") if num_images else None
    for batch in dataset:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        sums, batch_histogram = step(images)
        for name, value in sums.items():
            totals[name] = totals.get(name, 0.0) + float(value)
        batch_histogram = batch_histogram.numpy()
        histogram = batch_histogram if histogram is None else histogram + batch_histogram
        count += int(images.shape[0])
        if progress is not None:
            progress.update(count)
    if count == 0:
        raise ValueError("The evaluation dataset is empty.")
    results = {name: total / count for name, total in totals.items()}
    results["num_images"] = count
    if discrete:
        probs = histogram / histogram.sum()
        nonzero = probs[probs > 0]
        results["perplexity"] = float(np.exp(-np.sum(nonzero * np.log(nonzero))))
        results["codebook_usage"] = float(np.mean(histogram > 0))
    return results


def format_table(results: dict[str, float], title: str = "") -> str:
    """A plain-text two-column table of metric values."""
    width = max(len(k) for k in results)
    lines = [title] if title else []
    lines += [f"{'metric':<{width}}  value", f"{'-' * width}  ----------"]
    for name, value in results.items():
        shown = f"{value:d}" if isinstance(value, int) else f"{value:.6g}"
        lines.append(f"{name:<{width}}  {shown}")
    return "\n".join(lines)


def classifier_check(model, images: np.ndarray, labels: np.ndarray,
                     batch_size: int = 256) -> dict[str, float]:
    """How much a classifier loses on a model's reconstructions (issue 11's check).

    The repository's Fashion-MNIST evaluation classifier
    (`trainers.sample_quality.load_classifier`) classifies the images and the
    model's reconstructions of them; a reconstruction that keeps what makes
    a coat a coat keeps the classifier's accuracy.

    Args:
        model: a zoo model for 28x28x1 images.
        images: float32 array (N, 28, 28, 1) in [0, 1].
        labels: int array (N,), the images' classes.
        batch_size: int. Defaults to `256`.

    Returns:
        A dict: `originals` and `reconstructions` (accuracies in [0, 1]) and
        `drop_points` (their difference in percentage points).

    Example:
    >>> import numpy as np, zoo
    >>> from trainers import data, labels
    >>> from trainers.evaluation import classifier_check
    >>> images = data.load_split("fashion_mnist", "test").images[:100] / 255.0
    >>> check = classifier_check(zoo.load("ae_fashion_mnist"), images,
    ...                          labels.load_labels("fashion_mnist", "test")[:100])
    >>> sorted(check)
    ['drop_points', 'originals', 'reconstructions']
    """
    from trainers import sample_quality

    images = np.asarray(images, np.float32)
    reconstructions = model.predict(images, batch_size=batch_size, verbose=0)
    return accuracy_drop(sample_quality.load_classifier(), images, reconstructions, labels)


def accuracy_drop(classifier, images: np.ndarray, reconstructions: np.ndarray,
                  labels: np.ndarray) -> dict[str, float]:
    """A classifier's accuracy on images and on their reconstructions, and the drop.

    `classifier_check` measures it with the evaluation classifier;
    `bench.classifier_judges` with several classifiers on the same
    reconstructions.

    Args:
        classifier: a Keras classifier of the images (logits or probabilities).
        images: float32 array (N, H, W, C) in [0, 1].
        reconstructions: float32 array of the same shape, in [0, 1].
        labels: int array (N,), the images' classes.

    Returns:
        A dict: `originals` and `reconstructions` (accuracies in [0, 1]) and
        `drop_points` (their difference in percentage points).
    """
    from trainers import sample_quality

    originals = sample_quality.classifier_accuracy(classifier, images, labels)
    reconstructed = sample_quality.classifier_accuracy(classifier, reconstructions, labels)
    return {"originals": originals, "reconstructions": reconstructed,
            "drop_points": 100.0 * (originals - reconstructed)}
