r"""Publish a training run into the zoo: `python -m trainers.publish --name=dvae_fashion_mnist \
    --model_dir=runs/zoo/dvae_fashion_mnist`.

Evaluates the run's model on the whole test set, then writes
`saved_models/<name>/`: `model.keras`, `config.json`, `metrics.json`,
`reconstructions.png`, `samples.png` (VAE, dVAE), the model card
`README.md` (built from those files, so every number on it comes from this
command) and `manifest.json` with the sha256 of every file.
"""

import json
import pathlib
import shutil

from absl import app, flags

FLAGS = flags.FLAGS
CHECK_IMAGES = 1000  # the subset the default test suite re-evaluates



def define_flags() -> None:
    """Defines this command's flags (only when it runs, as `trainers.evaluate`)."""
    flags.DEFINE_string("name", None, "Zoo name, e.g. dvae_fashion_mnist (required).")
    flags.DEFINE_string("model_dir", None, "The training run to publish (required).")
    flags.DEFINE_string("output_root", None, "Defaults to the repo's saved_models/.")

FAMILY_TEXT = {
    "AE": "Deterministic convolutional autoencoder (continuous latent grid).",
    "VAE": "Variational autoencoder with a Gaussian latent and a calibrated Gaussian decoder.",
    "VQVAE": "VQ-VAE with an EMA codebook and dead-code restarts.",
    "DVAE": "DALL-E discrete VAE (Gumbel-softmax relaxation, argmax codes at inference).",
}


def _card(name: str, report: dict, config: dict, run_info: dict, params: int, family: str) -> str:
    metric_rows = "\n".join(
        f"| {key} | {value:.6g} |" if isinstance(value, float) else f"| {key} | {value} |"
        for key, value in report.items()
        if key not in ("model_file", "dataset", "split") and not isinstance(value, dict)
    )
    seconds = run_info.get("train_seconds")
    machines = sorted({s["machine"] for s in run_info.get("sessions", [])})
    timing = (
        f"{seconds / 60.0:.1f} minutes of wall time (`run_info.json` of the run) on "
        f"{', '.join(machines)}\n  (CPU only; the machine was shared with other work, so this "
        "is an upper bound)"
        if seconds
        else "not recorded"
    )
    samples = "\n![samples from the prior](samples.png)\n" if family in ("VAE", "DVAE") else ""
    return f"""# {name}

{FAMILY_TEXT[family]} Trained on Fashion-MNIST (60,000 training images less a
10 % validation hold-out; the Debian package `dataset-fashion-mnist`).

- Parameters: {params:,}
- Latent size: {report['latent_bits_per_image']:.0f} bits per image
  ({_latent_text(config)})
- Training time: {timing}

## Reproduce

```
make zoo-train NAME={name}
```

which runs `python -m trainers.train --config=configs/{name}.json --model_dir=runs/zoo/{name}`
and then `python -m trainers.publish --name={name} --model_dir=runs/zoo/{name}`
(evaluation on the test set, this card, the manifest). The resolved training config is
`config.json` beside this card.

## Test-set metrics (Fashion-MNIST test split, {report['num_images']} images)

From `python -m trainers.evaluate` (`metrics.json`); MSE on the [0, 1] scale, mean over pixels.

| metric | value |
| --- | --- |
{metric_rows}

## Reconstructions (top: test images, bottom: reconstructions)

![reconstructions](reconstructions.png)
{samples}
## Use

```python
import zoo
model = zoo.load("{name}")          # verifies sha256 checksums, compiled for fine-tuning
reconstructions = model(images)      # float32 NHWC in [0, 1]
latents = model.encode(images)
```
"""


def _latent_text(config: dict) -> str:
    mc = config["model_config"]
    h = mc["image_shape"][0] // 2 ** mc["num_downsamples"]
    w = mc["image_shape"][1] // 2 ** mc["num_downsamples"]
    if "num_embeddings" in mc:
        return f"a {h}x{w} grid of codes from a codebook of {mc['num_embeddings']}"
    return f"a {h}x{w}x{mc['latent_channels']} grid of float32 values"


