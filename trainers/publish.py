r"""Publish a training run into the zoo: `python -m trainers.publish --name=dvae_fashion_mnist \
    --model_dir=runs/zoo/dvae_fashion_mnist`.

Evaluates the run's model on the whole test set, then writes
`saved_models/<name>/` with `zoo.presets.save_preset`: `model.keras`,
`config.json`, `metrics.json`, `run_info.json`, `reconstructions.png`,
`samples.png` (VAE, dVAE), the model card `README.md` (built from those
files, so every number on it comes from this command) and `manifest.json`
with the sha256 of every file.

Publishing over an existing model is refused when the new one is worse on
the family's main test metric (`mse`, `bits_per_dim` for the VAE,
`test_bits_per_image` for a generator) unless `--force`. To check a retrained
model against its card without publishing, use `trainers.reproduce` (`make
zoo-train`).

`--rerender_cards` rewrites every card in `--output_root` from its existing
`metrics.json`, `config.json` and `run_info.json` (no training, no evaluation)
and updates the manifests.
"""

import json
import pathlib
import re

from absl import flags

from trainers import cli
from trainers.model_card import card, main_metric, read_json, training_time

FLAGS = flags.FLAGS
CHECK_IMAGES = 1000  # the subset the default test suite re-evaluates


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines this command's flags (only when it runs, as `trainers.evaluate`)."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("name", None, "Zoo name, e.g. dvae_fashion_mnist.", **fv)
    flags.DEFINE_string("model_dir", None, "The training run to publish.", **fv)
    flags.DEFINE_string("output_root", None, "Defaults to the checkout's saved_models/ "
                        "(required for an installed package).", **fv)
    flags.DEFINE_bool("force", False, "Publish even if the new model is worse.", **fv)
    flags.DEFINE_string("classifier", None, "Generators (train_prior runs) only: the classifier "
                        "weights that measure its samples, from `trainers.train_classifier "
                        "--output`; needed for data other than Fashion-MNIST, and copied into "
                        "the published folder.", **fv)
    flags.DEFINE_bool("rerender_cards", False,
                      "Only rewrite the cards (and manifests) from the existing files.", **fv)


def check_not_worse(target: pathlib.Path, report: dict, metric: str, force: bool) -> None:
    """Refuses to replace a published model by one worse on `metric` (unless forced)."""
    old = read_json(target / "metrics.json")
    if metric not in old or force:
        return
    if report[metric] > old[metric]:
        raise ValueError(
            f"Not published: the new model's {metric.removeprefix('test_')} on the test images "
            f"{report[metric]:.6g} is worse than "
            f"the published {target.name}'s {old[metric]:.6g} ({target}). Pass --force to "
            "replace it anyway."
        )


