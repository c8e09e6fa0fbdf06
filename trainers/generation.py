"""What the prior commands share: code encoding and sample pictures.

Used by `trainers.train_prior`, `trainers.generate` and
`trainers.evaluate_prior`.
"""

import pathlib

import keras
import numpy as np

from trainers import images as image_io


def check_discrete(autoencoder: keras.Model) -> None:
    """Refuses an autoencoder without int32 codes (a prior needs a VQ-VAE or dVAE)."""
    if not hasattr(autoencoder, "num_embeddings") or not hasattr(autoencoder, "latent_grid"):
        raise TypeError(
            "A prior needs a discrete autoencoder (VQVAE or DVAE) whose `encode` gives int32 "
            f"codes. Received: {type(autoencoder).__name__}."
        )


def load_generator(model: str, autoencoder: str | None = None):
    """The `zoo.ImageGenerator` a command's `--model` names, decoded by `--autoencoder` if given.

    Args:
        model: a zoo name, preset or run folder, or `.keras` file of a generator.
        autoencoder: optional autoencoder of the same kind, fine-tuned from the
            generator's with its encoding parts frozen
            (`ImageGenerator.with_autoencoder`).

    Raises:
        ValueError: `model` is not a generator, or `autoencoder` gives other codes.
    """
    from trainers.runs import load_model_from

    generator = load_model_from(model)
    if not hasattr(generator, "class_names"):
        raise ValueError(f"--model={model} is a {type(generator).__name__}, not an "
                         "ImageGenerator (train one with `python -m trainers.train_prior`).")
    if autoencoder is None:
        return generator
    try:
        return generator.with_autoencoder(load_model_from(autoencoder))
    except ValueError as error:
        raise ValueError(f"--autoencoder={autoencoder}: {error}") from error


def encode_images(autoencoder: keras.Model, images: np.ndarray, batch_size: int = 500,
                  verbose: bool = True) -> np.ndarray:
    """Encodes uint8 (or [0, 1] float) images into int32 code grids, with a progress bar.

    Returns:
        int32 array (N, h, w).
    """
    from trainers.data import to_unit_float

    check_discrete(autoencoder)
    progress = keras.utils.Progbar(len(images), unit_name="image") if verbose else None
    codes = []
    for start in range(0, len(images), batch_size):
        batch = to_unit_float(images[start : start + batch_size])
        codes.append(np.asarray(autoencoder.encode(batch), np.int32))
        if progress is not None:
            progress.update(start + len(batch))
    return np.concatenate(codes)


def generate_in_batches(generator: keras.Model, labels, batch_size: int = 500,
                        verbose: bool = False, **sampling) -> np.ndarray:
    """`generator.generate(labels, **sampling)` in batches: float32 images (N, H, W, C).

    Batch `i` uses seed `seed + i`: the same seed and batch size give the same
    images, and no two batches repeat each other. `verbose` shows a progress bar.
    """
    labels = np.asarray(labels, np.int32)
    seed = int(sampling.pop("seed", 0))
    progress = keras.utils.Progbar(len(labels), unit_name="sample") if verbose else None
    parts = []
    for i, start in enumerate(range(0, len(labels), batch_size)):
        chunk = labels[start : start + batch_size]
        parts.append(np.asarray(generator.generate(chunk, seed=seed + i, **sampling), np.float32))
        if progress is not None:
            progress.update(start + len(chunk))
    return np.concatenate(parts)


def class_rows(generator: keras.Model, per_class: int, seed: int = 0,
               **sampling) -> list[np.ndarray]:
    """`per_class` samples of every class, one row (array (per_class, H, W, C)) per class."""
    num_classes = len(generator.class_names)
    labels = np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
    images = np.asarray(generator.generate(labels, seed=seed, **sampling), np.float32)
    return [images[c * per_class : (c + 1) * per_class] for c in range(num_classes)]


def save_class_grid(generator: keras.Model, path, per_class: int = 10, seed: int = 0,
                    **sampling) -> pathlib.Path:
    """Writes a PNG of samples, one row per class (in class-id order)."""
    rows = class_rows(generator, per_class, seed, **sampling)
    return image_io.save_png(image_io.image_grid(rows), path, scale=2)


class SampleGrid(keras.callbacks.Callback):
    """Writes a PNG of class-conditional samples each epoch, one row per class.

    Args:
        generator: the `zoo.ImageGenerator` holding the prior being trained.
        directory: folder for `epoch_001.png`, `epoch_002.png`, ...
        per_class: int. Samples per row. Defaults to `8`.
        seed: int. The same seed every epoch, so pictures compare. Defaults to `0`.
        **sampling: `temperature`, `top_k`, `guidance_scale` for `generate`.
    """

    def __init__(self, generator: keras.Model, directory, per_class: int = 8, seed: int = 0,
                 **sampling):
        super().__init__()
        self.generator = generator
        self.directory = pathlib.Path(directory)
        self.per_class = per_class
        self.seed = seed
        self.sampling = sampling

    def on_epoch_end(self, epoch, logs=None):
        save_class_grid(self.generator, self.directory / f"epoch_{epoch + 1:03d}.png",
                        self.per_class, self.seed, **self.sampling)
