"""Does a feature-matching loss keep what a classifier sees? (issue 11's classifier target)

The shipped discrete models lose 2.4-3.7 points of the evaluation classifier's
accuracy on their reconstructions; pixel losses alone blur the details that
tell a shirt from a T-shirt. This experiment adds a perceptual term to the
VQ-VAE recipe's loss (`compile(feature_matching=zoo.perceptual.FeatureMatching(...))`)
and measures both sides of the trade:

    loss = recipe loss + weight * sum over layers of
           mean over positions of ||n(f(x)) - n(f(x_hat))||^2

where `f` are the ReLU feature maps of the two convolution stages of a small
*feature network* and `n` scales each position's feature vector to unit
length (LPIPS' normalisation, without its learned channel weights). The
feature network is not the evaluation classifier (that would train against
the metric): another architecture (two 3x3 conv stages of 32 and 64 channels,
no batch norm, a linear classifier on their flattened output, no dense feature
layer), trained here for `--feature_epochs` on the training split with its own
seed, frozen during the autoencoder's training. Every arm trains the recipe
`configs/vqvae_fashion_mnist.json` (model, batch size, learning rate, cosine
decay, bf16 where the CPU has it) for the same number of epochs and differs
only in `weight` (0 = the recipe).

Measured per arm on the 10,000 test images, in float32: test MSE, and the
evaluation classifier's accuracy on the originals and the reconstructions
(`trainers.evaluation.classifier_check`). Training seconds include the
feature network's forward and backward passes.

Run alone: `python -m bench.feature_loss [--epochs 4] [--weights 0 0.1 1]`
(about 6 minutes an arm at 4 epochs on a 2-core CPU, plus a minute for the feature
network).
"""

import argparse
import time

import keras
import tensorflow as tf

import zoo
from bench.common import Table, cpu_flags, cpu_model
from trainers import config as config_lib
from trainers import data, distribute, evaluation, labels, training
from zoo.perceptual import FeatureMatching

RECIPE = "vqvae_fashion_mnist"
FEATURE_LAYERS = ("stage_1", "stage_2")


def feature_network(image_shape=(28, 28, 1), num_classes: int = 10,
                    head: str = "flatten") -> keras.Model:
    """A small classifier whose convolution stages give the perceptual features.

    `head="pool"` classifies globally averaged features instead of the flattened
    maps: a weaker classifier, whose features the experiment found of little use.
    """
    inputs = keras.Input(image_shape)
    x = inputs
    for index, filters in enumerate((32, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                name=f"stage_{index}")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x) if head == "flatten" else keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x), name="feature_network")


def train_feature_network(epochs: int, seed: int, max_images: int | None,
                          head: str = "flatten") -> tuple:
    """Trains the feature network on the training split; returns (network, test accuracy)."""
    keras.utils.set_random_seed(seed)
    images = data.load_split("fashion_mnist", "train").images[:max_images] / 255.0
    ids = labels.load_labels("fashion_mnist", "train")[:max_images]
    network = feature_network(head=head)
    network.compile(optimizer=keras.optimizers.Adam(1e-3),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    network.fit(images.astype("float32"), ids, batch_size=128, epochs=epochs, verbose=0)
    test = data.load_split("fashion_mnist", "test").images[:max_images] / 255.0
    _, accuracy = network.evaluate(test.astype("float32"),
                                   labels.load_labels("fashion_mnist", "test")[:max_images],
                                   verbose=0)
    return network, float(accuracy)


def run_arm(weight: float, network: keras.Model, args) -> dict:
    """Trains one arm and measures it on the test set in float32."""
    config = config_lib.resolve(None, RECIPE)
    recipe = config["training"]
    keras.utils.set_random_seed(args.seed)
    split = data.load_split("fashion_mnist", "train", validation_fraction=0.1)
    steps = args.steps_per_epoch or -(-split.num_examples // recipe["batch_size"])
    dataset = data.make_dataset(split, recipe["batch_size"], seed=args.seed,
                                repeat=args.steps_per_epoch is not None)
    with distribute.precision(recipe["precision"]):
        model = zoo.VQVAE(**config["model_config"])
        model.compile(
            optimizer=keras.optimizers.Adam(
                training.learning_rate_schedule(recipe, steps * args.epochs)),
            feature_matching=FeatureMatching(network, FEATURE_LAYERS, weight) if weight else None,
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
    parser.add_argument("--feature_epochs", type=int, default=3)
    parser.add_argument("--feature_head", choices=("flatten", "pool"), default="flatten")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps_per_epoch", type=int, default=None,
                        help="fewer steps per epoch (for a quick check); default a full epoch")
    parser.add_argument("--max_images", type=int, default=None,
                        help="train the feature network on this many images (quick check)")
    parser.add_argument("--max_test", type=int, default=None,
                        help="measure on this many test images (quick check)")
    args = parser.parse_args(argv)
    network, feature_accuracy = train_feature_network(args.feature_epochs, args.seed + 1,
                                                       args.max_images, args.feature_head)
    table = Table("Feature-matching loss: test MSE and the classifier's drop",
                  ["feature weight", "train s", "test MSE", "classifier on originals",
                   "on reconstructions", "drop (points)"])
    for weight in args.weights:
        arm = run_arm(weight, network, args)
        table.add(f"{arm['weight']:g}", f"{arm['seconds']:.0f}", f"{arm['mse']:.5f}",
                  f"{100 * arm['originals']:.2f} %", f"{100 * arm['reconstructions']:.2f} %",
                  f"{arm['drop_points']:.2f}")
    report = "\n".join([
        f"CPU: {cpu_model()} ({', '.join(cpu_flags()) or 'no bf16/AMX flags'})",
        f"Recipe {RECIPE}, {args.epochs} epochs per arm"
        + (f" of {args.steps_per_epoch} steps" if args.steps_per_epoch else "")
        + f"; feature network ({args.feature_head} head, {args.feature_epochs} epochs, "
        f"seed {args.seed + 1}) "
        f"test accuracy {100 * feature_accuracy:.2f} %",
        "",
        table.markdown(),
    ])
    print(report)
    return report


if __name__ == "__main__":
    main()
