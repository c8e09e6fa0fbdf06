"""Does a feature-matching loss keep what a classifier sees? (issue 11's classifier target)

The shipped discrete models lose 2.4-3.7 points of the evaluation classifier's
accuracy on their reconstructions; pixel losses alone blur the details that
tell a shirt from a T-shirt. This experiment trains the
VQ-VAE recipe with a perceptual term (`training.feature_matching_weight`, which
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
autoencoder's training. Every arm trains the recipe
`configs/vqvae_fashion_mnist.json` (model, batch size, learning rate, cosine
decay, bf16 where the CPU has it) for the same number of epochs and differs
only in `weight` (0 = the recipe).

Measured per arm on the 10,000 test images, in float32: test MSE, and the
evaluation classifier's accuracy on the originals and the reconstructions
(`trainers.evaluation.classifier_check`). Training seconds include the
feature network's forward and backward passes.

Run alone: `python -m bench.feature_loss [--epochs 4] [--weights 0 0.1 1]`
(about 6 minutes an arm at 4 epochs on a 2-core CPU).
"""

import argparse
import json
import tempfile
import time

import keras
import tensorflow as tf

import zoo
from bench.common import Table, cpu_flags, cpu_model
from trainers import config as config_lib
from trainers import data, distribute, evaluation, labels, sample_quality, training
from trainers.train_classifier import train_classifier

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


def run_arm(weight: float, network_path: str, args) -> dict:
    """Trains one arm and measures it on the test set in float32."""
    config = config_lib.resolve(None, RECIPE)
    recipe = {**config["training"], "feature_matching_weight": weight,
              "feature_network": network_path}
    keras.utils.set_random_seed(args.seed)
    split = data.load_split("fashion_mnist", "train", validation_fraction=0.1)
    steps = args.steps_per_epoch or -(-split.num_examples // recipe["batch_size"])
    dataset = data.make_dataset(split, recipe["batch_size"], seed=args.seed,
                                repeat=args.steps_per_epoch is not None)
    with distribute.precision(recipe["precision"]):
        model = zoo.VQVAE(**config["model_config"])
        model.compile(  # as the train command compiles
            optimizer=keras.optimizers.Adam(
                training.learning_rate_schedule(recipe, steps * args.epochs)),
            feature_matching=training.feature_matching(recipe, model.image_shape),
        )
    started = time.monotonic()
    model.fit(dataset, epochs=args.epochs, steps_per_epoch=steps, shuffle=False, verbose=2)
    seconds = time.monotonic() - started
    plain = zoo.VQVAE(**config["model_config"])  # float32
    plain.set_weights(model.get_weights())
    test = data.load_split("fashion_mnist", "test").images[:args.max_test] / 255.0
    test = test.astype("float32")
    ids = labels.load_labels("fashion_mnist", "test")[:args.max_test]
    mse = evaluation.evaluate_model(plain, tf.data.Dataset.from_tensor_slices(test).batch(500))
    check = evaluation.classifier_check(plain, test, ids)
    return {"weight": weight, "seconds": seconds, "mse": mse["mse"], **check}


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1, 1.0])
    parser.add_argument("--feature_network", default=None,
                        help="a feature network's .weights.h5; default the shipped one")
    parser.add_argument("--train_architecture", choices=("features", "features_pooled"),
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
    args = parser.parse_args(argv)
    table = Table("Feature-matching loss: test MSE and the classifier's drop",
                  ["feature weight", "train s", "test MSE", "classifier on originals",
                   "on reconstructions", "drop (points)"])
    with tempfile.TemporaryDirectory() as folder:
        network_path, info = feature_network(args, folder)
        for weight in args.weights:
            arm = run_arm(weight, network_path, args)
            table.add(f"{arm['weight']:g}", f"{arm['seconds']:.0f}", f"{arm['mse']:.5f}",
                      f"{100 * arm['originals']:.2f} %",
                      f"{100 * arm['reconstructions']:.2f} %", f"{arm['drop_points']:.2f}")
    report = "\n".join([
        f"CPU: {cpu_model()} ({', '.join(cpu_flags()) or 'no bf16/AMX flags'})",
        f"Recipe {RECIPE}, {args.epochs} epochs per arm"
        + (f" of {args.steps_per_epoch} steps" if args.steps_per_epoch else "")
        + f"; feature network: {info['architecture']}, {info['epochs']} epochs, seed "
        f"{info['seed']}, test accuracy {100 * info['test_accuracy']:.2f} %",
        "",
        table.markdown(),
    ])
    print(report)
    return report


if __name__ == "__main__":
    main()
