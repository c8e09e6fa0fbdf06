"""Publishing a `trainers.train_prior` run into the zoo (called by `trainers.publish`).

`publish_prior(name, model_dir)` measures the run's generator with
`trainers.evaluate_prior` (10,000 samples, fewer when the run's data has
fewer training images, at the sampling options of the run's config; data
other than Fashion-MNIST needs its own classifier), then writes
`saved_models/<name>/` with `zoo.presets.save_preset`: `model.keras` (the
`ImageGenerator`), `config.json`, `metrics.json`, `samples.png`,
`completions.png`, the classifier if one was given, the card `README.md`
(built from those files, so every number on it comes from the command) and
`manifest.json`.
"""

import json
import os
import pathlib

CARD_SAMPLES = 10_000
GUIDANCE_SCALES = (1.0, 2.0, 3.0)
CLASSIFIER_FILE = "classifier.weights.h5"  # a classifier given to publish_prior, copied in


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


def _data_texts(report: dict) -> dict:
    """The card's words for the run's data and classifier: Fashion-MNIST's, or the user's."""
    dataset = report.get("dataset", "fashion_mnist")  # reports before 2026-12-07: Fashion-MNIST
    names = [name.lower() for name in report["class_names"]]  # generate ignores case
    shape = ", ".join(map(str, report.get("image_shape", (28, 28, 1))))
    accuracy = f"{100 * report['classifier']['real_test_accuracy']:.1f} %"
    shipped = report["classifier"]["file"].startswith("trainers/assets/")
    count = f"{report.get('num_test_images', 10_000):,}"
    stands_in = report.get("images_of_split")  # a folder or array has no test split
    return {
        "data": "Fashion-MNIST" if dataset == "fashion_mnist" else f"`{dataset}`",
        "test_split": (f"its held-out {stands_in} images, having no test split: the codes of "
                       f"its {count} images" if stands_in else
                       f"test split, the codes of its {count} images"),
        "test_images": f"held-out {stands_in} images" if stands_in else "test images",
        "distance": (f"distance to the {count} held-out {stands_in} images" if stands_in else
                     f"distance to the {count} test images"),
        "classifier": (
            f"the repository's evaluation classifier\n(`trainers/assets/`, {accuracy} accuracy"
            if shipped else
            f"the classifier beside this card\n(`{CLASSIFIER_FILE}`, from "
            f"`trainers.train_classifier`; {accuracy} accuracy"),
        "classifier_flag": "" if shipped else f" --classifier=<this folder>/{CLASSIFIER_FILE}",
        "prompts": ", ".join(f'"{n}"' for n in names[::-1][:2]),
        "prompt": names[-1],
        "shape": f"({min(2, len(names))}, {shape})",
    }


def _sampling_flags(sampling: dict) -> str:
    """`evaluate_prior` flags for the sampling options the figures were measured at, where
    they are not its defaults (its guidance scale is the generator's own already)."""
    flags = ""
    if sampling.get("temperature", 1.0) != 1.0:
        flags += f" --temperature={sampling['temperature']}"
    if sampling.get("top_k"):
        flags += f" --top_k={sampling['top_k']}"
    return flags


def _reproduce_text(name: str, report: dict, texts: dict) -> str:
    """The card's commands that retrain and measure the generator (recipe or own config)."""
    from trainers.config import list_recipes

    flag, count = texts["classifier_flag"], report["num_samples"]
    measure = flag + _sampling_flags(report["sampling"])  # publish reads them from config.json
    measured = f"({report['num_samples']:,} samples; compare with the figures below)"
    if name in list_recipes():
        return f"""```
python -m trainers.train_prior --config={name} --model_dir=runs/zoo/{name}
python -m trainers.evaluate_prior --model=runs/zoo/{name}{measure}
```

(`make zoo-train NAME={name}` in the repository) trains from the shipped recipe `{name}`
(`configs/{name}.json` in the repository) and measures the run
{measured}.
`python -m trainers.publish --name={name} --model_dir=runs/zoo/{name}{flag}`
(`make zoo-publish NAME={name}`; an installed package needs `--output_root`) evaluates it
the same way and writes this folder: the card, pictures and manifest. The resolved config
is `config.json` beside this card."""
    return f"""```
python -m trainers.train_prior --config=<this folder>/config.json --model_dir=runs/zoo/{name}
python -m trainers.evaluate_prior --model=runs/zoo/{name} --num_samples={count} \\
    --guidance_samples={report['guidance']['num_samples']}{measure}
```

trains from `config.json` beside this card (the resolved config of the run that made this
generator; its `dataset` is where that run read its images) and measures the run
{measured}. `<this folder>` is this card's folder
(`python -c "import zoo.presets; print(zoo.presets.find('{name}'))"` prints it).
`python -m trainers.publish --name={name} --model_dir=runs/zoo/{name}{flag}
--output_root=<this folder's parent>` evaluates it the same way and writes this folder:
the card, pictures and manifest."""


