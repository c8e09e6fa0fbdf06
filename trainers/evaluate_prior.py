r"""Measure a generator's samples: `python -m trainers.evaluate_prior --model=runs/prior`.

With the evaluation classifier of `trainers.sample_quality`, on
`--num_samples` class-conditional samples (the same number per class):

- `class_accuracy`: how often the classifier finds the class asked for
  (beside `real_test_accuracy`, its accuracy on the real test images);
- `frechet_distance`: between the samples and the test images in the
  classifier's penultimate features, beside the same distance for
  `real_floor` (as many real training images), `reconstructions` (of those
  training images by the generator's autoencoder) and `uniform_prior`
  (codes drawn uniformly, decoded): every figure at the same sample count;
- `guidance`: class accuracy and distance for each `--guidance_scales`
  value, on `--guidance_samples` samples (with their own real floor);
- `test_bits_per_image`: the prior's negative log-likelihood of the test
  images' codes given their classes (the sum over the grid, in bits), beside
  the raw `h * w * log2 K`.

A folder or array has no test split: its held-out validation part stands in
(`trainers.data`), and `metrics.json` says so with `"images_of_split":
"validation"`, as `trainers.evaluate`'s does; the card then names those images.

Writes `<output_dir>/metrics.json`, `samples.png` (one row per class) and
`completions.png` (per class a test image, its reconstruction, then
completions that keep the top `--completion_rows` code rows and sample the
rest). `--output_dir` defaults to `<run>/eval`, or `runs/eval/<name>` for a zoo
model or preset. `--autoencoder` measures the generator decoded by another
autoencoder that gives the same codes (as `trainers.generate`).
"""

import json
import math
import pathlib
import time

from absl import flags

from trainers import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines this command's flags (only when it runs, as `trainers.evaluate`)."""
    flags.DEFINE_string("model", None, "The ImageGenerator: a zoo name, a preset folder, a "
                        "trainers.train_prior run folder or a .keras file.")
    flags.DEFINE_string("autoencoder", None, "Decode with this autoencoder instead of the "
                        "generator's own: one fine-tuned from it with its encoder (and a VQ-VAE's "
                        "codebook) frozen, e.g. dvae_perceptual_fashion_mnist for "
                        "prior_dvae_fashion_mnist.")
    flags.DEFINE_string("output_dir", None, "Where results go; defaults to <run>/eval, or "
                        "runs/eval/<name> for a zoo model or preset.")
    flags.DEFINE_string("dataset", None, "The labelled dataset of the test images; defaults to "
                        "the one the prior trained on (its run's config.json), else "
                        "fashion_mnist.")
    flags.DEFINE_integer("num_samples", 10_000, "Samples for the main figures (a multiple of "
                         "the class count).")
    flags.DEFINE_list("guidance_scales", ["1", "2", "3"], "Guidance scales of the table.")
    flags.DEFINE_integer("guidance_samples", None, "Samples per row of the guidance table (a "
                         "multiple of the class count); default 2000 rounded down to one.")
    flags.DEFINE_integer("completion_rows", None, "Code rows kept in completions (default h/2).")
    flags.DEFINE_integer("seed", 0, "Seed of sampling and of the real images drawn.")
    flags.DEFINE_float("temperature", 1.0, "Softmax temperature of the samples.")
    flags.DEFINE_integer("top_k", 0, "Top-k truncation of the samples; 0: none.")
    flags.DEFINE_float("guidance_scale", None, "Guidance scale of the main samples; defaults "
                       "to the generator's own.")
    flags.DEFINE_integer("batch_size", 500, "Generation and encoding batch size.")
    flags.DEFINE_string("classifier", None, "Classifier weights; defaults to the shipped ones.")


GUIDANCE_SAMPLES = 2_000  # per row of the guidance table, rounded down to the class count


