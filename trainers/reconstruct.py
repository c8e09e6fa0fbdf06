r"""Reconstruct a folder of images: `python -m trainers.reconstruct --model_dir=runs/dvae \
    --input_dir=my_images --output_dir=reconstructions`.

Each image under `--input_dir` (PNG/JPEG/BMP/GIF, nested or flat) is
converted to the model's input (channels, center crop, resize), passed
through the model, and its reconstruction written as PNG to the same
relative path under `--output_dir` (suffix `.png`; files that would share a
name, such as `a.jpg` and `a.png`, keep their own suffix before it:
`a.jpg.png`, `a.png.png`). `--model` is a zoo name,
a preset folder, a run folder or a `.keras` file (`--model_dir=<run folder>`
works too).
"""

import pathlib

from absl import app, flags

from trainers import cli

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines this command's flags, only when it runs (not on import), so
    `reconstruct_folder` can be imported next to other commands' flags."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("model_dir", None, "A training run's folder (same as --model).", **fv)
    flags.DEFINE_string("model", None, cli.MODEL_HELP, **fv)
    flags.DEFINE_string("input_dir", None, "Folder of images (required).", **fv)
    flags.DEFINE_string("output_dir", None, "Where to write PNG reconstructions (required).", **fv)
    flags.DEFINE_integer("batch_size", 64, "Batch size.", **fv)


def reconstruct_folder(model, input_dir, output_dir, batch_size: int = 64) -> list[pathlib.Path]:
    """Writes the reconstruction of every image under `input_dir` as PNG.

    Returns:
        The written paths.
    """
    import keras
    import numpy as np

    from trainers import data
    from trainers import images as image_io
    from zoo.atomic import atomic_path

    input_dir, output_dir = pathlib.Path(input_dir), pathlib.Path(output_dir)
    files = data.image_files(input_dir)
    targets = output_paths(files, input_dir, output_dir)
    written = []
    progress = keras.utils.Progbar(len(files), unit_name="image")
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        batch = np.stack([data.read_image_file(p, model.image_shape) for p in chunk])
        outputs = model.predict(batch.astype("float32") / 255.0, verbose=0)
        for target, output in zip(targets[start : start + batch_size], outputs, strict=True):
            with atomic_path(target) as tmp:
                image_io.save_png(np.round(np.clip(output, 0, 1) * 255), tmp)
            written.append(target)
        progress.update(start + len(chunk))
    return written


def output_paths(files, input_dir: pathlib.Path, output_dir: pathlib.Path) -> list[pathlib.Path]:
    """Where each file's reconstruction goes: its relative path with suffix `.png`, or, for
    files that would share that name (`a.jpg`, `a.png`), its name followed by `.png`."""
    import collections

    plain = [output_dir / f.relative_to(input_dir).with_suffix(".png") for f in files]
    counts = collections.Counter(plain)
    targets = [
        target if counts[target] == 1 else target.with_name(file.name + ".png")
        for file, target in zip(files, plain, strict=True)
    ]
    if len(set(targets)) != len(targets):  # e.g. a.jpg, a.png and a file named a.jpg.png
        clash = next(t for t, n in collections.Counter(targets).items() if n > 1)
        raise ValueError(
            f"Two images under {input_dir} would be reconstructed into {clash}: rename one."
        )
    return targets


def main(argv, flag_values: flags.FlagValues = FLAGS):
    del argv
    fv = flag_values
    from trainers import data
    from trainers.runs import load_model_from

    cli.require(fv, "input_dir", "output_dir")
    spec = cli.model_flag(fv)
    if fv.batch_size < 1:
        raise app.UsageError(f"--batch_size must be >= 1. Received: {fv.batch_size}")
    with cli.user_errors("Reconstruction failed"):
        data.image_files(fv.input_dir)  # a missing or empty folder, before the model loads
        model = load_model_from(spec)
    with cli.user_errors("Reconstruction failed", ValueError):  # unreadable image files
        written = reconstruct_folder(model, fv.input_dir, fv.output_dir, fv.batch_size)
    print(f"Wrote {len(written)} reconstructions under {fv.output_dir}/")


if __name__ == "__main__":
    cli.run(main, define_flags)
