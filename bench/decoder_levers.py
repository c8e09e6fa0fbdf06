"""Can a discrete model's decoder alone close its classifier drop? (issue 11)

A decoder-only fine-tune keeps every code (and the prior trained on them);
`trainers.train_classifier --reconstructed_by` says how much of the drop a
decoder could win at most (docs/MEASUREMENTS.md, "Where the classifier drop
comes from"). This experiment tries the two decoder-side levers left after the
feature term, on a discrete model's frozen codes:

- `blocks=N`: N residual blocks (`zoo.blocks.ResidualBlock`) before the
  decoder's head, at the last upsampled resolution (14x14 for the default
  layout, where the decoder otherwise only upsamples). Their output
  convolution starts at zero, so a run starts at the given model.
- `adversarial=F`: a patch discriminator (three strided or 3x3 convolutions,
  a logit per 7x7 cell) trained with the hinge loss beside the decoder, whose
  loss gains `lambda * -mean(D(x_hat))`, with VQGAN's adaptive `lambda`:
  `F` times the ratio of the reconstruction loss's gradient norm to the
  adversarial term's at the decoder's last kernel (Esser et al., 2021). The
  term starts after `--warmup` steps, once the discriminator has learnt.

Every arm fine-tunes the decoder (and any new blocks) for `--epochs` on all
training images with the per-pixel MSE plus the shipped feature network's
term at `--feature_weight` (the discrete perceptual presets' loss), Adam
3e-4 with cosine decay, batch 64, seed 0; the encoder and codebook are
frozen, so codes are computed once. Measured on the test images: MSE and the
evaluation classifier's drop (`trainers.evaluation.accuracy_drop`).

Run alone: `python -m bench.decoder_levers --model
vqvae_perceptual_fashion_mnist --arms adversarial=0.5 blocks=1 [--epochs 2]`
(13-15 minutes an arm of 2 epochs on a 2-core AVX2 CPU, two at a time).
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from bench.common import Table, print_report
from trainers import data, labels, runs, sample_quality
from trainers.evaluation import accuracy_drop
from zoo.blocks import ResidualBlock
from zoo.models.base import DiscreteAutoencoder
from zoo.perceptual import FeatureMatching

BATCH_SIZE = 64
LEARNING_RATE = 3e-4


class BlocksBeforeHead(keras.layers.Layer):
    """Residual blocks, a ReLU, then a decoder's own head (it replaces `decoder.head`)."""

    def __init__(self, head: keras.layers.Layer, width: int, count: int, **kwargs):
        super().__init__(**kwargs)
        self.head = head
        self.blocks = [ResidualBlock(width, width, name=f"extra_res_{i}") for i in range(count)]

    def build(self, input_shape):
        for block in self.blocks:
            block.build(input_shape)
            block.conv_out.kernel.assign(keras.ops.zeros(block.conv_out.kernel.shape))

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(keras.ops.relu(x))


def grow_decoder(model: DiscreteAutoencoder, blocks: int) -> None:
    """Puts `blocks` zero-started residual blocks before `model`'s decoder head."""
    if not blocks:
        return
    decoder = model.decoder
    width = decoder.upsamples[-1].filters if decoder.upsamples else decoder.stem.filters
    grid = model.latent_grid
    size = 2 ** len(decoder.upsamples)
    head = BlocksBeforeHead(decoder.head, width, blocks, name="head_with_blocks")
    head.build((None, grid[0] * size, grid[1] * size, width))
    # Keras locks a built layer's state, so the new head is set around its tracking:
    # `decoder_variables` adds the blocks' weights to the decoder's own.
    object.__setattr__(decoder, "head", head)
    model.predict_function = None  # a traced `predict` would still run the old head


def decoder_variables(model: DiscreteAutoencoder) -> list:
    """The trainable weights of `model`'s decoder, any blocks `grow_decoder` added included."""
    head = model.decoder.head
    extra = head.trainable_variables if isinstance(head, BlocksBeforeHead) else []
    known = {id(variable) for variable in model.decoder.trainable_variables}
    return [*model.decoder.trainable_variables, *(v for v in extra if id(v) not in known)]


def build_discriminator(image_shape) -> keras.Model:
    """A patch discriminator: a logit per cell of a grid 4x smaller than the image."""
    layers = keras.layers
    return keras.Sequential([
        keras.Input(image_shape),
        layers.Conv2D(32, 4, 2, "same"), layers.LeakyReLU(0.2),
        layers.Conv2D(64, 4, 2, "same"), layers.LeakyReLU(0.2),
        layers.Conv2D(128, 3, 1, "same"), layers.LeakyReLU(0.2),
        layers.Conv2D(1, 3, 1, "same"),
    ], name="discriminator")


def parse_arm(text: str) -> dict:
    """`"blocks=1,adversarial=0.5"` -> `{"blocks": 1, "adversarial": 0.5}`."""
    arm = {"blocks": 0, "adversarial": 0.0}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in arm or not value:
            raise ValueError(f"An arm is blocks=N and/or adversarial=F. Received: {text!r}")
        arm[key] = type(arm[key])(value)
    return arm


