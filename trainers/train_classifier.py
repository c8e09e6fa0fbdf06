r"""Train the evaluation classifier: `python -m trainers.train_classifier`.

Trains `trainers.sample_quality.build_classifier` on the training split
(the validation hold-out of `trainers.data` is kept for model selection),
reports its test accuracy, and writes the weights (by default the shipped
`trainers/assets/fashion_mnist_classifier.weights.h5`) and a JSON beside
them: the weights' sha256 (checked by `sample_quality.load_classifier`),
the test accuracy, the command and its wall time.

`--architecture=features` trains the feature-matching network of
`training.feature_matching_weight` instead (`sample_quality.build_feature_network`;
by default into `trainers/assets/fashion_mnist_features.weights.h5`).

`--reconstructed_by=MODEL` trains and tests on a model's reconstructions of
every split instead of the images. Its test accuracy is about the best any
decoder of that model's codes or latents could give this classifier: what
the latent keeps of the classes. Set beside the evaluation classifier's
accuracy on the same reconstructions (`trainers.evaluate`), it splits a
model's classifier drop into what its latent loses (a decoder cannot bring
it back) and what its decoder's rendering loses.

Examples:
    python -m trainers.train_classifier
    python -m trainers.train_classifier --epochs=2 --output=/tmp/c.weights.h5
    python -m trainers.train_classifier --architecture=features --epochs=3 --seed=1
    python -m trainers.train_classifier --reconstructed_by=vqvae_fashion_mnist \
        --output=runs/classifiers/vqvae.weights.h5
"""

import json
import pathlib
import sys
import time

from absl import flags

from trainers import cli, machine

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines this command's flags (only when it runs, as `trainers.evaluate`)."""
    flags.DEFINE_string("dataset", "fashion_mnist", "A labelled source (see trainers.labels).")
    flags.DEFINE_string("output", None, "Weights file (*.weights.h5); defaults to the shipped "
                        "one in a checkout (required for an installed package).")
    flags.DEFINE_integer("epochs", 10, "Number of epochs.")
    flags.DEFINE_integer("batch_size", 128, "Batch size.")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (cosine decay to 5 %).")
    flags.DEFINE_integer("max_images", None, "Train on the first N training images only.")
    flags.DEFINE_integer("seed", 0, "Seed of weights and shuffling.")
    flags.DEFINE_list("image_shape", ["28", "28", "1"], "height,width,channels of the images.")
    flags.DEFINE_enum("architecture", "evaluation", ["evaluation", "features", "features_pooled",
                                                      "features_deep"],
                      "evaluation: the evaluation classifier; features: the feature-matching "
                      "network of training.feature_matching_weight (default output "
                      "trainers/assets/fashion_mnist_features.weights.h5).")
    flags.DEFINE_string("reconstructed_by", None,
                        "Train and test on this model's reconstructions (a zoo name, preset or "
                        "run folder, .keras file) instead of the images; needs --output.")


def _labelled(source, split: str, image_shape, max_images=None, reconstructed_by=None):
    """A split's float32 images in [0, 1] (or `reconstructed_by`'s reconstructions of them)
    and their classes."""
    import numpy as np

    from trainers import data, labels

    images = data.load_split(source, split, image_shape).images
    ids = labels.load_labels(source, split)
    if max_images:
        images, ids = images[:max_images], ids[:max_images]
    images = images.astype(np.float32) / 255.0
    if reconstructed_by is not None:
        images = reconstructed_by.predict(images, batch_size=256, verbose=0)
    return images, ids


def _dataset(images, ids, batch_size: int, shuffle: bool, seed: int):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, ids))
    if shuffle:
        dataset = dataset.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def default_output(architecture: str) -> pathlib.Path:
    """Where an architecture's weights ship (evaluation classifier or feature network)."""
    from trainers import sample_quality

    if architecture == "evaluation":
        return sample_quality.CLASSIFIER_WEIGHTS
    return sample_quality.FEATURE_NETWORK_WEIGHTS


def output_path(output, architecture: str, reconstructed_by=None, dataset="fashion_mnist",
                image_shape=(28, 28, 1)) -> pathlib.Path:
    """The weights file a run writes: `output`, or the shipped network's in a checkout.

    Raises:
        ValueError: no `output` for a classifier of reconstructions, of another
            dataset or image shape than Fashion-MNIST's, or in an installed
            package (the default would replace the shipped network, which every
            evaluation reads), or a name not ending in `.weights.h5`.
    """
    from zoo.preset_registry import is_installed

    if output is None and reconstructed_by is not None:
        raise ValueError("A classifier of reconstructions needs an `output` path (--output); "
                         "the default would replace the shipped network.")
    if output is None and (str(dataset) != "fashion_mnist"
                           or tuple(image_shape) != (28, 28, 1)):
        raise ValueError(
            f"A classifier of {dataset} at {'x'.join(map(str, image_shape))} needs an `output` "
            "path (--output); the default would replace the shipped Fashion-MNIST network.")
    if output is None and is_installed():
        raise ValueError(
            f"Give an --output path: the default, {default_output(architecture)}, is the "
            "installed package's network, which every evaluation reads."
        )
    output = pathlib.Path(output or default_output(architecture))
    if not output.name.endswith(".weights.h5"):
        raise ValueError(f"`output` must end in .weights.h5. Received: {output}")
    return output


