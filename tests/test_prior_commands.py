"""The prior commands end to end, in subprocesses: train_prior (with resume), generate,
evaluate_prior, on a tiny dVAE, a tiny prior and 60 labelled images.

One run (a module fixture) is killed at the start of its second epoch and
resumed by the same command; generate and evaluate_prior then read it.
"""

import csv
import json
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO_ROOT, copy_model, random_images, tiny_model
from tests.test_train_cli import _env, ok
from trainers import data
from trainers.labels import FASHION_MNIST_CLASSES, load_labels

# The first epoch compiles the training step and the sampling loop: minutes on a loaded
# 2-core machine, so more room than test_train_cli's 240 s.
TIMEOUT = 900


def run_command(args: list[str]) -> subprocess.CompletedProcess:
    """Runs `python <args>` at the repository root; returns the finished process."""
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=_env(), capture_output=True,
                          text=True, timeout=TIMEOUT)


TINY_PRIOR = ["--set=embed_dim=16", "--set=num_layers=1", "--set=num_heads=2", "--set=mlp_dim=32"]

# Runs train_prior, but hangs at the start of the second epoch (the first epoch's files
# written) until killed.
HANG = """
import os, pathlib, sys, time
from absl import app
from trainers import generation, train_prior

def on_epoch_begin(self, epoch, logs=None):
    if epoch >= 1:
        pathlib.Path(os.environ["ZOO_TEST_MARK"]).write_text(str(epoch))
        time.sleep(600)

generation.SampleGrid.on_epoch_begin = on_epoch_begin
train_prior.define_flags()
sys.argv = ["trainers.train_prior", *sys.argv[1:]]
app.run(train_prior.main)
"""