def prior_card(name: str, report: dict, config: dict, timing: str, params: int) -> str:
    """The model card of a published generator, from its metrics, config and training time."""
    mc = config["model_config"]
    texts = _data_texts(report)
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
{texts['data']} class name to pixels. A condition token (the class, or "no condition"),
then the {mc['grid_shape'][0]}x{mc['grid_shape'][1]} codes in raster order;
{mc['num_layers']} pre-LayerNorm blocks of width {mc['embed_dim']} ({mc['num_heads']} heads).

- Parameters: {params:,} (prior and autoencoder)
- Training time of the prior: {timing}

## Reproduce

{_reproduce_text(name, report, texts)}

## Likelihood ({texts['data']} {texts['test_split']})

| test bits per image | raw code size (h·w·log2 K) | next-code accuracy |
| --- | --- | --- |
| {report['test_bits_per_image']:.1f} | {report['raw_bits_per_image']:.0f} | \
{100 * report['test_code_accuracy']:.1f} % |

## Sample quality

Measured by `python -m trainers.evaluate_prior` with {texts['classifier']} on the real
{texts['test_images']}): class accuracy of the samples against the class asked for, and the Fréchet
{texts['distance']} in the classifier's penultimate features, every row on
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
images = generator.generate([{texts['prompts']}], seed=0{guided})  # {texts['shape']} in [0, 1]
```

or `python -m trainers.generate --model={name} --prompt="{texts['prompt']}" --count=8
--output_dir=generated{guided_flag}`. Fine-tune the prior with
`generator.prior.fit(codes, labels)`, codes from `generator.autoencoder.encode(images)`.
"""


def card_sample_count(num_classes: int, training_images: int) -> int:
    """The card's sample count: `CARD_SAMPLES`, at most the training images (the real
    floor draws that many), rounded down to a multiple of the classes."""
    return min(CARD_SAMPLES, training_images) // num_classes * num_classes


def publish_prior(name: str, model_dir, output_root=None, num_samples: int | None = None,
                  guidance_samples: int | None = None,
                  classifier_path: str | os.PathLike | None = None,
                  force: bool = False) -> pathlib.Path:
    """Evaluates a prior run and writes it as `saved_models/<name>/` with card and manifest.

    Args:
        name: str. The zoo name (the folder's name).
        model_dir: str or PathLike. A `trainers.train_prior` run folder.
        output_root: str or PathLike. Defaults to the checkout's `saved_models/`
            (required when the zoo is an installed package).
        num_samples: int. Samples of the card's figures. Defaults to
            `card_sample_count` (10,000 for Fashion-MNIST).
        guidance_samples: int. Samples per row of the guidance table.
            Defaults to `num_samples`.
        classifier_path: a classifier of `trainers.train_classifier` for the
            run's data; needed when it is not Fashion-MNIST. It is copied into
            the folder (`classifier.weights.h5` and its JSON), so the card's
            figures can be measured again. Defaults to the shipped one.
        force: bool. Replace a published generator even if the new one's
            `test_bits_per_image` is worse (as `trainers.publish` does for an
            autoencoder's main metric). Defaults to `False`.

    Returns:
        pathlib.Path. The published folder.

    Raises:
        ValueError: the new generator is worse than the published one (see `force`).
    """
    from trainers import labels
    from trainers.evaluate_prior import evaluate_prior
    from trainers.model_card import read_json, training_time
    from trainers.publish import check_not_worse
    from trainers.runs import load_run_model
    from trainers.sample_quality import info_path
    from zoo import presets
    from zoo.atomic import write_text

    model_dir = pathlib.Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    dataset = config["training"]["dataset"]
    generator = load_run_model(model_dir)
    if num_samples is None:
        num_samples = card_sample_count(len(generator.class_names),
                                        len(labels.load_labels(dataset, "train")))
    eval_dir = model_dir / "eval"
    report = evaluate_prior(generator, eval_dir, dataset, num_samples, GUIDANCE_SCALES,
                            guidance_samples or num_samples, classifier_path=classifier_path,
                            **config.get("sampling", {}))
    report["class_names"] = list(generator.class_names)
    extra = {"samples.png": eval_dir / "samples.png",
             "completions.png": eval_dir / "completions.png"}
    if classifier_path is not None:
        extra[CLASSIFIER_FILE] = pathlib.Path(classifier_path)
        extra[info_path(CLASSIFIER_FILE).name] = info_path(classifier_path)
        report["classifier"]["file"] = CLASSIFIER_FILE
    run_info = read_json(model_dir / "run_info.json")
    metrics = eval_dir / "published_metrics.json"
    write_text(metrics, json.dumps(report, indent=2) + "\n")
    extra["metrics.json"] = metrics
    if run_info:
        extra["run_info.json"] = model_dir / "run_info.json"
    target = presets.publish_root(output_root) / name
    check_not_worse(target, report, "test_bits_per_image", force)
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