def train_classifier(dataset="fashion_mnist", output=None, epochs: int = 10,
                     batch_size: int = 128, learning_rate: float = 1e-3, max_images=None,
                     seed: int = 0, image_shape=(28, 28, 1), verbose="auto",
                     command: str | None = None, architecture: str = "evaluation",
                     reconstructed_by: str | None = None) -> dict:
    """Trains the evaluation classifier (or another architecture) and writes its weights and JSON.

    The weights of the epoch with the best validation accuracy are kept.
    `architecture` is a key of `sample_quality.ARCHITECTURES`; `"features"`
    trains the feature-matching network and writes by default to
    `sample_quality.FEATURE_NETWORK_WEIGHTS`. With `reconstructed_by` (a
    model as `trainers.runs.load_model_from` takes it) every split is that
    model's reconstructions of the images; `output` must then be given, so
    the shipped networks are not replaced.

    Returns:
        The JSON written beside the weights, as a dict.
    """
    import keras

    from trainers import labels, sample_quality
    from zoo.presets import sha256

    build = sample_quality.ARCHITECTURES[architecture]
    output = output_path(output, architecture, reconstructed_by, dataset, image_shape)
    output.parent.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    names = labels.class_names(dataset)
    model = None
    if reconstructed_by is not None:
        from trainers import runs

        model = runs.load_model_from(reconstructed_by)
    train = _labelled(dataset, "train", image_shape, max_images, model)
    validation = _labelled(dataset, "validation", image_shape, reconstructed_by=model)
    test = _labelled(dataset, "test", image_shape, reconstructed_by=model)
    steps = epochs * -(-len(train[1]) // batch_size)
    classifier = build(image_shape, len(names))
    classifier.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.05)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    best = output.with_name(output.name.replace(".weights.h5", ".best.weights.h5"))
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    started = time.monotonic()
    classifier.fit(
        _dataset(*train, batch_size, True, seed), epochs=epochs, verbose=verbose, shuffle=False,
        validation_data=_dataset(*validation, 500, False, seed),
        callbacks=[keras.callbacks.ModelCheckpoint(
            str(best), monitor="val_accuracy", mode="max", save_best_only=True,
            save_weights_only=True)],
    )
    seconds = time.monotonic() - started
    classifier.load_weights(best)
    best.unlink()
    # Written from an uncompiled copy: the weights alone, without Adam's state (3x smaller).
    shipped = build(image_shape, len(names))
    shipped.set_weights(classifier.get_weights())
    shipped.save_weights(output)
    _, test_accuracy = classifier.evaluate(_dataset(*test, 500, False, seed), verbose=0)
    _, validation_accuracy = classifier.evaluate(_dataset(*validation, 500, False, seed),
                                                 verbose=0)
    info = {
        "sha256": sha256(output),
        "architecture": architecture,
        "dataset": str(dataset),
        "reconstructed_by": reconstructed_by,
        "image_shape": list(image_shape),
        "num_classes": len(names),
        "class_names": names,
        "test_accuracy": float(test_accuracy),
        "validation_accuracy": float(validation_accuracy),
        "num_train_images": int(len(train[1])),
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "train_seconds": round(seconds, 1),
        "machine": machine.describe(host=False),
        "command": command,
    }
    sample_quality.info_path(output).write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv):
    del argv
    with cli.user_errors("Training refused"):  # refused before any training
        output = output_path(FLAGS.output, FLAGS.architecture, FLAGS.reconstructed_by,
                             FLAGS.dataset, tuple(int(size) for size in FLAGS.image_shape))
    info = train_classifier(FLAGS.dataset, output, FLAGS.epochs, FLAGS.batch_size,
                            FLAGS.learning_rate, FLAGS.max_images, FLAGS.seed,
                            command=" ".join(["python -m trainers.train_classifier",
                                              *sys.argv[1:]]),
                            image_shape=tuple(int(size) for size in FLAGS.image_shape),
                            architecture=FLAGS.architecture,
                            reconstructed_by=FLAGS.reconstructed_by)
    images = (f"{FLAGS.reconstructed_by}'s reconstructions" if FLAGS.reconstructed_by
              else "the images")
    print(f"\nTest accuracy on {images} {info['test_accuracy']:.4f} (validation "
          f"{info['validation_accuracy']:.4f}) after {info['train_seconds'] / 60:.1f} min.")
    print(f"Wrote {output} and its .json "
          "(sha256, accuracy, command).")


if __name__ == "__main__":
    cli.run(main, define_flags)