def _class_labels(num_samples: int, num_classes: int, name: str = "num_samples"):
    import numpy as np

    if num_samples < num_classes or num_samples % num_classes:
        raise ValueError(
            f"`{name}` must be a positive multiple of the {num_classes} classes. "
            f"Received: {num_samples}")
    return np.repeat(np.arange(num_classes, dtype=np.int32), num_samples // num_classes)


def _check_real_images(count: int, available: int, name: str, dataset) -> None:
    """The real floor draws `count` distinct training images: refuses more than there are."""
    if count > available:
        raise ValueError(
            f"`{name}` ({count}) is more than the {available} training images of {dataset}, "
            f"which give the real floor at the same count: use at most {available}.")


def _quality(classifier, images, labels, reference) -> dict:
    from trainers import sample_quality as sq

    result = {"frechet_distance": sq.frechet_distance(
        sq.classifier_features(classifier, images), reference)}
    if labels is not None:
        result["class_accuracy"] = sq.classifier_accuracy(classifier, images, labels)
    return result


def _decode(autoencoder, codes, batch_size: int):
    import numpy as np

    return np.concatenate([np.asarray(autoencoder.decode(codes[i : i + batch_size]), np.float32)
                           for i in range(0, len(codes), batch_size)])


def completion_rows(generator, images, labels, keep_rows: int, per_image: int, seed: int = 0,
                    batch_size: int = 500, **sampling) -> list:
    """Rows of [image, reconstruction, `per_image` completions keeping `keep_rows` code rows]."""
    import numpy as np

    from trainers.data import to_unit_float
    from trainers.generation import encode_images

    codes = encode_images(generator.autoencoder, images, batch_size, verbose=False)
    h = codes.shape[1]
    if not 0 < keep_rows < h:
        raise ValueError(f"`keep_rows` must be in [1, {h - 1}] (the code grid has {h} rows). "
                         f"Received: {keep_rows}")
    prefix = np.repeat(codes[:, :keep_rows], per_image, axis=0)
    completed = np.asarray(generator.generate(
        np.repeat(labels, per_image), seed=seed, prefix=prefix, **sampling), np.float32)
    reconstructions = _decode(generator.autoencoder, codes, batch_size)
    originals = to_unit_float(images)
    return [np.concatenate([originals[i : i + 1], reconstructions[i : i + 1],
                            completed[i * per_image : (i + 1) * per_image]])
            for i in range(len(images))]


def evaluate_prior(generator, output_dir, dataset="fashion_mnist", num_samples: int = 10_000,
                   guidance_scales=(1.0, 2.0, 3.0), guidance_samples: int | None = None,
                   completion_rows_kept=None, seed: int = 0, batch_size: int = 500,
                   classifier_path=None, **sampling) -> dict:
    """Measures a generator's samples and writes metrics.json and pictures (see the module).

    Args:
        generator: a `zoo.ImageGenerator`.
        output_dir: folder for `metrics.json`, `samples.png`, `completions.png`.
        dataset: the labelled dataset (test images, training images for the floor).
        num_samples: int. Samples of the main figures (a multiple of the classes).
        guidance_scales: guidance scales of the table.
        guidance_samples: int. Samples per row of the table (a multiple of the
            classes); `None`: 2,000 rounded down to a multiple of the classes.
        completion_rows_kept: int. Code rows kept in completions (default h // 2).
        seed: int. Sampling seed, and which real images are drawn.
        batch_size: int. Generation and encoding batch size.
        classifier_path: classifier weights (default: the shipped ones).
        **sampling: `temperature`, `top_k`, `guidance_scale` of the main samples
            (`guidance_scale` `None` or absent: the generator's own).

    Returns:
        The metrics dict (also written to `metrics.json`).
    """
    import numpy as np

    from trainers import data, labels
    from trainers import images as image_io
    from trainers import sample_quality as sq
    from trainers.generation import encode_images, generate_in_batches
    from zoo import validation

    started = time.monotonic()
    scale = sampling.get("guidance_scale")
    sampling = {**sampling, "guidance_scale": float(
        generator.guidance_scale if scale is None else scale)}
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    autoencoder, prior = generator.autoencoder, generator.prior
    classifier = sq.load_classifier(classifier_path)
    num_classes = len(generator.class_names)
    shape = autoencoder.image_shape
    found = (classifier.output_shape[-1], tuple(classifier.input_shape[1:]))
    if found != (num_classes, tuple(shape)):
        raise ValueError(
            f"The classifier ({classifier_path or 'the shipped Fashion-MNIST one'}) takes "
            f"{'x'.join(map(str, found[1]))} images of {found[0]} classes; the generator makes "
            f"{'x'.join(map(str, shape))} images of {num_classes}: they must be the same "
            f"dataset's. Train one on the prior's labelled data with `python -m "
            f"trainers.train_classifier --dataset=<it> --image_shape={','.join(map(str, shape))} "
            f"--output=<file>.weights.h5` and pass `--classifier=<file>.weights.h5` "
            f"(`trainers.evaluate_prior`, `trainers.publish`).")
    # Checked before any sampling: completions are drawn last, after minutes of it.
    batch_size = validation.positive_int("batch_size", batch_size)
    h, w = autoencoder.latent_grid
    keep = h // 2 if completion_rows_kept is None else completion_rows_kept
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 < keep < h:
        raise ValueError(f"`completion_rows` must be in [1, {h - 1}] (the code grid has {h} "
                         f"rows). Received: {keep!r}")
    if guidance_samples is None:
        guidance_samples = max(GUIDANCE_SAMPLES // num_classes, 1) * num_classes
    class_ids = _class_labels(num_samples, num_classes)
    guidance_ids = _class_labels(guidance_samples, num_classes, "guidance_samples")
    test_split = data.load_split(dataset, "test", shape)  # a folder's: its held-out part
    test = test_split.images
    test_labels = labels.load_labels(dataset, "test")
    train = data.load_split(dataset, "train", shape).images
    _check_real_images(num_samples, len(train), "num_samples", dataset)
    if guidance_samples != num_samples:
        _check_real_images(guidance_samples, len(train), "guidance_samples", dataset)
    reference = sq.classifier_features(classifier, data.to_unit_float(test))

    print(f"Generating {num_samples} samples ({num_samples // num_classes} per class)...")
    samples = generate_in_batches(generator, class_ids, batch_size, verbose=True, seed=seed,
                                  **sampling)
    chosen = np.sort(np.random.default_rng(seed).choice(len(train), num_samples, replace=False))
    real = data.to_unit_float(train[chosen])
    uniform = np.random.default_rng(seed).integers(0, autoencoder.num_embeddings,
                                                   (num_samples, h, w), dtype=np.int32)
    report = {
        "samples": _quality(classifier, samples, class_ids, reference),
        "real_floor": _quality(classifier, real, None, reference),
        "reconstructions": _quality(
            classifier, _decode(autoencoder, encode_images(autoencoder, train[chosen],
                                                           batch_size, verbose=False),
                                batch_size), None, reference),
        "uniform_prior": _quality(classifier, _decode(autoencoder, uniform, batch_size), None,
                                  reference),
    }
    report["samples"]["ratio_to_reconstructions"] = (
        report["samples"]["frechet_distance"] / report["reconstructions"]["frechet_distance"])

    # At the main count, the table shares the main figures' floor and reconstructions (and the
    # main samples for the main scale), so its rows compare with them directly.
    same_count = guidance_samples == num_samples
    if same_count:
        table_floor = report["real_floor"]["frechet_distance"]
    else:
        table_real = np.sort(np.random.default_rng(seed + 1).choice(
            len(train), guidance_samples, replace=False))
        table_floor = _quality(classifier, data.to_unit_float(train[table_real]), None,
                               reference)["frechet_distance"]
    guidance = {"num_samples": guidance_samples, "real_floor": table_floor, "rows": []}
    for scale in guidance_scales:
        if same_count and float(scale) == float(sampling.get("guidance_scale", 1.0)):
            row = dict(report["samples"])
        else:
            print(f"Guidance scale {scale}: {guidance_samples} samples...")
            options = {**sampling, "guidance_scale": float(scale)}
            images = generate_in_batches(generator, guidance_ids, batch_size, seed=seed,
                                         **options)
            row = _quality(classifier, images, guidance_ids, reference)
            if same_count:
                row["ratio_to_reconstructions"] = (
                    row["frechet_distance"] / report["reconstructions"]["frechet_distance"])
        guidance["rows"].append({"guidance_scale": float(scale), **row})

    test_codes = encode_images(autoencoder, test, batch_size, verbose=False)
    prior_metrics = prior.evaluate(test_codes, test_labels, batch_size=batch_size, verbose=0,
                                   return_dict=True)
    per_class = np.arange(num_classes) * (num_samples // num_classes)
    image_io.save_png(image_io.image_grid(
        [samples[i : i + min(10, num_samples // num_classes)] for i in per_class]),
        output_dir / "samples.png", scale=2)
    # The first test image of each class (a class missing from a small test set is skipped).
    firsts = np.concatenate([np.flatnonzero(test_labels == c)[:1] for c in range(num_classes)])
    image_io.save_png(image_io.image_grid(completion_rows(
        generator, test[firsts], test_labels[firsts], keep, 6, seed, batch_size, **sampling)),
        output_dir / "completions.png", scale=2)
    report = {
        "dataset": str(dataset),
        "image_shape": list(shape),
        "num_test_images": len(test),
        **({"images_of_split": test_split.stands_in} if test_split.stands_in else {}),
        "num_samples": num_samples,
        "sampling": {"seed": seed, **{k: v for k, v in sampling.items()}},
        "classifier": {"file": sq.classifier_name(classifier_path),
                       "real_test_accuracy": sq.classifier_accuracy(
                           classifier, data.to_unit_float(test), test_labels)},
        **report,
        "guidance": guidance,
        "test_bits_per_image": float(prior_metrics["bits_per_image"]),
        "raw_bits_per_image": h * w * math.log2(autoencoder.num_embeddings),
        "test_code_accuracy": float(prior_metrics["accuracy"]),
        "completion_rows_kept": keep,
        "seconds": round(time.monotonic() - started, 1),
    }
    (output_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    print(f"\nWrote {output_dir}/metrics.json, samples.png and completions.png.")
    return report


def format_report(report: dict) -> str:
    """The main figures and the guidance table as plain text."""
    title = f"images ({report['num_samples']})"
    lines = [f"{title:<24} class accuracy  Fréchet distance"]
    for key in ("samples", "reconstructions", "uniform_prior", "real_floor"):
        accuracy = report[key].get("class_accuracy")
        shown = f"{accuracy:.4f}" if accuracy is not None else "-"
        lines.append(f"{key:<24} {shown:>14}  {report[key]['frechet_distance']:.4g}")
    guidance = report["guidance"]
    lines.append(f"\nguidance scale ({guidance['num_samples']} samples; real floor "
                 f"{guidance['real_floor']:.4g})")
    for row in guidance["rows"]:
        lines.append(f"{row['guidance_scale']:<24g} {row['class_accuracy']:>14.4f}  "
                     f"{row['frechet_distance']:.4g}")
    lines.append(f"\ntest bits per image {report['test_bits_per_image']:.1f} "
                 f"(raw {report['raw_bits_per_image']:.0f})")
    return "\n".join(lines)


def main(argv):
    del argv
    from trainers.evaluate import default_output_dir
    from trainers.generation import load_generator
    from trainers.runs import trained_on

    cli.require(FLAGS, "model")
    with cli.user_errors("Evaluation refused"):
        output_dir = FLAGS.output_dir or default_output_dir(FLAGS.model)
        generator = load_generator(FLAGS.model, FLAGS.autoencoder)
        dataset = FLAGS.dataset or trained_on(FLAGS.model)
        evaluate_prior(
            generator, output_dir, dataset, FLAGS.num_samples,
            [float(s) for s in FLAGS.guidance_scales], FLAGS.guidance_samples,
            FLAGS.completion_rows, FLAGS.seed, FLAGS.batch_size, FLAGS.classifier,
            temperature=FLAGS.temperature, top_k=FLAGS.top_k or None,
            guidance_scale=FLAGS.guidance_scale)


if __name__ == "__main__":
    cli.run(main, define_flags)
