"""The model card of a published autoencoder: `README.md` of `saved_models/<name>/`.

Built only from the preset's files (`metrics.json`, `config.json`,
`run_info.json`), so `trainers.publish` writes the same card when it
publishes a run and when it re-renders a published folder.
"""

import json
import pathlib

FAMILY_TEXT = {
    "AE": "Deterministic convolutional autoencoder (continuous latent grid).",
    "VAE": "Variational autoencoder with a Gaussian latent and a calibrated Gaussian decoder.",
    "VQVAE": "VQ-VAE with an EMA codebook and dead-code restarts.",
    "DVAE": "DALL-E discrete VAE (Gumbel-softmax relaxation, argmax codes at inference).",
}
# The caption of a card's samples.png (drawn by the families whose loss has a prior).
SAMPLES_TEXT = {
    "VAE": """\
Decoded from latents drawn from the N(0, I) prior of the ELBO, each position of the latent
grid on its own: real images' latents are correlated across positions, which this prior
does not model, so these show what the latents mean locally rather than whole images.
""",
    "DVAE": """\
Decoded from codes drawn from the uniform prior of the KL term, each position of the code
grid on its own, so these show what the codes mean locally rather than whole images. Whole
images come from a Transformer prior trained on the codes, as in DALL-E (`python -m
trainers.train_prior`; the zoo's README, "Generating images").
""",
}
LATENT_COMMENT = {
    "AE": "float32 latents",
    "VAE": "posterior means",
    "VQVAE": "int32 codes",
    "DVAE": "int32 codes",
}


def main_metric(family: str) -> str:
    """The test metric that decides whether a model is better (lower is better)."""
    from trainers.training import MONITOR

    return MONITOR[family.lower()].removeprefix("val_")


def _session_machine(session: dict) -> str:
    """A training session's machine, with its precision where the run recorded it."""
    precision = session.get("precision")  # runs before 2026-12-06 did not record it
    return session["machine"] + (f", in {precision}" if precision else "")


def training_time(run_info: dict) -> str:
    """A card's training-time text from a run's `run_info.json` (its seconds and machines)."""
    seconds = run_info.get("train_seconds")
    if not seconds:
        return "not recorded"
    machines = sorted({_session_machine(s) for s in run_info.get("sessions", [])})
    return (
        f"{seconds / 60.0:.1f} minutes of wall time (`run_info.json` of the run) on "
        f"{', '.join(machines)}\n  (CPU only; other work on the machine can only have "
        "lengthened it, so this is an upper bound)"
    )


def _data_texts(report: dict, config: dict) -> dict:
    """The card's words for its data: Fashion-MNIST's, or the run's own dataset and shape."""
    dataset = str(report.get("dataset") or config["training"].get("dataset", "fashion_mnist"))
    shape = tuple(config["model_config"]["image_shape"])
    example = f"(8, {', '.join(map(str, shape))})"  # eight images, as the example prints
    if dataset == "fashion_mnist":
        return {"trained_on": "Fashion-MNIST (60,000 training images less a\n10 % validation "
                              "hold-out; the Debian package `dataset-fashion-mnist`)",
                "test": "Fashion-MNIST test split",
                "load": 'data.load_split("fashion_mnist", "test")',
                "shape": example}
    held_out = config["training"].get("validation_fraction", 0.1)
    split = report.get("split", "test")
    stands_in = report.get("images_of_split")  # "validation": a folder or array has no test split
    return {"trained_on": f"`{dataset}` ({'x'.join(map(str, shape))} images; "
                          f"{held_out:.0%} held out for validation)",
            "test": (f"`{dataset}`, {split} split: its held-out {stands_in} images, having no "
                     f"{split} split" if stands_in else f"`{dataset}`, {split} split"),
            "load": f'data.load_split("{dataset}", "{split}", model.image_shape)',
            "shape": example}


