r"""Evaluate a trained model on a test set: `python -m trainers.evaluate --model_dir=runs/dvae`.

Prints a table and writes `<output_dir>/metrics.json`, `reconstructions.png`
(test images over their reconstructions) and, for the VAE and the dVAE,
`samples.png` (decoded draws from the prior). `--output_dir` defaults to
`<model_dir>/eval`.
"""

import json
import pathlib

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines this command's flags.

    Called only when the command runs (not on import), so `run_evaluation`
    can be imported in a process that defines `--model_dir` elsewhere
    (`trainers.publish`, `trainers.train`).
    """
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("model_dir", None, "A training run's folder (required).", **fv)
    flags.DEFINE_string("dataset", None, "Dataset; defaults to the run's.", **fv)
    flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Split to evaluate.", **fv)
    flags.DEFINE_integer("batch_size", 256, "Evaluation batch size.", **fv)
    flags.DEFINE_integer("max_images", None, "Evaluate only the first N images.", **fv)
    flags.DEFINE_string("output_dir", None, "Where to write results; defaults to <model_dir>/eval.",
                        **fv)


def run_evaluation(model_dir, dataset=None, split="test", batch_size=256, max_images=None,
                   output_dir=None) -> dict:
    """Evaluates a run's model and writes metrics.json and pictures.

    Returns:
        The metrics dict (also written to `metrics.json`).
    """
    import numpy as np

    from trainers import data
    from trainers import images as image_io
    from trainers.evaluation import evaluate_model, format_table
    from trainers.runs import find_model_file, load_run_model

    model_dir = pathlib.Path(model_dir)
    model = load_run_model(model_dir)
    config_path = model_dir / "config.json"
    run_config = json.loads(config_path.read_text()) if config_path.exists() else {}
    source = dataset or run_config.get("training", {}).get("dataset", "fashion_mnist")
    test = data.load_split(source, split, model.image_shape)
    if max_images:
        test = data.Split(test.images[:max_images], None, min(max_images, test.num_examples),
                          test.source) if test.images is not None else data.Split(
            None, test.dataset.take(max_images), min(max_images, test.num_examples), test.source)
    batches = data.make_dataset(test, batch_size, shuffle=False)
    results = evaluate_model(model, batches)
    output_dir = pathlib.Path(output_dir or model_dir / "eval")
    output_dir.mkdir(parents=True, exist_ok=True)
    report = {"model_file": str(find_model_file(model_dir)), "dataset": str(source), "split": split,
              "latent_bits_per_image": latent_bits(model), **results}
    (output_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    first = next(iter(batches)).numpy()[:12]
    image_io.save_comparison(
        first, model.predict(first, verbose=0), output_dir / "reconstructions.png"
    )
    if hasattr(model, "sample"):
        image_io.save_samples(np.asarray(model.sample(24, seed=0)), output_dir / "samples.png")
    print(format_table(results, f"{type(model).__name__} on {source} [{split}]"))
    print(f"\nWrote {output_dir}/metrics.json and PNG pictures.")
    return report


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


def main(argv):
    del argv
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required.")
    run_evaluation(FLAGS.model_dir, FLAGS.dataset, FLAGS.split, FLAGS.batch_size, FLAGS.max_images,
                   FLAGS.output_dir)


if __name__ == "__main__":
    define_flags()
    app.run(main)