def _history(model_dir) -> list[dict]:
    with open(model_dir / "history.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny untrained dVAE (.keras) and 60 labelled images (.npz with class names)."""
    folder = tmp_path_factory.mktemp("prior_inputs")
    tiny_model("dvae").save(folder / "dvae.keras")
    images = np.round(random_images(60) * 255).astype(np.uint8)
    np.savez(folder / "data.npz", images=images, labels=np.arange(60) % 10,
             class_names=list(FASHION_MNIST_CLASSES))
    return folder


@pytest.fixture(scope="module")
def prior_run(inputs, tmp_path_factory):
    """A two-epoch train_prior run, killed during epoch 2 and resumed: (model_dir, args, out)."""
    model_dir = tmp_path_factory.mktemp("prior_runs") / "run"
    mark = model_dir.parent / "mark"
    args = ["-m", "trainers.train_prior", f"--autoencoder={inputs / 'dvae.keras'}",
            f"--model_dir={model_dir}", f"--dataset={inputs / 'data.npz'}", "--epochs=2",
            "--steps_per_epoch=2", "--batch_size=8", "--set=sampling.guidance_scale=2",
            *TINY_PRIOR]
    with open(model_dir.parent / "log.txt", "w") as log:
        child = subprocess.Popen([sys.executable, "-c", HANG, *args[2:]], cwd=REPO_ROOT,
                                 env=_env(ZOO_TEST_MARK=str(mark)), stdout=log,
                                 stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + TIMEOUT
            while not mark.exists() and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            assert mark.exists(), (model_dir.parent / "log.txt").read_text()[-3000:]
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
    assert [row["epoch"] for row in _history(model_dir)] == ["0"]
    assert (model_dir / "codes.npz").is_file()
    return model_dir, args, ok(run_command(args))


def test_train_prior_writes_the_run_layout_and_resumes(prior_run, inputs):
    model_dir, _, result = prior_run
    assert "Reusing the codes" in result.stdout  # encoded once, by the killed session
    rows = _history(model_dir)
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert {"loss", "accuracy", "bits_per_image", "val_bits_per_image"} <= set(rows[0])
    config = json.loads((model_dir / "config.json").read_text())
    assert config["autoencoder"] == str(inputs / "dvae.keras")
    assert config["model_config"]["num_embeddings"] == 16
    assert config["model_config"]["grid_shape"] == [7, 7]
    assert config["model_config"]["num_classes"] == 10
    assert config["model_config"]["num_layers"] == 1
    with np.load(model_dir / "codes.npz") as codes:
        assert codes["train_codes"].shape == (54, 7, 7) and codes["train_codes"].dtype == np.int32
        np.testing.assert_array_equal(codes["validation_labels"],
                                      load_labels(inputs / "data.npz", "validation"))
    for name in ("best.keras", "last.keras", "run_info.json", "backup/training_metadata.json"):
        assert (model_dir / name).is_file(), name
    assert list((model_dir / "logs").rglob("events.out.tfevents.*"))
    for epoch in (1, 2):  # one row per class
        with Image.open(model_dir / "images" / f"epoch_{epoch:03d}.png") as picture:
            assert picture.height == 2 * (10 * 30 + 2)
    info = json.loads((model_dir / "run_info.json").read_text())
    # The killed session keeps the time of the epoch it finished.
    assert [s["epochs_run"] for s in info["sessions"]] == [1, 1]
    assert info["train_seconds"] == pytest.approx(sum(s["seconds"] for s in info["sessions"]),
                                                  abs=0.1)


def test_train_prior_run_holds_an_image_generator(prior_run):
    import keras

    import zoo

    model_dir, _, _ = prior_run
    generator = keras.saving.load_model(model_dir / "best.keras", safe_mode=True)
    assert isinstance(generator, zoo.ImageGenerator)
    assert isinstance(generator.prior, zoo.TransformerPrior) and generator.prior.num_layers == 1
    assert generator.class_names[9] == "Ankle boot"
    assert generator.guidance_scale == 2.0  # the config's sampling.guidance_scale
    images = np.asarray(generator.generate(["ankle boot", 0], seed=3))
    assert images.shape == (2, 28, 28, 1) and 0.0 <= images.min() <= images.max() <= 1.0


def test_train_prior_refuses_another_config_in_the_same_folder(prior_run):
    model_dir, args, _ = prior_run
    refused = run_command([*args, "--set=num_layers=2"])
    assert refused.returncode != 0
    assert "different config" in refused.stderr and "model_config.num_layers" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_generate_command_writes_a_grid_and_the_images(prior_run, tmp_path):
    model_dir, _, _ = prior_run
    out = tmp_path / "generated"
    result = ok(run_command(["-m", "trainers.generate", f"--model={model_dir}",
                             "--prompt=ankle boot", "--prompt=T-shirt/top", "--count=3",
                             f"--output_dir={out}", "--top_k=4", "--guidance_scale=2"]))
    assert str(out / "grid.png") in result.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["ankle_boot_000.png", "ankle_boot_001.png", "ankle_boot_002.png",
                     "grid.png", "t-shirt_top_000.png", "t-shirt_top_001.png",
                     "t-shirt_top_002.png"]
    with Image.open(out / "grid.png") as grid:
        assert grid.size == (2 * (3 * 30 + 2), 2 * (2 * 30 + 2))  # 2 prompts x 3, scaled 2x
    with Image.open(out / "ankle_boot_000.png") as image:
        assert image.size == (28, 28)

    refused = run_command(["-m", "trainers.generate", f"--model={model_dir}", "--prompt=hat",
                           f"--output_dir={tmp_path / 'no'}"])
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "Unknown class name 'hat'" in refused.stderr and "Ankle boot" in refused.stderr


def test_repeated_prompts_keep_their_own_files(prior_run, tmp_path):
    from trainers.generate import generate_files

    model_dir, _, _ = prior_run
    generator = keras.saving.load_model(model_dir / "best.keras", safe_mode=True)
    written = generate_files(generator, ["bag", "Bag", "8"], 2, tmp_path, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    assert sorted(p.name for p in written) == [  # class 8 is "Bag": files named after it
        "bag_000.png", "bag_001.png", "bag_row2_000.png", "bag_row2_001.png",
        "bag_row3_000.png", "bag_row3_001.png", "grid.png"]


def test_many_images_are_generated_in_batches_with_a_progress_bar(prior_run, tmp_path,
                                                                  monkeypatch, capsys):
    from trainers import generate

    model_dir, _, _ = prior_run
    generator = keras.saving.load_model(model_dir / "best.keras", safe_mode=True)
    calls = []
    real_generate = generator.generate

    def counted(labels, **sampling):
        calls.append(len(labels))
        return real_generate(labels, **sampling)

    monkeypatch.setattr(generator, "generate", counted)
    written = generate.generate_files(generator, ["bag"], 3, tmp_path / "one", seed=2)
    assert calls == [3] and "sample" not in capsys.readouterr().out  # one call, no bar
    monkeypatch.setattr(generate, "BATCH_SIZE", 2)
    calls.clear()
    batched = generate.generate_files(generator, ["bag"], 3, tmp_path / "two", seed=2)
    assert calls == [2, 1]
    assert "3/3" in capsys.readouterr().out  # the progress bar's last update
    assert [p.name for p in batched] == [p.name for p in written]
    # The first batch draws with the seed itself: its images are the one call's.
    for path in (written[1], written[2]):
        np.testing.assert_array_equal(np.asarray(Image.open(path)),
                                      np.asarray(Image.open(tmp_path / "two" / path.name)))


def test_generate_command_decodes_with_another_autoencoder_for_the_same_codes(
        prior_run, inputs, tmp_path):
    model_dir, _, _ = prior_run
    base = keras.saving.load_model(inputs / "dvae.keras", compile=False)
    for part in ("decoder", "encoder"):  # a fine-tuned decoder; an encoder giving other codes
        model = copy_model(base)
        weight = getattr(model, part).weights[0]
        weight.assign(weight.numpy() * 1.5)
        model.save(tmp_path / f"{part}.keras")
    common = [f"--model={model_dir}", "--prompt=bag", "--count=2", "--seed=4"]
    for name, extra in (("own", []), ("tuned", [f"--autoencoder={tmp_path / 'decoder.keras'}"])):
        ok(run_command(["-m", "trainers.generate", *common, f"--output_dir={tmp_path / name}",
                        *extra]))
    own, swapped = (np.asarray(Image.open(tmp_path / n / "bag_000.png")) for n in ("own", "tuned"))
    assert np.abs(own.astype(int) - swapped.astype(int)).max() > 0
    refused = run_command(["-m", "trainers.generate", *common, f"--output_dir={tmp_path / 'no'}",
                           f"--autoencoder={tmp_path / 'encoder.keras'}"])
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "encoder.keras: `autoencoder` would give other codes" in refused.stderr


def test_evaluate_prior_command_with_tiny_counts(prior_run, inputs, tmp_path):
    model_dir, _, _ = prior_run
    out = tmp_path / "eval"
    result = ok(run_command(["-m", "trainers.evaluate_prior", f"--model={model_dir}",
                             f"--dataset={inputs / 'data.npz'}", "--num_samples=20",
                             "--guidance_scales=1,2", "--guidance_samples=10",
                             f"--output_dir={out}"]))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_samples"] == 20
    for key in ("samples", "real_floor", "reconstructions", "uniform_prior"):
        assert metrics[key]["frechet_distance"] >= 0.0, key
    assert 0.0 <= metrics["samples"]["class_accuracy"] <= 1.0
    assert [row["guidance_scale"] for row in metrics["guidance"]["rows"]] == [1.0, 2.0]
    assert metrics["sampling"]["guidance_scale"] == 2.0  # no flag: the generator's own
    assert metrics["raw_bits_per_image"] == pytest.approx(49 * 4)  # 7x7 codes of K = 16
    # The prior's own measure of the held-out images' codes, not just a positive number.
    from trainers import data
    from trainers.generation import encode_images, load_generator

    generator = load_generator(str(model_dir))
    test = data.load_split(inputs / "data.npz", "test", generator.autoencoder.image_shape).images
    codes = encode_images(generator.autoencoder, test)
    bits = generator.prior.evaluate(codes, load_labels(inputs / "data.npz", "test"), verbose=0,
                                    return_dict=True)["bits_per_image"]
    assert metrics["test_bits_per_image"] == pytest.approx(bits, rel=1e-4)
    distances = [metrics[k]["frechet_distance"] for k in ("samples", "reconstructions")]
    assert distances[0] != distances[1]  # two different image sets, not one figure
    assert metrics["completion_rows_kept"] == 3
    with Image.open(out / "samples.png") as picture:
        assert picture.height == 2 * (10 * 30 + 2)  # one row per class
    classes = len(set(load_labels(inputs / "data.npz", "test").tolist()))
    assert classes > 1  # the held-out images are not one class
    with Image.open(out / "completions.png") as picture:  # original, reconstruction, 6
        # one row per class present in the tiny test split (6 held-out images)
        assert picture.size == (2 * (8 * 30 + 2), 2 * (classes * 30 + 2))
    assert "Fréchet distance" in result.stdout and "guidance scale" in result.stdout


def test_publish_prior_ships_the_generator_at_its_measured_guidance_scale(prior_run, tmp_path):
    import zoo
    from trainers.publish_prior import publish_prior

    model_dir, _, _ = prior_run
    folder = publish_prior("prior_tiny", model_dir, output_root=tmp_path, num_samples=20,
                           guidance_samples=20)
    generator = zoo.load(folder)  # checks the manifest
    assert generator.guidance_scale == 2.0
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["sampling"]["guidance_scale"] == 2.0
    card = (folder / "README.md").read_text()
    assert "`guidance_scale=2.0`" in card
    assert "(`generator.guidance_scale`, used when `generate` and `trainers.generate` are " \
        "given none) is 2." in card.replace("\n", " ")


def test_a_continuous_autoencoder_is_refused_in_one_line_without_a_run_folder(tmp_path):
    tiny_model("ae").save(tmp_path / "ae.keras")
    model_dir = tmp_path / "prior"
    refused = run_command(["-m", "trainers.train_prior", f"--autoencoder={tmp_path / 'ae.keras'}",
                           f"--model_dir={model_dir}"])
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert "Training refused: --autoencoder=" in refused.stderr
    assert "A prior needs a discrete autoencoder (VQVAE or DVAE)" in refused.stderr
    assert not model_dir.exists()


def test_cached_codes_of_another_grid_are_encoded_again(tmp_path, capsys):
    from trainers.train_prior import CODES_FILE, load_codes

    autoencoder = tiny_model("dvae")
    grid = tuple(autoencoder.latent_grid)
    dataset = tmp_path / "labelled.npz"
    np.savez(dataset, images=random_images(20), labels=np.arange(20) % 2)
    training = {"dataset": str(dataset), "validation_fraction": 0.1, "encode_batch_size": 8}
    # codes.npz of an autoencoder with another latent grid (a run folder reused for another
    # autoencoder): its codes would index the wrong positions.
    stale = (grid[0] + 1, grid[1] + 1)
    np.savez(tmp_path / CODES_FILE, train_codes=np.zeros((18, *stale), np.int32),
             train_labels=np.zeros(18, np.int32),
             validation_codes=np.zeros((2, *stale), np.int32),
             validation_labels=np.zeros(2, np.int32))

    arrays = load_codes(tmp_path, autoencoder, training)
    assert "Reusing" not in capsys.readouterr().out
    assert arrays["train_codes"].shape == (18, *grid)
    assert arrays["validation_codes"].shape == (2, *grid)
    np.testing.assert_array_equal(arrays["train_labels"], load_labels(dataset, "train"))
    with np.load(tmp_path / CODES_FILE) as written:  # the file now holds the new codes
        np.testing.assert_array_equal(written["train_codes"], arrays["train_codes"])

    again = load_codes(tmp_path, autoencoder, training)  # the same autoencoder: read back
    assert "Reusing the codes" in capsys.readouterr().out
    assert set(again) == set(arrays)
    np.testing.assert_array_equal(again["validation_codes"], arrays["validation_codes"])


def test_cached_codes_of_a_retrained_autoencoder_are_encoded_again(tmp_path, capsys):
    # The same grid and path, other weights (an autoencoder retrained in place before
    # a prior run is resumed): its codes are not the cached ones.
    from trainers.train_prior import load_codes

    dataset = tmp_path / "labelled.npz"
    np.savez(dataset, images=random_images(20), labels=np.arange(20) % 2)
    training = {"dataset": str(dataset), "validation_fraction": 0.1, "encode_batch_size": 8}
    first, second = tiny_model("dvae"), tiny_model("dvae")
    for weight in second.weights:
        weight.assign(np.random.default_rng(5).normal(0.0, 0.3, weight.shape))
    load_codes(tmp_path, first, training)
    capsys.readouterr()
    codes = load_codes(tmp_path, second, training)
    assert "of another autoencoder or dataset" in capsys.readouterr().out
    np.testing.assert_array_equal(
        codes["train_codes"], second.encode(data.load_split(dataset, "train").images / 255.0))
    assert not np.array_equal(codes["train_codes"], first.encode(
        data.load_split(dataset, "train").images / 255.0))
    load_codes(tmp_path, second, {**training, "validation_fraction": 0.2})  # other data
    assert "of another autoencoder or dataset" in capsys.readouterr().out


def _generator_and_data(tmp_path, num_classes: int, image_shape=(28, 28, 1), images: int = 60):
    """A tiny untrained generator of `num_classes` and a labelled .npz of `images`."""
    import zoo

    autoencoder = tiny_model("dvae", image_shape=image_shape)
    prior = zoo.TransformerPrior(num_embeddings=autoencoder.num_embeddings,
                                 grid_shape=autoencoder.latent_grid, num_classes=num_classes,
                                 embed_dim=16, num_layers=1, num_heads=2, mlp_dim=32)
    names = [f"class {i}" for i in range(num_classes)]
    dataset = tmp_path / "labelled.npz"
    np.savez(dataset, images=np.round(random_images(images, image_shape) * 255).astype(np.uint8),
             labels=np.arange(images) % num_classes, class_names=names)
    return zoo.ImageGenerator(autoencoder, prior, names), dataset


def _classifier_file(tmp_path, image_shape, num_classes: int):
    """An untrained evaluation classifier saved as `trainers.train_classifier` saves one."""
    from trainers import sample_quality as sq
    from zoo.presets import sha256

    path = tmp_path / "classifier.weights.h5"
    sq.build_classifier(image_shape, num_classes).save_weights(path)
    sq.info_path(path).write_text(json.dumps({"sha256": sha256(path), "num_classes": num_classes,
                                              "image_shape": list(image_shape)}))
    return path


def test_evaluate_prior_refuses_bad_counts_for_other_data_before_generating(tmp_path,
                                                                            monkeypatch):
    # A generator of a user's 6 classes: the defaults that suit Fashion-MNIST's 10 classes
    # and 54,000 training images are refused at once, naming the option, not after the
    # samples were generated (or with numpy's "Cannot take a larger sample than population").
    from trainers import generation
    from trainers.evaluate_prior import evaluate_prior

    def no_generation(*args, **kwargs):
        raise AssertionError("generated before the counts were checked")

    monkeypatch.setattr(generation, "generate_in_batches", no_generation)
    generator, dataset = _generator_and_data(tmp_path, 6, (16, 24, 3))
    with pytest.raises(ValueError, match="train_classifier .*--image_shape=16,24,3"):
        evaluate_prior(generator, tmp_path / "eval", dataset, num_samples=12)  # shipped one
    classifier = _classifier_file(tmp_path, (16, 24, 3), 6)
    options = {"classifier_path": classifier}
    with pytest.raises(ValueError, match="`guidance_samples` must be a positive multiple of "
                                         "the 6 classes. Received: 10"):
        evaluate_prior(generator, tmp_path / "eval", dataset, 12, guidance_samples=10, **options)
    with pytest.raises(ValueError, match=r"`num_samples` \(60\) is more than the 54 training"):
        evaluate_prior(generator, tmp_path / "eval", dataset, 60, guidance_samples=12, **options)
    # The default table size, 2,000 rounded down to a multiple of 6.
    with pytest.raises(ValueError, match=r"`guidance_samples` \(1998\) is more than the 54"):
        evaluate_prior(generator, tmp_path / "eval", dataset, 12, **options)


def test_generate_takes_a_prompt_that_is_a_class_name_as_that_name(tmp_path):
    # Class folders named by number ("1", "2", "10" sort as ["1", "10", "2"]): the
    # prompt "1" is the class "1", not id 1 (class "10"); "10" is not an id out of range.
    from trainers.generate import generate_files

    generator, _ = _generator_and_data(tmp_path, 3)
    generator = type(generator)(generator.autoencoder, generator.prior, ["1", "10", "2"])
    asked = []
    generate = generator.generate
    generator.generate = lambda requests, **kwargs: asked.append(list(requests)) or generate(
        requests, **kwargs)
    written = generate_files(generator, ["1", "10", "2"], 1, tmp_path / "by_name")
    assert [p.name for p in written[1:]] == ["1_000.png", "10_000.png", "2_000.png"]
    written = generate_files(generator, ["0"], 1, tmp_path / "by_id")  # no class "0": an id
    assert [p.name for p in written[1:]] == ["1_000.png"]
    ids = [[generator.class_names.index(r) if isinstance(r, str) else r for r in requests]
           for requests in asked]
    assert ids == [[0, 1, 2], [0]]


def test_a_generator_of_other_data_is_published_with_its_classifier(tmp_path, capsys):
    # A user's 6 classes of 16x24 RGB images and 54 training images: the card's sample count
    # follows the data, the classifier given is copied in (so the figures can be measured
    # again from the folder), and the card names the data, not Fashion-MNIST.
    import zoo
    from trainers import publish
    from trainers.publish_prior import CLASSIFIER_FILE

    generator, dataset = _generator_and_data(tmp_path, 6, (16, 24, 3))
    run = tmp_path / "run"
    run.mkdir()
    generator.prior.compile(optimizer="adam")  # as train_prior saves it
    generator.prior.optimizer.build(generator.prior.trainable_variables)
    generator.save(run / "best.keras")
    (run / "config.json").write_text(json.dumps({
        "model": "prior", "autoencoder": "my_dvae",
        "model_config": generator.prior.get_config(),
        "training": {"dataset": str(dataset)}, "sampling": {"guidance_scale": 1.0}}))
    with pytest.raises(ValueError, match="train_classifier .*--classifier=<file>.weights.h5"):
        publish.publish("prior_mine", run, output_root=tmp_path / "zoo")
    classifier = _classifier_file(tmp_path, (16, 24, 3), 6)
    folder = publish.publish("prior_mine", run, output_root=tmp_path / "zoo",
                             classifier_path=classifier)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["num_samples"] == 54 and metrics["guidance"]["num_samples"] == 54
    assert metrics["classifier"]["file"] == CLASSIFIER_FILE
    assert (folder / CLASSIFIER_FILE).read_bytes() == classifier.read_bytes()
    from trainers import sample_quality as sq

    assert sq.load_classifier(folder / CLASSIFIER_FILE).output_shape[-1] == 6  # sha256 checked
    assert isinstance(zoo.load(folder), zoo.ImageGenerator)  # the manifest covers the copies
    card = (folder / "README.md").read_text()
    assert "Fashion-MNIST" not in card and "ankle boot" not in card
    assert f"from a\n`{dataset}` class name to pixels" in card
    # An .npz has no test split: the figures are on its held-out part, and say so.
    assert metrics["images_of_split"] == "validation"
    assert (f"## Likelihood (`{dataset}` its held-out validation images, having no test split: "
            "the codes of its 6 images)") in card
    assert "on the real\nheld-out validation images)" in card
    assert "distance to the 6 held-out validation images" in card and "test images" not in card
    assert 'generator.generate(["class 5", "class 4"], seed=0)  # (2, 16, 24, 3)' in card
    assert ("--num_samples=54 \\\n    --guidance_samples=54 "
            f"--classifier=<this folder>/{CLASSIFIER_FILE}\n") in card
    assert "--config=<this folder>/config.json" in card and "make zoo-" not in card
    with pytest.raises(ValueError, match="--classifier measures a generator's samples"):
        publish.publish("ae_mine", _autoencoder_run(tmp_path), output_root=tmp_path / "zoo",
                        classifier_path=classifier)


def _autoencoder_run(tmp_path):
    run = tmp_path / "ae_run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "ae"}))
    return run


def test_reading_a_folder_to_encode_shows_its_progress(tmp_path, capsys):
    # Decoding a large class folder before the encoding said nothing (about 40 s for
    # 30,000 64x64 files resized to 28x28, read twice, before the reads were fixed).
    from PIL import Image

    from trainers.train_prior import load_codes

    folder = tmp_path / "classes"
    for i in range(10):
        (folder / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((28, 28), i * 20, np.uint8)).save(folder / f"c{i % 2}" / f"{i}.png")
    training = {"dataset": str(folder), "validation_fraction": 0.1, "encode_batch_size": 8}
    load_codes(tmp_path, tiny_model("dvae"), training)
    out = capsys.readouterr().out
    assert f"Reading 9 images from {folder}" in out and f"Reading 1 images from {folder}" in out
