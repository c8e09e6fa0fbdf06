r"""Publish a training run into the zoo: `python -m trainers.publish --name=dvae_fashion_mnist \
    --model_dir=runs/zoo/dvae_fashion_mnist`.

Evaluates the run's model on the whole test set, then writes
`saved_models/<name>/` with `zoo.presets.save_preset`: `model.keras`,
`config.json`, `metrics.json`, `run_info.json`, `reconstructions.png`,
`samples.png` (VAE, dVAE), the model card `README.md` (built from those
files, so every number on it comes from this command) and `manifest.json`
with the sha256 of every file.

Publishing over an existing model is refused when the new one is worse on
the family's main test metric (`mse`, or `bits_per_dim` for the VAE) unless
`--force`. To check a retrained model against its card without publishing,
use `trainers.reproduce` (`make zoo-train`).

`--rerender_cards` rewrites every card in `--output_root` from its existing
`metrics.json`, `config.json` and `run_info.json` (no training, no evaluation)
and updates the manifests.
"""

import json
import pathlib
import re

from absl import flags

from trainers import cli

FLAGS = flags.FLAGS
CHECK_IMAGES = 1000  # the subset the default test suite re-evaluates


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines this command's flags (only when it runs, as `trainers.evaluate`)."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("name", None, "Zoo name, e.g. dvae_fashion_mnist.", **fv)
    flags.DEFINE_string("model_dir", None, "The training run to publish.", **fv)
    flags.DEFINE_string("output_root", None, "Defaults to the repo's saved_models/.", **fv)
    flags.DEFINE_bool("force", False, "Publish even if the new model is worse.", **fv)
    flags.DEFINE_bool("rerender_cards", False,
                      "Only rewrite the cards (and manifests) from the existing files.", **fv)


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


def _timing(run_info: dict) -> str:
    seconds = run_info.get("train_seconds")
    if not seconds:
        return "not recorded"
    machines = sorted({_session_machine(s) for s in run_info.get("sessions", [])})
    return (
        f"{seconds / 60.0:.1f} minutes of wall time (`run_info.json` of the run) on "
        f"{', '.join(machines)}\n  (CPU only; the machine was shared with other work, so this "
        "is an upper bound)"
    )


def card(name: str, report: dict, config: dict, timing: str, params: int, family: str) -> str:
    """The model card (Markdown) from a model's metrics, config and training time."""
    from trainers.reproduce import tolerance_text

    metric_rows = "\n".join(
        f"| {key} | {value:.6g} |" if isinstance(value, float) else f"| {key} | {value} |"
        for key, value in report.items()
        if key not in ("model_file", "dataset", "split") and not isinstance(value, dict)
    )
    samples = (f"\n## Samples from the prior\n\n![samples from the prior](samples.png)\n\n"
               f"{SAMPLES_TEXT[family]}" if family in SAMPLES_TEXT else "")
    metric = main_metric(family)
    return f"""# {name}

{FAMILY_TEXT[family]} Trained on Fashion-MNIST (60,000 training images less a
10 % validation hold-out; the Debian package `dataset-fashion-mnist`).

- Parameters: {params:,}
- Latent size: {report['latent_bits_per_image']:.0f} bits per image
  ({_latent_text(config)})
{_objective_text(config)}{_origin_text(config)}- Training time: {timing}

## Reproduce

```
make zoo-train NAME={name}
```

trains from the recipe `configs/{name}.json` into `runs/zoo/{name}/` (this folder
is not touched), evaluates it on the test set and prints its metrics beside this card's:
`python -m trainers.reproduce --name={name} --model_dir=runs/zoo/{name}`.
It counts as reproduced when every metric is within its tolerance:
{tolerance_text()}.
The resolved training config is `config.json` beside this card.

Replacing this model is a separate, explicit step, `make zoo-publish NAME={name}`:
`python -m trainers.publish --name={name} --model_dir=runs/zoo/{name}`
refuses a model with a worse test `{metric}` unless `--force`.

## Test-set metrics (Fashion-MNIST test split, {report['num_images']} images)

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
images = data.load_split("fashion_mnist", "test").images[:8].astype("float32") / 255.0
reconstructions = model(images)  # float32 NHWC in [0, 1]
latents = model.encode(images)  # {_latent_comment(family, config)}
print(tuple(reconstructions.shape))  # (8, 28, 28, 1)
```

From the command line:

- `python -m trainers.evaluate --model={name}`
- `python -m trainers.export --model={name} --export_base=exports/{name}`
- `python -m trainers.train --init_from={name} --dataset=<your images> --model_dir=runs/tuned`
"""


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
        return _read_json(presets.find(origin) / "config.json").get("model")
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