def publish(name: str, model_dir, output_root=None, force: bool = False,
            classifier_path=None) -> pathlib.Path:
    """Evaluates a run and writes it as `saved_models/<name>/` with card and manifest.

    Args:
        name: str. The zoo name (the folder's name).
        model_dir: str or PathLike. A `trainers.train` run folder.
        output_root: str or PathLike. Defaults to the checkout's `saved_models/`
            (required when the zoo is an installed package).
        force: bool. Replace a published model even if the new one is worse.
            Defaults to `False`.
        classifier_path: str or PathLike. For a generator only: the classifier
            its samples are measured with (see `publish_prior`). Defaults to
            the shipped Fashion-MNIST one.

    Returns:
        pathlib.Path. The published folder.

    Raises:
        ValueError: the new model is worse than the published one (see `force`),
            or a classifier is given for an autoencoder.
    """
    from trainers.evaluate import run_evaluation
    from trainers.runs import load_model_from, model_file
    from zoo import presets
    from zoo.atomic import write_text

    model_dir = pathlib.Path(model_dir)
    if json.loads((model_dir / "config.json").read_text()).get("model") == "prior":
        from trainers.publish_prior import publish_prior

        target = publish_prior(name, model_dir, output_root, classifier_path=classifier_path,
                               force=force)
        write_index(target.parent)
        return target
    if classifier_path is not None:
        raise ValueError("--classifier measures a generator's samples; "
                         f"{model_dir} is an autoencoder run (its card's classifier check "
                         "uses the shipped Fashion-MNIST classifier, on Fashion-MNIST only).")
    target = presets.publish_root(output_root) / name
    eval_dir = model_dir / "eval"
    report = run_evaluation(model_dir, output_dir=eval_dir, verbose=True)
    check = run_evaluation(model_dir, max_images=CHECK_IMAGES, output_dir=eval_dir / "check")
    report["first_1000_test_images"] = {
        key: check[key] for key in check
        if key not in ("model_file", "dataset", "split", "classifier_accuracy")
    }
    model = load_model_from(model_file(model_dir))
    family = type(model).__name__
    check_not_worse(target, report, main_metric(family), force)
    config = json.loads((model_dir / "config.json").read_text())
    run_info = read_json(model_dir / "run_info.json")
    report["model_file"] = presets.MODEL_FILE
    write_text(eval_dir / "published_metrics.json", json.dumps(report, indent=2) + "\n")
    extra = {"metrics.json": eval_dir / "published_metrics.json"}
    for picture in ("reconstructions.png", "samples.png"):
        if (eval_dir / picture).exists():
            extra[picture] = eval_dir / picture
    if run_info:
        extra["run_info.json"] = model_dir / "run_info.json"
    text = card(name, report, config, training_time(run_info), model.count_params(), family)
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
    if "test_bits_per_image" in read_json(folder / "metrics.json"):  # a generator
        from trainers.publish_prior import rerender_prior_card

        return rerender_prior_card(folder)
    model = load_model_from(folder)  # verifies the manifest first
    report = read_json(folder / "metrics.json")
    config = read_json(folder / "config.json")
    run_info = read_json(folder / "run_info.json")
    timing = training_time(run_info)
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
    """Writes `<root>/README.md`: one table row per published model, from its metrics.json.

    The text names Fashion-MNIST's test set only when every model was measured on it,
    and the `make` targets only for the checkout's own `saved_models/`: a user's
    `--output_root` holds models of their data, published without the Makefile.
    """
    from zoo import presets
    from zoo.atomic import write_text

    root = pathlib.Path(root)
    rows, generator_rows, fashion_mnist = [], [], True
    for folder in sorted(p for p in root.iterdir() if (p / "metrics.json").is_file()):
        metrics = json.loads((folder / "metrics.json").read_text())
        fashion_mnist &= metrics.get("dataset", "fashion_mnist") == "fashion_mnist"
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
    data = ("(Fashion-MNIST\ntest set, 10,000 images; MSE on the [0, 1] scale)" if fashion_mnist
            else "(each on the\nimages its card names; MSE on the [0, 1] scale)")
    shipped = root.resolve() == presets.saved_models_dir().resolve()
    commands = ("the command that reproduces it (`make zoo-train NAME=<name>`, which writes to\n"
                "`runs/zoo/<name>/` and compares with the card) and the separate step that "
                "publishes a\nretrained model (`make zoo-publish NAME=<name>`)" if shipped else
                "the commands that reproduce it and the separate step that publishes a\n"
                "retrained model")
    text = f"""# Pretrained models

Generated by `python -m trainers.publish` from each model's `metrics.json` {data}. \
Load one with `zoo.load(name)`; each card
gives {commands}. The last column is how many points of
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
        with cli.user_errors("Re-rendering failed"):
            root = presets.publish_root(fv.output_root)
            folders = [p for p in sorted(root.iterdir()) if (p / presets.MANIFEST).is_file()]
            for folder in folders:
                print(f"Re-rendered {rerender_card(folder) / presets.CARD_FILE}")
            write_index(root)
        return
    cli.require(fv, "name", "model_dir")
    with cli.user_errors("Publishing failed"):
        publish(fv.name, fv.model_dir, fv.output_root, fv.force, fv.classifier)


if __name__ == "__main__":
    cli.run(main, define_flags)