def card(name: str, report: dict, config: dict, timing: str, params: int, family: str) -> str:
    """The model card (Markdown) from a model's metrics, config and training time."""

    texts = _data_texts(report, config)

    metric_rows = "\n".join(
        f"| {key} | {value:.6g} |" if isinstance(value, float) else f"| {key} | {value} |"
        for key, value in report.items()
        if key not in ("model_file", "dataset", "split") and not isinstance(value, dict)
    )
    samples = (f"\n## Samples from the prior\n\n![samples from the prior](samples.png)\n\n"
               f"{SAMPLES_TEXT[family]}" if family in SAMPLES_TEXT else "")
    metric = main_metric(family)
    return f"""# {name}

{FAMILY_TEXT[family]} Trained on {texts['trained_on']}.

- Parameters: {params:,}
- Latent size: {report['latent_bits_per_image']:.0f} bits per image
  ({_latent_text(config)})
{_objective_text(config)}{_origin_text(config)}- Training time: {timing}

## Reproduce

{_reproduce_text(name, metric)}

## Test-set metrics ({texts['test']}, {report['num_images']} images)

From `python -m trainers.evaluate` (`metrics.json`); MSE on the [0, 1] scale, mean over pixels.

| metric | value |
| --- | --- |
{metric_rows}

{_classifier_text(report)}## Reconstructions (top: test images, bottom: reconstructions)

![reconstructions](reconstructions.png)
{samples}
## Use

```python
import zoo
from trainers import data

model = zoo.load("{name}")  # verifies sha256 checksums, compiled for fine-tuning
images = {texts['load']}.images[:8].astype("float32") / 255.0
reconstructions = model(images)  # float32 NHWC in [0, 1]
latents = model.encode(images)  # {_latent_comment(family, config)}
print(tuple(reconstructions.shape))  # {texts['shape']}
```

From the command line:

- `python -m trainers.evaluate --model={name}`
- `python -m trainers.export --model={name} --export_base=exports/{name}`
- `python -m trainers.train --init_from={name} --dataset=<your images> --model_dir=runs/tuned`
"""


def _reproduce_text(name: str, metric: str) -> str:
    """The card's commands that retrain the model: from its shipped recipe, or its config.

    A model published from a user's own run has no recipe under `configs/`; its
    folder's `config.json` (the run's resolved config, naming its dataset) is one.
    """
    from trainers.config import list_recipes
    from trainers.reproduce import tolerance_text

    evaluate = f"python -m trainers.reproduce --name={name} --model_dir=runs/zoo/{name}"
    publish = f"python -m trainers.publish --name={name} --model_dir=runs/zoo/{name}"
    tolerance = ("It counts as reproduced when every metric is within its tolerance:\n"
                 f"{tolerance_text()}.")
    if name in list_recipes():
        return f"""```
python -m trainers.train --config={name} --model_dir=runs/zoo/{name}
{evaluate}
```

(`make zoo-train NAME={name}` in the repository) trains from the shipped recipe `{name}`
(`configs/{name}.json` in the repository) into `runs/zoo/{name}/` (this folder is not
touched), evaluates it on the test set and prints its metrics beside this card's.
{tolerance}
The resolved training config is `config.json` beside this card.

Replacing this model is a separate, explicit step:
`{publish}`
(`make zoo-publish NAME={name}`; an installed package needs `--output_root`)
refuses a model with a worse test `{metric}` unless `--force`."""
    return f"""```
python -m trainers.train --config=<this folder>/config.json --model_dir=runs/zoo/{name}
{evaluate}
```

trains from `config.json` beside this card (the resolved config of the run that made this
model; its `dataset` is where that run read its images) into `runs/zoo/{name}/` (this
folder is not touched), evaluates it on the test set and prints its metrics beside this
card's. `<this folder>` is this card's folder (`python -c "import zoo.presets;
print(zoo.presets.find('{name}'))"` prints it).
{tolerance}

Replacing this model is a separate, explicit step:
`{publish} --output_root=<this folder's parent>`
refuses a model with a worse test `{metric}` unless `--force`."""