def _read_json(path: pathlib.Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _check_not_worse(target: pathlib.Path, report: dict, family: str, force: bool) -> None:
    """Refuses to replace a published model by a worse one (unless forced)."""
    old = _read_json(target / "metrics.json")
    metric = main_metric(family)
    if metric not in old or force:
        return
    if report[metric] > old[metric]:
        raise ValueError(
            f"Not published: the new model's test {metric} {report[metric]:.6g} is worse than "
            f"the published {target.name}'s {old[metric]:.6g} ({target}). Pass --force to "
            "replace it anyway."
        )


def publish(name: str, model_dir, output_root=None, force: bool = False) -> pathlib.Path:
    """Evaluates a run and writes it as `saved_models/<name>/` with card and manifest.

    Args:
        name: str. The zoo name (the folder's name).
        model_dir: str or PathLike. A `trainers.train` run folder.
        output_root: str or PathLike. Defaults to the shipped `saved_models/`.
        force: bool. Replace a published model even if the new one is worse.
            Defaults to `False`.

    Returns:
        pathlib.Path. The published folder.

    Raises:
        ValueError: the new model is worse than the published one (see `force`).
    """
    from trainers.evaluate import run_evaluation
    from trainers.runs import load_model_from, model_file
    from zoo import presets
    from zoo.atomic import write_text

    model_dir = pathlib.Path(model_dir)
    if json.loads((model_dir / "config.json").read_text()).get("model") == "prior":
        from trainers.publish_prior import publish_prior

        target = publish_prior(name, model_dir, output_root)
        write_index(target.parent)
        return target
    target = pathlib.Path(output_root or presets.saved_models_dir()) / name
    eval_dir = model_dir / "eval"
    report = run_evaluation(model_dir, output_dir=eval_dir, verbose=True)
    check = run_evaluation(model_dir, max_images=CHECK_IMAGES, output_dir=eval_dir / "check")
    report["first_1000_test_images"] = {
        key: check[key] for key in check
        if key not in ("model_file", "dataset", "split", "classifier_accuracy")
    }
    model = load_model_from(model_file(model_dir))
    family = type(model).__name__
    _check_not_worse(target, report, family, force)
    config = json.loads((model_dir / "config.json").read_text())
    run_info = _read_json(model_dir / "run_info.json")
    report["model_file"] = presets.MODEL_FILE
    write_text(eval_dir / "published_metrics.json", json.dumps(report, indent=2) + "\n")
    extra = {"metrics.json": eval_dir / "published_metrics.json"}
    for picture in ("reconstructions.png", "samples.png"):
        if (eval_dir / picture).exists():
            extra[picture] = eval_dir / picture
    if run_info:
        extra["run_info.json"] = model_dir / "run_info.json"
    text = card(name, report, config, _timing(run_info), model.count_params(), family)
    presets.save_preset(model, target, config=config, card=text, extra_files=extra,
                        overwrite=True)
    write_index(target.parent)
    print(f"Published {target}/")
    return target


def rerender_card(folder) -> pathlib.Path:
    """Rewrites a published model's card from its files, and its manifest. No evaluation.

    The training time comes from the folder's `run_info.json`; a folder
    published before it was kept there keeps its card's training-time text.
    """
    from trainers.runs import load_model_from
    from zoo import presets
    from zoo.atomic import write_text

    folder = pathlib.Path(folder)
    if "test_bits_per_image" in _read_json(folder / "metrics.json"):  # a generator
        from trainers.publish_prior import rerender_prior_card

        return rerender_prior_card(folder)
    model = load_model_from(folder)  # verifies the manifest first
    report = _read_json(folder / "metrics.json")
    config = _read_json(folder / "config.json")
    run_info = _read_json(folder / "run_info.json")
    timing = _timing(run_info)
    if not run_info:
        found = re.search(r"^- Training time: (.*?)\n\n", (folder / "README.md").read_text(),
                          re.M | re.S)
        timing = found.group(1) if found else timing
    text = card(folder.name, report, config, timing, model.count_params(), type(model).__name__)
    write_text(folder / presets.CARD_FILE, text)
    presets.write_manifest(folder)
    return folder


INDEX_COLUMNS = ("mse", "psnr", "ssim", "bits_per_dim", "perplexity", "codebook_usage")
CLASSIFIER_COLUMN = "classifier drop (points)"



def write_index(root) -> pathlib.Path:
    """Writes `<root>/README.md`: one table row per published model, from its metrics.json."""
    from zoo.atomic import write_text

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
        check = metrics.get("classifier_accuracy")
        cells.append(f"{check['drop_points']:.2f}" if check else "–")
        rows.append(
            f"| [{folder.name}]({folder.name}/README.md) | "
            f"{metrics['latent_bits_per_image']:.0f} | " + " | ".join(cells) + " |"
        )
    header = ("| model | latent bits / image | " + " | ".join(INDEX_COLUMNS)
              + f" | {CLASSIFIER_COLUMN} |")
    text = f"""# Pretrained models

Generated by `python -m trainers.publish` from each model's `metrics.json` (Fashion-MNIST
test set, 10,000 images; MSE on the [0, 1] scale). Load one with `zoo.load(name)`; each card
gives the command that reproduces it (`make zoo-train NAME=<name>`, which writes to
`runs/zoo/<name>/` and compares with the card) and the separate step that publishes a
retrained model (`make zoo-publish NAME=<name>`). The last column is how many points of
accuracy the repository's evaluation classifier loses on the test reconstructions against
the originals (`trainers.evaluation.classifier_check`).

{header}
|{"---|" * (len(INDEX_COLUMNS) + 3)}
""" + "\n".join(rows) + "\n"
    if generator_rows:
        text += GENERATOR_HEADER + "\n".join(generator_rows) + "\n"
    return write_text(root / "README.md", text)


GENERATOR_HEADER = """
## Generators

Class-conditional Transformer priors packaged with their autoencoder (`zoo.ImageGenerator`),
measured by `python -m trainers.evaluate_prior` (class accuracy of the evaluation classifier on
the samples; Fréchet distance to the test images in its features, beside that of the
autoencoder's reconstructions, at the same sample count), sampling at the generator's own
guidance scale (`generator.guidance_scale`, what `generate` uses when given none).

| generator | test bits / image (raw) | guidance | class accuracy | Fréchet distance | \
reconstructions' |
|---|---|---|---|---|---|
"""


def _generator_row(name: str, metrics: dict) -> str:
    samples = metrics["samples"]
    return (f"| [{name}]({name}/README.md) | {metrics['test_bits_per_image']:.1f} "
            f"({metrics['raw_bits_per_image']:.0f}) | {metrics['sampling']['guidance_scale']:g} | "
            f"{100 * samples['class_accuracy']:.1f} % | "
            f"{samples['frechet_distance']:.3g} | "
            f"{metrics['reconstructions']['frechet_distance']:.3g} |")


def main(argv, flag_values: flags.FlagValues = FLAGS):
    del argv
    fv = flag_values
    from zoo import presets

    if fv.rerender_cards:
        root = pathlib.Path(fv.output_root or presets.saved_models_dir())
        with cli.user_errors("Re-rendering failed"):
            folders = [p for p in sorted(root.iterdir()) if (p / presets.MANIFEST).is_file()]
            for folder in folders:
                print(f"Re-rendered {rerender_card(folder) / presets.CARD_FILE}")
            write_index(root)
        return
    cli.require(fv, "name", "model_dir")
    with cli.user_errors("Publishing failed"):
        publish(fv.name, fv.model_dir, fv.output_root, fv.force)


if __name__ == "__main__":
    cli.run(main, define_flags)
