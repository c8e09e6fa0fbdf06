"""Publishing a `trainers.train_prior` run into the zoo (called by `trainers.publish`).

`publish_prior(name, model_dir)` measures the run's generator with
`trainers.evaluate_prior` (10,000 samples by default, at the sampling
options of the run's config), then writes `saved_models/<name>/` with
`zoo.presets.save_preset`: `model.keras` (the `ImageGenerator`),
`config.json`, `metrics.json`, `samples.png`, `completions.png`, the card
`README.md` (built from those files, so every number on it comes from the
command) and `manifest.json`.
"""

import json
import pathlib

CARD_SAMPLES = 10_000
GUIDANCE_SCALES = (1.0, 2.0, 3.0)
GUIDANCE_SAMPLES = 2_000


def _figure_rows(report: dict) -> str:
    rows = []
    labels = {"samples": "class-conditional samples", "reconstructions":
              "autoencoder reconstructions", "uniform_prior": "uniform-prior samples",
              "real_floor": "real training images (floor)"}
    for key, label in labels.items():
        accuracy = report[key].get("class_accuracy")
        shown = f"{100 * accuracy:.1f} %" if accuracy is not None else "–"
        rows.append(f"| {label} | {shown} | {report[key]['frechet_distance']:.3g} |")
    return "\n".join(rows)


def prior_card(name: str, report: dict, config: dict, run_info: dict, params: int) -> str:
    """The model card of a published generator, from its metrics and run files."""
    seconds = run_info.get("train_seconds")
    machines = sorted({s["machine"] for s in run_info.get("sessions", [])})
    timing = (f"{seconds / 60.0:.1f} minutes of wall time (`run_info.json` of the run) on "
              f"{', '.join(machines)}\n  (CPU only, on a machine shared with other work: an upper "
              "bound)") if seconds else "not recorded"
    mc = config["model_config"]
    sampling = ", ".join(f"`{k}={v}`" for k, v in report["sampling"].items())
    guidance = report["guidance"]
    guidance_rows = "\n".join(
        f"| {row['guidance_scale']:g} | {100 * row['class_accuracy']:.1f} % | "
        f"{row['frechet_distance']:.3g} |" for row in guidance["rows"])
    samples = report["samples"]
    return f"""# {name}

A class-conditional Transformer prior over the codes of the frozen
`{config['autoencoder']}`, packaged with it as one `zoo.ImageGenerator`: from a
Fashion-MNIST class name to pixels. A condition token (the class, or "no condition"),
then the {mc['grid_shape'][0]}x{mc['grid_shape'][1]} codes in raster order;
{mc['num_layers']} pre-LayerNorm blocks of width {mc['embed_dim']} ({mc['num_heads']} heads).

- Parameters: {params:,} (prior and autoencoder)
- Training time of the prior: {timing}

## Reproduce

```
make zoo-train NAME={name}
```

which runs `python -m trainers.train_prior --config=configs/{name}.json
--model_dir=runs/zoo/{name}` and then `python -m trainers.publish --name={name}
--model_dir=runs/zoo/{name}` (`trainers.evaluate_prior` with {report['num_samples']:,} samples,
this card, the manifest). The resolved config is `config.json` beside this card.

## Likelihood (Fashion-MNIST test split, the codes of its 10,000 images)

| test bits per image | raw code size (h·w·log2 K) | next-code accuracy |
| --- | --- | --- |
| {report['test_bits_per_image']:.1f} | {report['raw_bits_per_image']:.0f} | {100 * report['test_code_accuracy']:.1f} % |

## Sample quality

Measured by `python -m trainers.evaluate_prior` with the repository's evaluation classifier
(`trainers/assets/`, {100 * report['classifier']['real_test_accuracy']:.1f} % accuracy on the real
test images): class accuracy of the samples against the class asked for, and the Fréchet
distance to the 10,000 test images in the classifier's penultimate features, every row on
{report['num_samples']:,} images (the same number per class). Sampling: {sampling}.

| images | class accuracy | Fréchet distance |
| --- | --- | --- |
{_figure_rows(report)}

The samples' distance is {samples['ratio_to_reconstructions']:.2f}x that of the autoencoder's
own reconstructions.

Guidance scale ({guidance['num_samples']:,} samples per row; real floor at that count
{guidance['real_floor']:.3g}):

| guidance scale | class accuracy | Fréchet distance |
| --- | --- | --- |
{guidance_rows}

## Samples (one row per class: {', '.join(report['class_names'])})

![samples](samples.png)

## Completions

Per class, a test image, its reconstruction, then six completions that keep the top
{report['completion_rows_kept']} rows of its codes and sample the rest.

![completions](completions.png)

## Use

```python
import zoo
generator = zoo.load("{name}")     # verifies sha256 checksums
images = generator.generate(["ankle boot", "bag"], seed=0)   # float32 (2, 28, 28, 1) in [0, 1]
```

or `python -m trainers.generate --model={name} --prompt="ankle boot" --count=8
--output_dir=generated`. Fine-tune the prior with `generator.prior.fit(codes, labels)`, codes
from `generator.autoencoder.encode(images)`.
"""


def publish_prior(name: str, model_dir, output_root=None, num_samples: int = CARD_SAMPLES,
                  guidance_samples: int = GUIDANCE_SAMPLES) -> pathlib.Path:
    """Evaluates a prior run and writes it as `saved_models/<name>/` with card and manifest."""
    from trainers.evaluate_prior import evaluate_prior
    from trainers.runs import load_run_model
    from zoo import presets

    model_dir = pathlib.Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    generator = load_run_model(model_dir)
    eval_dir = model_dir / "eval"
    report = evaluate_prior(generator, eval_dir, config["training"]["dataset"], num_samples,
                            GUIDANCE_SCALES, guidance_samples, **config.get("sampling", {}))
    report["class_names"] = list(generator.class_names)
    info_path = model_dir / "run_info.json"
    run_info = json.loads(info_path.read_text()) if info_path.exists() else {}
    metrics = eval_dir / "metrics.json"
    metrics.write_text(json.dumps(report, indent=2) + "\n")
    target = pathlib.Path(output_root or presets.saved_models_dir()) / name
    card = prior_card(name, report, config, run_info, generator.count_params())
    presets.save_preset(generator, target, config=config, card=card, overwrite=True,
                        extra_files={"metrics.json": metrics,
                                     "samples.png": eval_dir / "samples.png",
                                     "completions.png": eval_dir / "completions.png"})
    print(f"Published {target}/")
    return target
