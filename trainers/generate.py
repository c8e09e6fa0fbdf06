r"""Generate images from class names with a trained prior.

    python -m trainers.generate --model=prior_dvae_fashion_mnist --prompt="ankle boot" \
        --prompt=bag --count=8 --output_dir=generated

`--model` is a zoo name, a preset folder, a `trainers.train_prior` run
folder or a `.keras` file holding a `zoo.ImageGenerator`. Each `--prompt` is
a class name (case-insensitive) or a class id. Writes
`<output_dir>/grid.png` (one row per prompt, `--count` images each) and every
image as `<output_dir>/<class>_<i>.png`, and prints where. `--autoencoder`
decodes the prior's codes with another autoencoder that gives the same codes
(`zoo.ImageGenerator.with_autoencoder`), such as a decoder fine-tuned with
`training.freeze`:

    python -m trainers.generate --model=prior_dvae_fashion_mnist \
        --autoencoder=dvae_perceptual_fashion_mnist --prompt=bag --output_dir=generated
"""

import pathlib
import re

from absl import flags

from trainers import cli

FLAGS = flags.FLAGS
BATCH_SIZE = 256
"""Images drawn at once: more prompts x `--count` are drawn in batches, with a progress
bar, batch `i` at seed `seed + i` (`trainers.generation.generate_in_batches`)."""


def define_flags() -> None:
    """Defines this command's flags (only when it runs, as `trainers.evaluate`)."""
    flags.DEFINE_string("model", None, "The ImageGenerator: a zoo name, a preset folder, a "
                        "trainers.train_prior run folder or a .keras file.")
    flags.DEFINE_string("autoencoder", None, "Decode with this autoencoder instead of the "
                        "generator's own: one fine-tuned from it with its encoder (and a VQ-VAE's "
                        "codebook) frozen, e.g. dvae_perceptual_fashion_mnist for "
                        "prior_dvae_fashion_mnist.")
    flags.DEFINE_multi_string("prompt", [], "A class name or id; repeat for several.")
    flags.DEFINE_integer("count", 8, "Images per prompt.")
    flags.DEFINE_string("output_dir", None, "Where the PNG files go (required).")
    flags.DEFINE_integer("seed", 0, "Sampling seed: the same seed gives the same images.")
    flags.DEFINE_float("temperature", 1.0, "Softmax temperature (> 0).")
    flags.DEFINE_integer("top_k", 0, "Sample among the k likeliest codes; 0: all.")
    flags.DEFINE_float("guidance_scale", None, "Classifier-free guidance; 1: none. Defaults "
                       "to the generator's own (its card's choice).")


def file_stem(prompt: str) -> str:
    """A file-name-safe form of a prompt (`"T-shirt/top"` -> `"t-shirt_top"`)."""
    return re.sub(r"[^a-z0-9-]+", "_", str(prompt).lower()).strip("_") or "prompt"


def generate_files(generator, prompts: list, count: int, output_dir, seed: int = 0,
                   **sampling) -> list[pathlib.Path]:
    """Generates `count` images per prompt and writes the grid and each image as PNG.

    Up to `BATCH_SIZE` images are drawn in one call of `generator.generate`;
    more are drawn in batches of that size with a progress bar, which bounds
    the sampling loop's memory (its key/value cache grows with the batch).

    Args:
        generator: a `zoo.ImageGenerator`.
        prompts: class names or ids.
        count: int. Images per prompt.
        output_dir: folder for `grid.png` and `<class>_<i>.png` (a class
            repeated in row r: `<class>_row<r>_<i>.png`).
        seed: int. Sampling seed. Defaults to `0`.
        **sampling: `temperature`, `top_k`, `guidance_scale` for `generate`.

    Returns:
        The written paths, the grid first.
    """
    import numpy as np

    from trainers import images as image_io
    from trainers.generation import generate_in_batches

    if not prompts:
        raise ValueError("Give at least one prompt (a class name or id).")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"`count` must be a positive integer. Received: {count!r}")
    output_dir = pathlib.Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"--output_dir {output_dir} is a file; give a folder.")
    # "9": class id 9, unless a class is named "9" (folders named by number).
    names = {str(name).strip().lower() for name in generator.class_names}
    prompts = [int(p) if str(p).isdigit() and str(p).strip().lower() not in names else p
               for p in prompts]
    ids = generator.class_ids([p for p in prompts for _ in range(count)])
    images = generate_in_batches(generator, ids, BATCH_SIZE, verbose=len(ids) > BATCH_SIZE,
                                 seed=seed, **sampling)
    rows = [images[i * count : (i + 1) * count] for i in range(len(prompts))]
    written = [image_io.save_png(image_io.image_grid(rows), output_dir / "grid.png", scale=2)]
    # Files are named after the class: "9" and "Ankle boot" both give ankle_boot_000.png.
    stems = [file_stem(generator.class_names[p] if isinstance(p, int) else p) for p in prompts]
    for r, (stem, row) in enumerate(zip(stems, rows, strict=True)):
        if stem in stems[:r]:  # a repeated prompt ("bag", "Bag") keeps its own files
            stem = f"{stem}_row{r + 1}"
        for i, image in enumerate(row):
            written.append(image_io.save_png(
                np.round(np.clip(image, 0.0, 1.0) * 255.0), output_dir / f"{stem}_{i:03d}.png"))
    return written


def main(argv):
    del argv
    from trainers.generation import load_generator

    cli.require(FLAGS, "model", "output_dir")
    with cli.user_errors("Generation refused"):
        generator = load_generator(FLAGS.model, FLAGS.autoencoder)
        written = generate_files(
            generator, FLAGS.prompt, FLAGS.count, FLAGS.output_dir, FLAGS.seed,
            temperature=FLAGS.temperature, top_k=FLAGS.top_k or None,
            guidance_scale=FLAGS.guidance_scale)
    print(f"Wrote {written[0]} ({len(FLAGS.prompt)} rows x {FLAGS.count}) and "
          f"{len(written) - 1} images in {FLAGS.output_dir}/.")


if __name__ == "__main__":
    cli.run(main, define_flags)
