"""Does a feature-matching loss keep what a classifier sees? (issue 11's classifier target)

The shipped models lose 1-4 points of the evaluation classifier's accuracy on
their reconstructions; pixel losses alone blur the details that tell a shirt
from a T-shirt. This experiment trains a recipe (`--recipe`, default the
VQ-VAE's) with a perceptual term (`training.feature_matching_weight`, which
the train command turns into `compile(feature_matching=zoo.perceptual.
FeatureMatching(...))`) and measures both sides of the trade:

    loss = recipe loss + weight * sum over layers of
           mean over positions of ||n(f(x)) - n(f(x_hat))||^2

where `f` are the ReLU feature maps of the two convolution stages of a small
*feature network* and `n` scales each position's feature vector to unit
length (LPIPS' normalisation, without its learned channel weights). The
feature network is not the evaluation classifier (that would train against
the metric): another architecture (`trainers.sample_quality.
build_feature_network`: two 3x3 conv stages of 32 and 64 channels, no batch
norm, a linear classifier on their flattened output), by default the shipped
one (`trainers/assets/fashion_mnist_features.weights.h5`, 3 epochs, seed 1),
or one trained for the run (`--train_architecture`), frozen during the
autoencoder's training. Every arm is a run of the train command
(`trainers.training.train`: the recipe's model, batch size, learning rate
schedule, KL warm-up or temperature annealing, precision) with `--epochs`
and the same seed, and differs only in `weight` (0 = the recipe). The
weight's scale depends on the family's loss: the VQ-VAE's and the dVAE's
reconstruction term is a per-pixel MSE, the VAE's a Gaussian NLL whose
gradient is about 1/(2 sigma^2) larger (docs/MEASUREMENTS.md), so the VAE needs
a weight about 250x larger for the same balance.

Measured per arm on the test images with `trainers.evaluate.run_evaluation`
(the run's best checkpoint, in float32): test MSE, and the evaluation
classifier's accuracy on the originals and the reconstructions
(`trainers.evaluation.classifier_check`). Training seconds are the run's
(`run_info.json`: validation and checkpoints included).

Run alone: `python -m bench.feature_loss [--recipe vqvae_fashion_mnist]
[--epochs 4] [--weights 0 0.1 1] [--runs_dir runs/feature_loss]` (`--runs_dir`
keeps each arm's run folder and pictures). An arm of 4 epochs took about 6
minutes for the VQ-VAE in bf16 on a 2-core AVX512-BF16 EPYC and 43-45 minutes
for the dVAE in float32 on a 2-core AVX2-only one (docs/MEASUREMENTS.md).
"""

import argparse
import json
import pathlib
import tempfile

from bench.common import Table, print_report
from trainers import config as config_lib
from trainers import sample_quality
from trainers.evaluate import run_evaluation
from trainers.train_classifier import train_classifier
from trainers.training import train

RECIPE = "vqvae_fashion_mnist"


def feature_network(args, folder: str) -> tuple[str, dict]:
    """The feature network's weights file and its JSON: shipped, given, or trained here."""
    if args.train_architecture:
        path = f"{folder}/{args.train_architecture}.weights.h5"
        train_classifier(output=path, epochs=args.feature_epochs, seed=args.seed + 1,
                         max_images=args.max_images, verbose=0,
                         architecture=args.train_architecture)
    else:
        path = str(args.feature_network or sample_quality.FEATURE_NETWORK_WEIGHTS)
    return path, json.loads(sample_quality.info_path(path).read_text())


def run_arm(weight: float, network_path: str, args, folder: pathlib.Path) -> dict:
    """Trains one arm with the train command and measures it on the test set."""
    overrides = {"epochs": args.epochs, "seed": args.seed, "feature_matching_weight": weight,
                 "feature_network": network_path, "steps_per_epoch": args.steps_per_epoch}
    config = config_lib.resolve(None, args.recipe, overrides)
    model_dir = folder / f"weight_{weight:g}"
    train(config, model_dir, verbose=2)
    seconds = json.loads((model_dir / "run_info.json").read_text())["train_seconds"]
    report = run_evaluation(model_dir, max_images=args.max_test, output_dir=model_dir / "test")
    return {"weight": weight, "seconds": seconds, "mse": report["mse"],
            **report["classifier_accuracy"]}


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=RECIPE,
                        help="a config file or shipped recipe name (configs/<name>.json)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1, 1.0])
    parser.add_argument("--feature_network", default=None,
                        help="a feature network's .weights.h5; default the shipped one")
    parser.add_argument("--train_architecture",
                        choices=("features", "features_pooled", "features_deep"),
                        default=None, help="train a feature network of this architecture "
                        "(`trainers.train_classifier`) for the run instead")
    parser.add_argument("--feature_epochs", type=int, default=3,
                        help="with --train_architecture: its epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps_per_epoch", type=int, default=None,
                        help="fewer steps per epoch (for a quick check); default a full epoch")
    parser.add_argument("--max_images", type=int, default=None,
                        help="with --train_architecture: train on this many images (quick check)")
    parser.add_argument("--max_test", type=int, default=None,
                        help="measure on this many test images (quick check)")
    parser.add_argument("--runs_dir", default=None,
                        help="keep each arm's run folder here; default a temporary folder")
    args = parser.parse_args(argv)
    taken = [w for w in args.weights
             if args.runs_dir and (pathlib.Path(args.runs_dir) / f"weight_{w:g}").exists()]
    if taken:  # the train command would resume those runs instead of starting them
        parser.error(f"--runs_dir={args.runs_dir} already holds runs for weights {taken}")
    table = Table("Feature-matching loss: test MSE and the classifier's drop",
                  ["feature weight", "train s", "test MSE", "classifier on originals",
                   "on reconstructions", "drop (points)"])
    with tempfile.TemporaryDirectory() as scratch:
        folder = pathlib.Path(args.runs_dir or scratch)
        network_path, info = feature_network(args, scratch)
        for weight in args.weights:
            arm = run_arm(weight, network_path, args, folder)
            table.add(f"{arm['weight']:g}", f"{arm['seconds']:.0f}", f"{arm['mse']:.5f}",
                      f"{100 * arm['originals']:.2f} %",
                      f"{100 * arm['reconstructions']:.2f} %", f"{arm['drop_points']:.2f}")
    return print_report(
        table,
        f"Recipe {args.recipe}, {args.epochs} epochs per arm"
        + (f" of {args.steps_per_epoch} steps" if args.steps_per_epoch else "")
        + f"; feature network: {info['architecture']}, {info['epochs']} epochs, seed "
        f"{info['seed']}, test accuracy {100 * info['test_accuracy']:.2f} %",
    )


if __name__ == "__main__":
    main()
