"""trainers.evaluate / reconstruct / training in-process: per-family metrics, pictures, errors.

The command-line runs are in test_train_cli.py (a trained dVAE); here tiny
untrained models of the other families are saved as a run folder and
evaluated directly, which costs no subprocess.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image

from tests.helpers import random_images, tiny_model
from trainers import config as config_lib
from trainers import data, evaluate, evaluation, reconstruct, runs, training


def make_run(tmp_path, family: str, **kwargs):
    """A run folder holding a tiny model as best.keras and a config naming a .npy dataset."""
    model = tiny_model(family, **kwargs)
    dataset = tmp_path / "images.npy"
    np.save(dataset, random_images(20, model.image_shape))
    model_dir = tmp_path / family
    model_dir.mkdir()
    model.save(model_dir / "best.keras")
    config = config_lib.resolve(family, training_overrides={"dataset": str(dataset)})
    config_lib.save(config, model_dir / "config.json")
    return model_dir


@pytest.mark.parametrize(
    "family, extra, pictures",
    [
        ("ae", set(), {"reconstructions.png"}),
        ("vae", {"bits_per_dim"}, {"reconstructions.png", "samples.png"}),
        ("vqvae", {"perplexity", "codebook_usage"}, {"reconstructions.png"}),
    ],
)
def test_run_evaluation_metrics_and_pictures_per_family(tmp_path, family, extra, pictures):
    model_dir = make_run(tmp_path, family)
    report = evaluate.run_evaluation(model_dir, split="test", batch_size=2)
    written = json.loads((model_dir / "eval" / "metrics.json").read_text())
    assert written == report
    metric_names = {"mse", "psnr", "ssim", "bits_per_dim", "perplexity", "codebook_usage"}
    assert metric_names & set(report) == {"mse", "psnr", "ssim"} | extra
    assert report["num_images"] == 2  # the held-out 10% of 20 (batch 2: partial sums add up)
    assert report["dataset"].endswith("images.npy") and report["split"] == "test"
    assert 0.0 < report["mse"] < 1.0 and np.isfinite(report["psnr"])
    if "bits_per_dim" in extra:
        assert report["bits_per_dim"] > 0.0
    if "perplexity" in extra:
        assert 1.0 <= report["perplexity"] <= 16.0 and 0.0 < report["codebook_usage"] <= 1.0
    assert {p.name for p in (model_dir / "eval").glob("*.png")} == pictures


def test_evaluation_mse_matches_a_direct_computation(tmp_path):
    model_dir = make_run(tmp_path, "ae")
    images = random_images(7, seed=3)
    np.save(tmp_path / "other.npy", images)
    report = evaluate.run_evaluation(
        model_dir,
        dataset=str(tmp_path / "other.npy"),
        split="train",
        batch_size=4,
        max_images=5,
        output_dir=tmp_path / "out",
    )
    model = runs.load_run_model(model_dir)
    # The train split: 6 of the 7 images, stored as uint8.
    kept = data.load_split(tmp_path / "other.npy", "train", (28, 28, 1)).images / 255.0
    assert len(kept) == 6
    per_image = np.mean((kept[:5] - model.predict(kept[:5], verbose=0)) ** 2, axis=(1, 2, 3))
    assert report["num_images"] == 5
    np.testing.assert_allclose(report["mse"], per_image.mean(), rtol=1e-4)
    # The same PSNR as the training metric: mean over images of 10 log10(1 / mse).
    np.testing.assert_allclose(report["psnr"], np.mean(-10 * np.log10(per_image)), rtol=1e-4)
    assert (tmp_path / "out" / "metrics.json").exists()


def test_a_perfect_reconstruction_has_the_training_metric_psnr_cap():
    identity = tiny_model("ae")
    identity.compute_terms = lambda images, training=False: {"reconstructions": images}
    images = tf.data.Dataset.from_tensor_slices(random_images(3, seed=0)).batch(3)
    report = evaluation.evaluate_model(identity, images)
    # `tf.image.psnr` gives inf here; the training metric caps the MSE at 1e-10.
    assert report["psnr"] == pytest.approx(100.0)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="best.keras, last.keras"):
        evaluate.run_evaluation(tmp_path)


def test_reconstruct_folder_keeps_relative_paths_rgb(tmp_path):
    model = tiny_model("ae", image_shape=(16, 16, 3))
    inputs = tmp_path / "in"
    (inputs / "x" / "y").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(inputs / "x" / "a.jpg")
    Image.fromarray(np.full((16, 16), 9, np.uint8)).save(inputs / "x" / "y" / "b.png")
    written = reconstruct.reconstruct_folder(model, inputs, tmp_path / "out", batch_size=1)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "x/a.png",
        "x/y/b.png",
    ]
    with Image.open(written[0]) as picture:
        assert picture.size == (16, 16) and picture.mode == "RGB"


def test_command_modules_define_no_flags_on_import():
    # trainers.publish defines --model_dir and imports run_evaluation: the
    # evaluate and reconstruct modules must not define flags at import.
    for name in ("max_images", "input_dir", "output_dir"):
        assert name not in flags.FLAGS
    defined = flags.FlagValues()
    evaluate.define_flags(defined)
    assert {"model_dir", "dataset", "split", "batch_size", "max_images"} <= set(defined)


def test_failed_start_does_not_claim_model_dir(tmp_path):
    config = config_lib.resolve("ae", training_overrides={"dataset": str(tmp_path / "typo.npy")})
    with pytest.raises(FileNotFoundError, match="typo.npy"):
        training.train(config, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "config.json").exists()


def test_train_says_when_the_data_is_converted_to_the_model_input(tmp_path, monkeypatch,
                                                                    capsys):
    dataset = tmp_path / "rgb.npy"
    np.save(dataset, random_images(8, (32, 48, 3)))
    monkeypatch.setattr(training, "fit_run", lambda *args, **kwargs: None)  # no training
    config = config_lib.resolve("ae", training_overrides={"dataset": str(dataset)},
                                assignments=["filters=4", "num_res_blocks=1"])
    training.train(config, tmp_path / "gray", verbose=2)
    assert "--set 'image_shape=[32,48,3]'" in capsys.readouterr().out
    config = config_lib.resolve("ae", training_overrides={"dataset": str(dataset)},
                                assignments=["filters=4", "num_res_blocks=1",
                                             "image_shape=[32,48,3]"])
    training.train(config, tmp_path / "rgb", verbose=2)
    assert "Note:" not in capsys.readouterr().out


class _Echo:
    """A stand-in model whose reconstructions are its inputs, or a constant grey."""

    def __init__(self, grey: bool = False):
        self.grey = grey

    def predict(self, images, batch_size=None, verbose=0):
        return np.full_like(images, 0.5) if self.grey else images


def test_classifier_check_measures_what_reconstructions_lose():
    from trainers import data, labels
    from trainers.evaluation import classifier_check

    images = data.load_split("fashion_mnist", "test").images[:400] / 255.0
    classes = labels.load_labels("fashion_mnist", "test")[:400]
    perfect = classifier_check(_Echo(), images, classes)
    assert perfect["originals"] == perfect["reconstructions"] > 0.85
    assert perfect["drop_points"] == 0.0
    grey = classifier_check(_Echo(grey=True), images, classes)
    assert grey["originals"] == perfect["originals"]
    assert grey["reconstructions"] < 0.2  # one class at most: chance level
    assert grey["drop_points"] == pytest.approx(
        100 * (grey["originals"] - grey["reconstructions"]))


def test_run_evaluation_reports_the_classifier_check_on_fashion_mnist(tmp_path):
    model = tiny_model("ae")
    model.save(tmp_path / "model.keras")
    report = evaluate.run_evaluation(tmp_path / "model.keras", dataset="fashion_mnist",
                                     max_images=50, output_dir=tmp_path / "eval")
    # metrics.json is written once the report is complete: the check included.
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == report
    assert report["num_images"] == 50
    check = report["classifier_accuracy"]
    assert set(check) == {"originals", "reconstructions", "drop_points"}
    assert check["originals"] > 0.8  # the classifier on real test images
    assert check["reconstructions"] < check["originals"]  # an untrained model's output


def test_run_evaluation_has_no_classifier_check_elsewhere(tmp_path):
    report = evaluate.run_evaluation(make_run(tmp_path, "ae"), split="test", batch_size=2)
    assert "classifier_accuracy" not in report


def test_a_folder_or_array_test_split_is_reported_as_its_validation_images(tmp_path):
    # Without a test split of its own, a .npy's or folder's "test" is its held-out
    # validation part, which chose best.keras: the report called it "test" alone.
    model_dir = make_run(tmp_path, "ae")
    report = evaluate.run_evaluation(model_dir, batch_size=2, max_images=1)
    assert report["split"] == "test" and report["images_of_split"] == "validation"
    assert data.load_split(tmp_path / "images.npy", "test").stands_in == "validation"
    assert data.load_split(tmp_path / "images.npy", "validation").stands_in is None
    assert "images_of_split" not in evaluate.run_evaluation(model_dir, split="validation",
                                                            batch_size=2)


def test_reconstructions_of_files_sharing_a_name_are_all_kept(tmp_path):
    # a.jpg and a.png were both written to a.png: one reconstruction silently lost
    # while the command said it wrote both.
    model = tiny_model("ae", image_shape=(16, 16, 1))
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(inputs / "a.jpg")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(inputs / "a.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(inputs / "b.png")
    written = reconstruct.reconstruct_folder(model, inputs, tmp_path / "out", batch_size=2)
    assert sorted(p.name for p in written) == ["a.jpg.png", "a.png.png", "b.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in written)


def test_a_run_is_evaluated_on_the_images_it_held_out(tmp_path):
    # evaluate split the run's own data with the default 10 %: a run that held out 5 %
    # (a large dataset needs no more) was "tested" on 5 % of images it had trained on.
    model_dir = make_run(tmp_path, "ae")
    config = json.loads((model_dir / "config.json").read_text())
    config["training"]["validation_fraction"] = 0.05
    (model_dir / "config.json").write_text(json.dumps(config))
    dataset = tmp_path / "images.npy"
    report = evaluate.run_evaluation(model_dir, batch_size=4)
    assert report["num_images"] == 1  # 5 % of 20
    held_out = data.load_split(dataset, "validation", (28, 28, 1), 0.05).images / 255.0
    model = runs.load_run_model(model_dir)
    np.testing.assert_allclose(
        report["mse"], np.mean((held_out - model.predict(held_out, verbose=0)) ** 2), rtol=1e-4)
    # Another dataset is split with the default 10 %.
    np.save(tmp_path / "other.npy", random_images(20, seed=4))
    assert evaluate.run_evaluation(model_dir, dataset=str(tmp_path / "other.npy"),
                                   batch_size=4)["num_images"] == 2


def test_images_smaller_than_the_ssim_window_are_evaluated_without_ssim():
    # 8x8 images: `tf.image.ssim`'s 11x11 window does not fit (it raised); the
    # other figures are still the exact means over the 5 images (batches of 2).
    model = tiny_model("vqvae", image_shape=(8, 8, 1))
    images = random_images(5, shape=(8, 8, 1), seed=2)
    report = evaluation.evaluate_model(model, tf.data.Dataset.from_tensor_slices(images).batch(2))
    per_image = np.mean((images - model.predict(images, verbose=0)) ** 2, axis=(1, 2, 3))
    assert "ssim" not in report and report["num_images"] == 5
    np.testing.assert_allclose(report["mse"], per_image.mean(), rtol=1e-5)
    np.testing.assert_allclose(report["psnr"], np.mean(-10 * np.log10(per_image)), rtol=1e-5)
