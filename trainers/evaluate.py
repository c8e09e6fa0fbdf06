r"""Evaluate a model on a test set: `python -m trainers.evaluate --model=runs/dvae`.

`--model` is a zoo name, a preset folder, a training run folder or a `.keras`
file (`--model_dir=<run folder>` works too). Shows a progress bar over the
test images, prints a table and writes `<output_dir>/metrics.json`,
`reconstructions.png` (test images over their reconstructions) and, for the
VAE and the dVAE, `samples.png` (decoded draws from the prior). On
Fashion-MNIST it also reports how much accuracy the repository's evaluation
classifier loses on the reconstructions against the originals.
`--output_dir` defaults to `<run folder>/eval`, or `runs/eval/<name>` for a
zoo model or preset. The dataset defaults to the one in the model's
`config.json` (else Fashion-MNIST).

Examples:
    python -m trainers.evaluate --model=dvae_fashion_mnist
    python -m trainers.evaluate --model=runs/dvae --max_images=1000
"""

import json
import pathlib

from absl import app, flags

from trainers import cli

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines this command's flags.

    Called only when the command runs (not on import), so `run_evaluation`
    can be imported in a process that defines `--model_dir` elsewhere
    (`trainers.publish`, `trainers.train`).
    """
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("model", None, cli.MODEL_HELP, **fv)
    flags.DEFINE_string("model_dir", None, "A training run's folder (same as --model).", **fv)
    flags.DEFINE_string("dataset", None, "Dataset; defaults to the run's.", **fv)
    flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Split to evaluate.", **fv)
    flags.DEFINE_integer("batch_size", 256, "Evaluation batch size.", **fv)
    flags.DEFINE_integer("max_images", None, "Evaluate only the first N images.", **fv)
    flags.DEFINE_string("output_dir", None, "Where to write results; defaults to <run>/eval, "
                        "or runs/eval/<name> for a zoo model or preset.", **fv)


def default_output_dir(model) -> pathlib.Path:
    """`<run folder>/eval` for a run or `.keras` file, `runs/eval/<name>` for a preset."""
    from trainers.runs import locate_model

    location = locate_model(model)
    if location.is_dir():  # a zoo model or preset: never write into it
        return pathlib.Path("runs") / "eval" / location.name
    return location.parent / "eval"


def run_evaluation(model, dataset=None, split="test", batch_size=256, max_images=None,
                   output_dir=None, verbose: bool = False) -> dict:
    """Evaluates a model and writes metrics.json and pictures.

    Args:
        model: str or PathLike. A zoo name, preset folder, run folder or
            `.keras` file (see `trainers.runs.load_model_from`).
        dataset: str. Defaults to the dataset of the model's `config.json`,
            else `"fashion_mnist"`. The run's own dataset is split with its
            `training.validation_fraction`; another with the default 10 %.
        split: str. `"train"`, `"validation"` or `"test"`. Defaults to `"test"`.
        batch_size: int. Defaults to `256`.
        max_images: int. Evaluate only the first N images. Defaults to all.
        output_dir: str or PathLike. Defaults to `default_output_dir(model)`.
        verbose: bool. Show a progress bar and list the files written.
            Defaults to `False`.

    Returns:
        The metrics dict (also written to `metrics.json`). On Fashion-MNIST it
        holds `classifier_accuracy`: the evaluation classifier's accuracy on
        the test images and on their reconstructions, and the drop in points
        (`trainers.evaluation.classifier_check`). A folder or array has no
        test split: its `"test"` is its held-out validation part (the images
        that chose `best.keras`), and the dict says so as
        `"images_of_split": "validation"`.
    """
    import numpy as np

    from trainers import data
    from trainers import images as image_io
    from trainers.config import ConfigError, dataset_location
    from trainers.evaluation import evaluate_model, format_table
    from trainers.runs import held_out_fraction, load_model_from, model_file, trained_on
    from zoo.atomic import atomic_path, write_text

    try:  # the user's inputs: a missing path stays a FileNotFoundError
        source_file = model_file(model)
        source = dataset or trained_on(model)
        # The run's own data is split as the run split it: with the default 10 %, a run
        # that held out 2 % was "tested" on 8 % of images it had trained on.
        same = dataset_location(str(source)) == dataset_location(trained_on(model))
        fraction = held_out_fraction(model) if same else 0.1
        output_dir = pathlib.Path(output_dir or default_output_dir(model))
        model = load_model_from(model)
        test = data.load_split(source, split, model.image_shape, fraction, verbose=verbose)
    except (ValueError, TypeError) as error:
        raise ConfigError(str(error)) from error
    if max_images:
        test = data.Split(test.images[:max_images], None, min(max_images, test.num_examples),
                          test.source, stands_in=test.stands_in) if test.images is not None else (
            data.Split(None, test.dataset.take(max_images), min(max_images, test.num_examples),
                       test.source, stands_in=test.stands_in))
    batches = data.make_dataset(test, batch_size, shuffle=False)
    results = evaluate_model(model, batches, num_images=test.num_examples if verbose else None)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = {"model_file": str(source_file), "dataset": str(source), "split": split}
    if test.stands_in:  # a folder's "test" images are its held-out validation images
        report["images_of_split"] = test.stands_in
    report = {**report, "latent_bits_per_image": latent_bits(model), **results}
    check = _classifier_check(model, test, source, split, fraction)
    if check:
        report["classifier_accuracy"] = check
    written = [write_text(output_dir / "metrics.json", json.dumps(report, indent=2) + "\n")]
    first = next(iter(batches)).numpy()[:12]
    with atomic_path(output_dir / "reconstructions.png") as tmp:
        image_io.save_comparison(first, model.predict(first, verbose=0), tmp)
    written.append(output_dir / "reconstructions.png")
    if hasattr(model, "sample"):
        with atomic_path(output_dir / "samples.png") as tmp:
            image_io.save_samples(np.asarray(model.sample(24, seed=0)), tmp)
        written.append(output_dir / "samples.png")
    if verbose:
        shown = {**results, **{f"classifier_accuracy_{k}": v for k, v in (check or {}).items()}}
        shown_split = (f"{split}: its {test.stands_in} images, having no {split} split"
                       if test.stands_in else split)
        print(format_table(shown, f"{type(model).__name__} ({source_file}) on {source} "
                                  f"[{shown_split}]"))
        print("\nWrote:\n" + "\n".join(f"  {path}" for path in written))
    return report


def _classifier_check(model, test, source, split, fraction: float) -> dict | None:
    """`evaluation.classifier_check` on Fashion-MNIST at 28x28x1, else `None`
    (the evaluation classifier knows no other data)."""
    from trainers import labels
    from trainers.evaluation import classifier_check

    if str(source) != "fashion_mnist" or tuple(model.image_shape) != (28, 28, 1):
        return None
    images = test.images.astype("float32") / 255.0
    return classifier_check(
        model, images, labels.load_labels(source, split, fraction)[: len(images)])


def latent_bits(model) -> float:
    """Size of one image's latent code in bits at the nominal image size.

    Discrete models: h * w * log2(K). Continuous models: h * w * channels
    float32 values, counted at 32 bits each.
    """
    import math

    h, w = model.latent_grid
    if hasattr(model, "num_embeddings"):
        return h * w * math.log2(model.num_embeddings)
    return h * w * model.latent_channels * 32.0


def main(argv, flag_values: flags.FlagValues = FLAGS):
    del argv
    fv = flag_values
    model = cli.model_flag(fv)
    if fv.batch_size < 1 or (fv.max_images is not None and fv.max_images < 1):
        raise app.UsageError("--batch_size and --max_images must be >= 1.")
    from trainers.config import ConfigError

    with cli.user_errors("Evaluation failed", ConfigError, FileNotFoundError):
        run_evaluation(model, fv.dataset, fv.split, fv.batch_size, fv.max_images,
                       fv.output_dir, verbose=True)


if __name__ == "__main__":
    cli.run(main, define_flags)
