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
GUIDANCE_SAMPLES = CARD_SAMPLES  # the table at the card's count: its rows compare with the rest


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


# Issue 10's targets for the shipped dVAE prior, applied to every generator's card.
TARGET_ACCURACY = 0.90
TARGET_RATIO = 3.0


def _targets_text(rows: list[dict]) -> tuple[str, float | None]:
    """A sentence on which guidance scales meet the targets, and the best such scale."""
    meeting = [row for row in rows if row["class_accuracy"] >= TARGET_ACCURACY
               and row.get("ratio_to_reconstructions", float("inf")) <= TARGET_RATIO]
    rule = (f"class accuracy >= {100 * TARGET_ACCURACY:.0f} % and a Fréchet distance at most "
            f"{TARGET_RATIO:g}x the reconstructions'")
    if not meeting:
        return f"No guidance scale above meets both targets ({rule}).", None
    best = min(meeting, key=lambda row: row["frechet_distance"])
    scales = ", ".join(f"{row['guidance_scale']:g}" for row in meeting)
    return f"Guidance scale {scales} meets both targets ({rule}).", best["guidance_scale"]


def _ratio(row: dict) -> str:
    ratio = row.get("ratio_to_reconstructions")
    return f"{ratio:.2f}" if ratio is not None else "–"


def prior_card(name: str, report: dict, config: dict, timing: str, params: int) -> str:
    """The model card of a published generator, from its metrics, config and training time."""
    mc = config["model_config"]
    sampling = ", ".join(f"`{k}={v}`" for k, v in report["sampling"].items())
    guidance = report["guidance"]
    guidance_rows = "\n".join(
        f"| {row['guidance_scale']:g} | {100 * row['class_accuracy']:.1f} % | "
        f"{row['frechet_distance']:.3g} | "
        f"{_ratio(row)} |" for row in guidance["rows"])
    samples = report["samples"]
    targets, best_scale = _targets_text(guidance["rows"])
    default_scale = report["sampling"].get("guidance_scale", 1.0)
    guided = f", guidance_scale={best_scale:g}" if best_scale not in (None, default_scale) else ""
    guided_flag = guided.replace(", guidance_scale=", " --guidance_scale=")
    default_text = (f"The generator's own guidance scale (`generator.guidance_scale`, used when "
                    f"`generate` and `trainers.generate` are given none) is {default_scale:g}.")
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
python -m trainers.train_prior --config={name} --model_dir=runs/zoo/{name}
python -m trainers.evaluate_prior --model=runs/zoo/{name}
```

(`make zoo-train NAME={name}` in the repository) trains from the shipped recipe `{name}`
(`configs/{name}.json` in the repository) and measures the run
({report['num_samples']:,} samples; compare with the figures below).
`python -m trainers.publish --name={name} --model_dir=runs/zoo/{name}`
(`make zoo-publish NAME={name}`; an installed package needs `--output_root`) evaluates it
the same way and writes this folder: the card, pictures and manifest. The resolved config
is `config.json` beside this card.

## Likelihood (Fashion-MNIST test split, the codes of its 10,000 images)

| test bits per image | raw code size (h·w·log2 K) | next-code accuracy |
| --- | --- | --- |
| {report['test_bits_per_image']:.1f} | {report['raw_bits_per_image']:.0f} | \
{100 * report['test_code_accuracy']:.1f} % |

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

| guidance scale | class accuracy | Fréchet distance | ÷ reconstructions' |
| --- | --- | --- | --- |
{guidance_rows}

{targets} {default_text}

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
images = generator.generate(["ankle boot", "bag"], seed=0{guided})  # (2, 28, 28, 1) in [0, 1]
```

or `python -m trainers.generate --model={name} --prompt="ankle boot" --count=8
--output_dir=generated{guided_flag}`. Fine-tune the prior with
`generator.prior.fit(codes, labels)`, codes from `generator.autoencoder.encode(images)`.
"""


def publish_prior(name: str, model_dir, output_root=None, num_samples: int = CARD_SAMPLES,
                  guidance_samples: int = GUIDANCE_SAMPLES) -> pathlib.Path:
    """Evaluates a prior run and writes it as `saved_models/<name>/` with card and manifest."""
    from trainers.evaluate_prior import evaluate_prior
    from trainers.model_card import read_json, training_time
    from trainers.runs import load_run_model
    from zoo import presets
    from zoo.atomic import write_text

    model_dir = pathlib.Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    generator = load_run_model(model_dir)
    eval_dir = model_dir / "eval"
    report = evaluate_prior(generator, eval_dir, config["training"]["dataset"], num_samples,
                            GUIDANCE_SCALES, guidance_samples, **config.get("sampling", {}))
    report["class_names"] = list(generator.class_names)
    run_info = read_json(model_dir / "run_info.json")
    metrics = eval_dir / "published_metrics.json"
    write_text(metrics, json.dumps(report, indent=2) + "\n")
    extra = {"metrics.json": metrics, "samples.png": eval_dir / "samples.png",
             "completions.png": eval_dir / "completions.png"}
    if run_info:
        extra["run_info.json"] = model_dir / "run_info.json"
    target = presets.publish_root(output_root) / name
    card = prior_card(name, report, config, training_time(run_info), generator.count_params())
    published = _without_optimizer(generator, report["sampling"]["guidance_scale"])
    presets.save_preset(published, target, config=config, card=card,
                        overwrite=True, extra_files=extra)
    print(f"Published {target}/")
    return target


def _without_optimizer(generator, guidance_scale: float):
    """The same generator around an uncompiled copy of its prior, with `guidance_scale`.

    A run's generator holds a compiled prior, and saving it keeps the prior's
    Adam state (twice the prior's weights) even from an uncompiled load. The
    guidance scale is the run config's (`sampling.guidance_scale`), which the
    card's figures were measured at.
    """
    import zoo

    prior = zoo.TransformerPrior.from_config(generator.prior.get_config())
    prior.set_weights(generator.prior.get_weights())
    return zoo.ImageGenerator(generator.autoencoder, prior, generator.class_names,
                              guidance_scale=guidance_scale)


def rerender_prior_card(folder) -> pathlib.Path:
    """Rewrites a published generator's card from its files, and its manifest. No evaluation."""
    from trainers.model_card import read_json, training_time
    from trainers.runs import load_model_from
    from zoo import presets
    from zoo.atomic import write_text

    folder = pathlib.Path(folder)
    generator = load_model_from(folder)  # verifies the manifest first
    text = prior_card(folder.name, read_json(folder / "metrics.json"),
                      read_json(folder / "config.json"),
                      training_time(read_json(folder / "run_info.json")), generator.count_params())
    write_text(folder / presets.CARD_FILE, text)
    presets.write_manifest(folder)
    return folder