def publish(name: str, model_dir, output_root=None) -> pathlib.Path:
    """Evaluates a run and writes it as `saved_models/<name>/` with card and manifest."""
    import keras

    from trainers.evaluate import run_evaluation
    from trainers.runs import find_model_file, load_run_model
    from zoo import presets

    model_dir = pathlib.Path(model_dir)
    if json.loads((model_dir / "config.json").read_text()).get("model") == "prior":
        from trainers.publish_prior import publish_prior

        target = publish_prior(name, model_dir, output_root)
        write_index(target.parent)
        return target
    target = pathlib.Path(output_root or presets.saved_models_dir()) / name
    eval_dir = model_dir / "eval"
    report = run_evaluation(model_dir, output_dir=eval_dir)
    model = load_run_model(model_dir)
    check = run_evaluation(model_dir, max_images=CHECK_IMAGES, output_dir=eval_dir / "check")
    report["first_1000_test_images"] = {
        key: check[key] for key in check if key not in ("model_file", "dataset", "split")
    }
    config = json.loads((model_dir / "config.json").read_text())
    info_path = model_dir / "run_info.json"
    run_info = json.loads(info_path.read_text()) if info_path.exists() else {}
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    # Shipped without optimizer state (a third of the size); `zoo.load`
    # compiles a fresh optimizer for fine-tuning.
    keras.saving.load_model(find_model_file(model_dir), compile=False).save(
        target / presets.MODEL_FILE
    )
    shutil.copy(model_dir / "config.json", target / "config.json")
    report["model_file"] = presets.MODEL_FILE
    (target / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    for picture in ("reconstructions.png", "samples.png"):
        if (eval_dir / picture).exists():
            shutil.copy(eval_dir / picture, target / picture)
    family = type(model).__name__
    (target / "README.md").write_text(
        _card(name, report, config, run_info, model.count_params(), family)
    )
    presets.write_manifest(target)
    write_index(target.parent)
    print(f"Published {target}/")
    return target


INDEX_COLUMNS = ("mse", "psnr", "ssim", "bits_per_dim", "perplexity", "codebook_usage")


def write_index(root) -> pathlib.Path:
    """Writes `<root>/README.md`: one table row per published model, from its metrics.json."""
    root = pathlib.Path(root)
    rows, generator_rows = [], []
    for folder in sorted(p for p in root.iterdir() if (p / "metrics.json").is_file()):
        metrics = json.loads((folder / "metrics.json").read_text())
        if "test_bits_per_image" in metrics:  # a generator (trainers.publish_prior)
            generator_rows.append(_generator_row(folder.name, metrics))
            continue
        cells = [
            f"{metrics[key]:.4g}" if key in metrics else "–" for key in INDEX_COLUMNS
        ]
        rows.append(
            f"| [{folder.name}]({folder.name}/README.md) | "
            f"{metrics['latent_bits_per_image']:.0f} | " + " | ".join(cells) + " |"
        )
    header = "| model | latent bits / image | " + " | ".join(INDEX_COLUMNS) + " |"
    text = f"""# Pretrained models

Generated by `python -m trainers.publish` from each model's `metrics.json` (Fashion-MNIST
test set, 10,000 images; MSE on the [0, 1] scale). Load one with `zoo.load(name)`; each card
gives the command that reproduces it (`make zoo-train NAME=<name>`).

{header}
|{"---|" * (len(INDEX_COLUMNS) + 2)}
""" + "\n".join(rows) + "\n"
    if generator_rows:
        text += GENERATOR_HEADER + "\n".join(generator_rows) + "\n"
    path = root / "README.md"
    path.write_text(text)
    return path


GENERATOR_HEADER = """
## Generators

Class-conditional Transformer priors packaged with their autoencoder (`zoo.ImageGenerator`),
measured by `python -m trainers.evaluate_prior` (class accuracy of the evaluation classifier on
the samples; Fréchet distance to the test images in its features, beside that of the
autoencoder's reconstructions, at the same sample count).

| generator | test bits / image (raw) | class accuracy | Fréchet distance | reconstructions' |
|---|---|---|---|---|
"""


def _generator_row(name: str, metrics: dict) -> str:
    samples = metrics["samples"]
    return (f"| [{name}]({name}/README.md) | {metrics['test_bits_per_image']:.1f} "
            f"({metrics['raw_bits_per_image']:.0f}) | {100 * samples['class_accuracy']:.1f} % | "
            f"{samples['frechet_distance']:.3g} | "
            f"{metrics['reconstructions']['frechet_distance']:.3g} |")


def main(argv):
    del argv
    if not FLAGS.name or not FLAGS.model_dir:
        raise app.UsageError("--name and --model_dir are required.")
    publish(FLAGS.name, FLAGS.model_dir, FLAGS.output_root)


if __name__ == "__main__":
    define_flags()
    app.run(main)
