"""Input pipeline: images/second that `trainers.data` delivers, against training.

Sources: Fashion-MNIST (the IDX files, in memory) and a folder of small PNGs
generated in a temporary directory (28x28 grayscale, read as they are, and
36x36 RGB, which `load_split` crops, resizes and converts). For each source
two figures: the one-time `load_split` rate (reading and converting the
files) and the rate at which `make_dataset` then delivers shuffled float32
batches, measured by iterating the dataset as `fit` does. The last column
compares the delivery rate with the fastest training rate measured in the
same run (values above 1x mean the pipeline stays ahead of training).

Run alone: `python -m bench.input_pipeline`.
"""

import argparse
import pathlib
import tempfile
import time

import numpy as np

from bench import common
from trainers import data


def write_png_folder(folder: pathlib.Path, count: int, size: int, channels: int) -> None:
    """Writes `count` random PNG images of `size` x `size` x `channels` into `folder`."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
        image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
        image.save(folder / f"{i:05d}.png")


def _delivery_rate(split: data.Split, batch_size: int, batches: int) -> float:
    """Images/second of iterating `batches` batches of a fresh `make_dataset`."""
    dataset = data.make_dataset(split, batch_size, repeat=True)
    iterator = iter(dataset)
    next(iterator)  # start-up (shuffle buffer fill) is not the steady rate
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def run(
    batch_sizes=(64, 256),
    folder_images: int = 2000,
    images_per_repeat: int = 16384,
    repeats: int = 3,
    training_rates: dict | None = None,
) -> common.Table:
    """Measures load and delivery rates; one row per (source, batch size).

    Args:
        batch_sizes: batch sizes.
        folder_images: int. PNG files per generated folder.
        images_per_repeat: int. Images delivered per timed repetition.
        repeats: int. Interleaved repetitions.
        training_rates: batch size -> fastest training images/s of this
            run, for the last column.

    Returns:
        A `common.Table`.
    """
    training_rates = training_rates or {}
    table = common.Table(
        "Input pipeline (images/s, median (min-max))",
        [
            "source",
            "batch",
            "load_split images/s (once)",
            "delivered images/s",
            "fastest training images/s",
            "delivered / training",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        gray = pathlib.Path(tmp) / "png_28x28_gray"
        rgb = pathlib.Path(tmp) / "png_36x36_rgb"
        write_png_folder(gray, folder_images, 28, 1)
        write_png_folder(rgb, folder_images, 36, 3)
        sources = {
            "fashion_mnist (train split)": "fashion_mnist",
            f"folder: {folder_images} PNG 28x28 gray": str(gray),
            f"folder: {folder_images} PNG 36x36 RGB (crop, resize, to gray)": str(rgb),
        }
        splits, load_rates = {}, {}
        for label, source in sources.items():
            start = time.perf_counter()
            splits[label] = data.load_split(source, "train", (28, 28, 1))
            load_rates[label] = splits[label].num_examples / (time.perf_counter() - start)
        for batch_size in batch_sizes:
            batches = max(images_per_repeat // batch_size, 4)
            measures = {
                label: (lambda s=split, b=batch_size, n=batches: _delivery_rate(s, b, n))
                for label, split in splits.items()
            }
            results = common.interleaved(measures, repeats)
            for label in sources:
                samples = results[label]
                if isinstance(samples, Exception):
                    table.add(
                        label,
                        batch_size,
                        f"{load_rates[label]:,.0f}",
                        common.error_cell(samples),
                        "",
                        "",
                    )
                    continue
                stat = common.summarize(samples)
                train = training_rates.get(batch_size)
                table.add(
                    label,
                    batch_size,
                    f"{load_rates[label]:,.0f}",
                    stat.format(),
                    f"{train:,.0f}" if train else "",
                    f"{stat.median / train:.0f}x" if train else "",
                )
    table.notes.append(
        "`load_split` reads and converts every file once per run (the folder is then held "
        "in memory as uint8); the delivered rate is the steady state of `make_dataset` "
        "(shuffle, batch, uint8 -> float32, prefetch)."
    )
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--folder_images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(run(args.batch_sizes, args.folder_images, repeats=args.repeats).markdown())


if __name__ == "__main__":
    main()