def _classifier_text(report: dict) -> str:
    """The card's classifier section, when `metrics.json` has the check."""
    check = report.get("classifier_accuracy")
    if not check:
        return ""
    return f"""## What a classifier still sees

The repository's evaluation classifier (`trainers/assets/`, a small CNN) on the
{report['num_images']:,} test images and on their reconstructions
(`trainers.evaluation.classifier_check`):

| images | classifier accuracy |
| --- | --- |
| originals | {100 * check['originals']:.2f} % |
| reconstructions | {100 * check['reconstructions']:.2f} % |

The reconstructions lose {check['drop_points']:.2f} points of accuracy (the zoo's target
for its shipped models: at most 1 point).

"""


def _objective_text(config: dict) -> str:
    """The card's line on a training term beyond the family's own loss (empty when none)."""
    training = config.get("training", {})
    weight = training.get("feature_matching_weight", 0)
    if not weight:
        return ""
    from trainers.sample_quality import FEATURE_NETWORK_WEIGHTS

    network = training.get("feature_network") or f"trainers/assets/{FEATURE_NETWORK_WEIGHTS.name}"
    return (f"- Training loss: the family's loss plus feature matching with weight {weight:g}\n"
            f"  (`zoo.perceptual.FeatureMatching`, feature network `{network}`), so that\n"
            "  the reconstructions keep more of what a classifier sees\n")


def _origin_text(config: dict) -> str:
    """The card's line on the model a fine-tuning run started from (empty for a new model)."""
    import zoo

    training = config.get("training", {})
    origin = training.get("init_from")
    if not origin:
        return ""
    frozen = training.get("freeze") or []
    text = f"- Fine-tuned from `{origin}`"
    initial = _initial_family(origin)
    if initial not in (None, config.get("model")):
        initial = zoo.FAMILIES[initial].__name__ if initial in zoo.FAMILIES else initial
        text = (f"- Started from `{origin}`, a {initial}, as the dVAE that gives its codes and\n"
                f"  reconstructions (`zoo.DVAE.from_vqvae`), then trained as a dVAE")
    if frozen:
        text += f" with its {' and '.join(frozen)} frozen (`training.freeze`)"
    text += "; the training\n  time below is the fine-tuning's"
    family = zoo.FAMILIES.get(config.get("model"))
    if family is not None and set(family.encoding_parts) <= set(frozen):
        text += (f". Every image has the code it has in `{origin}`,\n  so a prior trained "
                 "on that model's codes applies to this one")
    return text + "\n"


def _initial_family(origin: str) -> str | None:
    """The family of the model `origin` names (None when it cannot tell).

    A preset or run folder's `config.json` names it; a `.keras` file's own
    `config.json` names the class, read without building the model.
    """
    import zipfile

    import keras

    import zoo
    from zoo import presets

    try:
        return read_json(presets.find(origin) / "config.json").get("model")
    except ValueError:  # a .keras file
        pass
    try:
        with zipfile.ZipFile(origin) as archive:
            stored = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    cls = keras.saving.get_registered_object(stored.get("registered_name") or "")
    families = [name for name, family in zoo.FAMILIES.items()
                if isinstance(cls, type) and issubclass(cls, family)]
    return families[0] if families else None


def _latent_grid(config: dict) -> tuple[int, int]:
    """The height and width of a model's latent grid, from its resolved config."""
    mc = config["model_config"]
    h, w = mc["image_shape"][:2]
    return h // 2 ** mc["num_downsamples"], w // 2 ** mc["num_downsamples"]


def _latent_text(config: dict) -> str:
    mc = config["model_config"]
    h, w = _latent_grid(config)
    if "num_embeddings" in mc:
        return f"a {h}x{w} grid of codes from a codebook of {mc['num_embeddings']}"
    return f"a {h}x{w}x{mc['latent_channels']} grid of float32 values"


def _latent_comment(family: str, config: dict) -> str:
    """The card's comment on `model.encode` of 8 images: what it returns, and its shape."""
    shape = (8, *_latent_grid(config))
    if "num_embeddings" not in config["model_config"]:
        shape += (config["model_config"]["latent_channels"],)
    return f"{LATENT_COMMENT[family]} {shape}"


def read_json(path: pathlib.Path) -> dict:
    """The JSON object in `path`, or `{}` when there is no such file."""
    return json.loads(path.read_text()) if path.exists() else {}