def fine_tune(model: DiscreteAutoencoder, images: np.ndarray, arm: dict, epochs: int,
              feature_weight: float, warmup: int, max_steps: int | None = None,
              seed: int = 0) -> float:
    """Trains `model`'s decoder on its frozen codes of `images`; returns the seconds."""
    keras.utils.set_random_seed(seed)
    codes = np.concatenate([model.encode(images[i:i + 1000]).numpy()
                            for i in range(0, len(images), 1000)])
    grow_decoder(model, arm["blocks"])
    decoder, variables = model.decoder, decoder_variables(model)
    network = sample_quality.load_classifier(sample_quality.FEATURE_NETWORK_WEIGHTS)
    features = FeatureMatching(network, sample_quality.feature_map_layers(network),
                               feature_weight)
    discriminator = build_discriminator(model.image_shape)
    steps_per_epoch = len(images) // BATCH_SIZE
    steps = min(epochs * steps_per_epoch, max_steps or epochs * steps_per_epoch)
    decoder_optimizer = keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps))
    discriminator_optimizer = keras.optimizers.Adam(LEARNING_RATE, beta_1=0.5)
    decoder_optimizer.build(variables)
    discriminator_optimizer.build(discriminator.trainable_variables)
    head = decoder.head.head if isinstance(decoder.head, BlocksBeforeHead) else decoder.head
    last_kernel = head.kernel
    adversarial_arm = arm["adversarial"] > 0

    @tf.function
    def step(x, c, factor):
        with tf.GradientTape(persistent=True) as tape:
            x_hat = tf.sigmoid(decoder(model.quantizer.lookup(c), training=True))
            reconstruction = tf.reduce_mean(tf.square(x - x_hat)) + tf.reduce_mean(
                features(x, x_hat))
            adversarial = -tf.reduce_mean(discriminator(x_hat * 2 - 1))
        weight = factor * tf.stop_gradient(
            tf.norm(tape.gradient(reconstruction, last_kernel))
            / (tf.norm(tape.gradient(adversarial, last_kernel)) + 1e-4))
        gradients = [a + weight * b for a, b in zip(
            tape.gradient(reconstruction, variables),
            tape.gradient(adversarial, variables), strict=True)]
        decoder_optimizer.apply(gradients, variables)
        if not adversarial_arm:
            return
        with tf.GradientTape() as critic:
            loss = (tf.reduce_mean(tf.nn.relu(1 - discriminator(x * 2 - 1)))
                    + tf.reduce_mean(tf.nn.relu(1 + discriminator(
                        tf.stop_gradient(x_hat) * 2 - 1))))
        discriminator_optimizer.apply(critic.gradient(loss, discriminator.trainable_variables),
                                      discriminator.trainable_variables)

    order_rng = np.random.default_rng(seed)
    started, done = time.monotonic(), 0
    while done < steps:
        order = order_rng.permutation(len(images))
        for start in range(0, steps_per_epoch * BATCH_SIZE, BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            factor = arm["adversarial"] if done >= warmup else 0.0
            step(tf.constant(images[batch]), tf.constant(codes[batch]), tf.constant(factor))
            done += 1
            if done >= steps:
                break
    return time.monotonic() - started


def measure(model, images: np.ndarray, ids: np.ndarray) -> dict:
    """Test MSE and the evaluation classifier's drop on `model`'s reconstructions."""
    reconstructions = model.predict(images, batch_size=256, verbose=0)
    check = accuracy_drop(sample_quality.load_classifier(), images, reconstructions, ids)
    return {"mse": float(np.mean((reconstructions - images) ** 2)),
            "drop": check["drop_points"]}


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vqvae_perceptual_fashion_mnist",
                        help="a discrete model: zoo name, preset or run folder, .keras file")
    parser.add_argument("--arms", nargs="+", default=["adversarial=0.5", "blocks=1"],
                        help="blocks=N and/or adversarial=F, comma-separated")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--feature_weight", type=float, default=0.3)
    parser.add_argument("--warmup", type=int, default=500,
                        help="steps before the adversarial term starts")
    parser.add_argument("--max_steps", type=int, default=None, help="stop each arm early (tests)")
    parser.add_argument("--max_images", type=int, default=None,
                        help="the first N training and test images only (tests)")
    args = parser.parse_args(argv)
    arms = {text: parse_arm(text) for text in args.arms}
    train = data.load_split("fashion_mnist", "train").images[:args.max_images]
    test = data.load_split("fashion_mnist", "test").images[:args.max_images]
    train, test = (split.astype(np.float32) / 255.0 for split in (train, test))
    ids = labels.load_labels("fashion_mnist", "test")[:len(test)]
    model = runs.load_model_from(args.model)
    if not isinstance(model, DiscreteAutoencoder):
        raise ValueError(f"--model must be a VQ-VAE or dVAE (frozen codes). Received: "
                         f"{args.model}, a {type(model).__name__}")
    table = Table(f"Decoder-only fine-tunes of `{args.model}` on its frozen codes",
                  ["arm", "minutes", "test MSE", "classifier drop (points)"])
    given = measure(model, test, ids)
    table.add("the model as given", "", f"{given['mse']:.5f}", f"{given['drop']:.2f}")
    for text, arm in arms.items():
        model = runs.load_model_from(args.model)
        seconds = fine_tune(model, train, arm, args.epochs, args.feature_weight, args.warmup,
                            args.max_steps)
        result = measure(model, test, ids)
        table.add(text, f"{seconds / 60:.1f}", f"{result['mse']:.5f}", f"{result['drop']:.2f}")
    return print_report(table, f"{len(train)} training and {len(test)} test images, "
                               f"{args.epochs} epochs, feature weight {args.feature_weight}")


if __name__ == "__main__":
    main()
