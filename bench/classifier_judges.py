"""Does a model's classifier drop hold for classifiers it was not trained against?

Issue 11's classifier target is measured with one network, the evaluation
classifier (`trainers/assets/fashion_mnist_classifier.weights.h5`). A
perceptual term trains the autoencoder against another network's features
(`training.feature_matching_weight`, `training.feature_network`); the closer
that network is to the evaluation classifier, the more a lower drop could be
the two networks agreeing rather than the reconstructions keeping what any
classifier sees. This table measures every model's drop with several
classifiers ("judges") side by side: the evaluation classifier and each
given network of `trainers.train_classifier` (feature networks included:
their linear heads classify). A gain that shows under judges the model was
not trained against is a gain in the reconstructions.

Run alone: `python -m bench.classifier_judges --models vqvae_fashion_mnist
runs/my_run --judges runs/other.weights.h5 [--max_images 2000]` (models: zoo
names, preset or run folders, `.keras` files; judges: `.weights.h5` files
with their JSON; the evaluation classifier is always the first judge).
"""

import argparse
import json
import pathlib

import numpy as np

from bench.common import Table, print_report
from trainers import data, labels, sample_quality
from trainers.evaluation import accuracy_drop


def judge_name(path: str | None) -> str:
    """A column name for a judge: its file stem, its architecture and test accuracy."""
    path = pathlib.Path(path or sample_quality.CLASSIFIER_WEIGHTS)
    info = json.loads(sample_quality.info_path(path).read_text())
    stem = path.name.removesuffix(".weights.h5")
    return (f"{stem} ({info.get('architecture', 'evaluation')}, "
            f"{100 * info['test_accuracy']:.1f} %)")


def drops(models: list[str], judges: list[str | None], max_images: int | None = None,
          batch_size: int = 256) -> dict:
    """The drop in points of each judge on each model's test reconstructions.

    Returns:
        `{"originals": {judge: accuracy}, "models": {model: {judge: drop_points}}}`.
    """
    from trainers import runs

    images = data.load_split("fashion_mnist", "test").images.astype(np.float32) / 255.0
    ids = labels.load_labels("fashion_mnist", "test")
    if max_images:
        images, ids = images[:max_images], ids[:max_images]
    classifiers = {judge: sample_quality.load_classifier(judge) for judge in judges}
    result = {"originals": {}, "models": {}}
    for spec in models:
        model = runs.load_model_from(spec)
        reconstructions = model.predict(images, batch_size=batch_size, verbose=0)
        checks = {judge: accuracy_drop(classifier, images, reconstructions, ids)
                  for judge, classifier in classifiers.items()}
        result["originals"] = {judge: check["originals"] for judge, check in checks.items()}
        result["models"][spec] = {judge: check["drop_points"] for judge, check in checks.items()}
    return result


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True,
                        help="zoo names, preset or run folders, .keras files")
    parser.add_argument("--judges", nargs="*", default=[],
                        help="classifier .weights.h5 files beside the evaluation classifier")
    parser.add_argument("--max_images", type=int, default=None,
                        help="the first N test images only (quick check); default all 10,000")
    args = parser.parse_args(argv)
    judges = [None, *args.judges]
    result = drops(args.models, judges, args.max_images)
    table = Table("Classifier drop (points) on the test reconstructions, by judge",
                  ["model", *(judge_name(judge) for judge in judges)])
    table.add("accuracy on the originals",
              *(f"{100 * result['originals'][judge]:.2f} %" for judge in judges))
    for spec, row in result["models"].items():
        table.add(f"`{spec}`", *(f"{row[judge]:.2f}" for judge in judges))
    return print_report(table, f"Fashion-MNIST test set, {args.max_images or 10000} images")


if __name__ == "__main__":
    main()
