"""Publishing into a zoo folder, refusing worse models, re-rendering cards, reproduction checks.

Tiny runs are published into a temporary zoo root (added with
`ZOO_SAVED_MODELS`), never into the shipped `saved_models/`.
"""

import json

import numpy as np
import pytest

import zoo
from tests.helpers import random_images, tiny_model
from trainers import config as config_lib
from trainers import initial_model, model_card, publish, reproduce
from trainers.evaluate import latent_bits
from zoo import preset_registry, presets


def make_run(root, name="run", family="ae", **training):
    """A finished-looking run folder: best.keras, config.json (a .npy dataset), run_info.json."""
    dataset = root / "images.npy"
    if not dataset.exists():
        np.save(dataset, random_images(20))
    run = root / name
    run.mkdir()
    tiny_model(family).save(run / "best.keras")
    config = config_lib.resolve(family, training_overrides={"dataset": str(dataset), **training})
    config_lib.save(initial_model.resolve(config), run / "config.json")  # as train() saves it
    (run / "run_info.json").write_text(json.dumps(
        {"train_seconds": 90.0, "sessions": [{"seconds": 90.0, "epochs_run": 1,
                                              "machine": "x86_64, 2 CPU cores, test"}]}))
    return run


@pytest.fixture
def zoo_root(tmp_path, monkeypatch):
    root = tmp_path / "zoo"
    root.mkdir()
    monkeypatch.setenv("ZOO_SAVED_MODELS", str(root))
    return root


def test_publish_writes_a_verified_preset_with_card_and_index(tmp_path, zoo_root):
    run = make_run(tmp_path)
    folder = publish.publish("tiny_ae", run, output_root=zoo_root)
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "config.json", "manifest.json", "metrics.json", "model.keras",
        "reconstructions.png", "run_info.json"]
    assert isinstance(zoo.load("tiny_ae"), zoo.AE)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["model_file"] == "model.keras" and metrics["num_images"] == 2
    card = (folder / "README.md").read_text()
    assert f"{metrics['mse']:.6g}" in card and "1.5 minutes" in card
    assert "trainers.reproduce --name=tiny_ae" in card and "mse ±10 %" in card
    index = (zoo_root / "README.md").read_text()
    assert "[tiny_ae](tiny_ae/README.md)" in index
    # A user's folder of models of their own data: no Fashion-MNIST, no checkout make targets.
    assert "Fashion-MNIST" not in index and "make zoo-" not in index
    assert "each on the\nimages its card names" in index
    # The card is a function of the folder's files: re-rendering changes nothing.
    before = (folder / "README.md").read_text()
    publish.rerender_card(folder)
    assert (folder / "README.md").read_text() == before
    presets.verify(folder)


def test_an_installed_package_is_not_written_into(tmp_path, monkeypatch):
    # Its shipped models and classifier are package data: pip neither tracks nor keeps
    # what a command would add there, and every evaluation reads the classifier.
    from trainers import train_classifier

    monkeypatch.setattr(preset_registry, "is_installed", lambda: True)
    run = make_run(tmp_path)
    with pytest.raises(ValueError, match="--output_root.*installed package"):
        publish.publish("tiny_ae", run)
    assert publish.publish("tiny_ae", run, output_root=tmp_path / "mine").is_dir()
    with pytest.raises(ValueError, match="--output path.*installed package"):
        train_classifier.train_classifier(max_images=8, epochs=1)


def test_a_damaged_shipped_file_names_the_fix_that_applies(tmp_path, monkeypatch):
    folder = publish.publish("tiny_ae", make_run(tmp_path), output_root=tmp_path / "shipped")
    with open(folder / "metrics.json", "a") as f:
        f.write(" ")
    monkeypatch.setattr(preset_registry, "saved_models_dir", lambda: tmp_path / "shipped")
    with pytest.raises(ValueError, match="git checkout"):
        presets.verify(folder)
    monkeypatch.setattr(preset_registry, "is_installed", lambda: True)
    with pytest.raises(ValueError, match="pip install --force-reinstall autoencoder-zoo"):
        presets.verify(folder)


def test_the_card_names_a_feature_matching_term_only_when_trained_with_one(tmp_path, zoo_root):
    plain = publish.publish("plain", make_run(tmp_path, "plain"), output_root=zoo_root)
    assert "Training loss" not in (plain / "README.md").read_text()
    matched = publish.publish(
        "matched", make_run(tmp_path, "matched", feature_matching_weight=0.1),
        output_root=zoo_root)
    card = (matched / "README.md").read_text()
    assert "- Training loss: the family's loss plus feature matching with weight 0.1\n" in card
    assert "fashion_mnist_features.weights.h5" in card
    # The line sits above the training time, which re-rendering an old card still finds.
    assert card.index("- Training loss") < card.index("- Training time")


@pytest.mark.parametrize("family,prior", [("vae", "the N(0, I) prior of the ELBO"),
                                          ("dvae", "the uniform prior of the KL term")])
def test_the_card_says_what_its_samples_are_drawn_from(tmp_path, zoo_root, family, prior):
    folder = publish.publish(family, make_run(tmp_path, family, family=family),
                             output_root=zoo_root)
    card = (folder / "README.md").read_text()
    assert (folder / "samples.png").exists()
    assert "![samples from the prior](samples.png)\n\nDecoded from" in card
    assert prior in card and "rather than whole images" in card


@pytest.mark.parametrize("family", ["ae", "vqvae"])
@pytest.mark.parametrize("num_downsamples", [1, 2])
def test_the_cards_example_gives_the_shape_encode_returns(family, num_downsamples):
    config = config_lib.resolve(family, assignments=[f"num_downsamples={num_downsamples}"])
    model = zoo.FAMILIES[family](**config["model_config"])
    report = {"latent_bits_per_image": latent_bits(model), "num_images": 8}
    card = model_card.card("m", report, config, "not recorded", model.count_params(),
                        type(model).__name__)
    shape = tuple(model.encode(random_images(8)).shape)
    comment = card.split("latents = model.encode(images)  # ")[1].split("\n")[0]
    assert comment.endswith(str(shape)), (comment, shape)


def test_the_card_of_a_model_of_other_data_names_that_data_and_its_shape():
    # A user publishing a model of their own RGB images (`--output_root`): the card must
    # not say Fashion-MNIST, nor give a 28x28x1 example.
    config = config_lib.resolve("vqvae", training_overrides={"dataset": "my_shapes.npz"},
                                assignments=["image_shape=[32,48,3]", "filters=8"])
    model = zoo.VQVAE(**config["model_config"])
    report = {"latent_bits_per_image": latent_bits(model), "num_images": 24,
              "dataset": "my_shapes.npz", "split": "test"}
    card = model_card.card("m", report, config, "not recorded", model.count_params(), "VQVAE")
    assert "Fashion-MNIST" not in card and "fashion_mnist" not in card
    assert "Trained on `my_shapes.npz` (32x48x3 images" in card
    assert 'data.load_split("my_shapes.npz", "test", model.image_shape)' in card
    assert "# (8, 32, 48, 3)" in card
    assert "## Test-set metrics (`my_shapes.npz`, test split, 24 images)" in card
    # Evaluated on its held-out part (a file has no test split): the heading says so.
    held_out = model_card.card("m", {**report, "images_of_split": "validation"}, config,
                               "not recorded", model.count_params(), "VQVAE")
    assert ("## Test-set metrics (`my_shapes.npz`, test split: its held-out validation "
            "images, having no test split, 24 images)") in held_out
    fashion = config_lib.resolve("vqvae")
    card = model_card.card("m", {**report, "dataset": "fashion_mnist"}, fashion,
                           "not recorded", model.count_params(), "VQVAE")
    assert "Trained on Fashion-MNIST (60,000 training images" in card
    assert "# (8, 28, 28, 1)" in card


def test_the_card_of_a_model_without_a_recipe_retrains_from_its_own_config(tmp_path, zoo_root):
    # A user's run has no recipe under configs/: the card's command must use the
    # config.json published beside it, and that file must resolve to the run's config.
    run = make_run(tmp_path)
    folder = publish.publish("tiny_ae", run, output_root=zoo_root)
    card = (folder / "README.md").read_text()
    assert "--config=<this folder>/config.json --model_dir=runs/zoo/tiny_ae" in card
    assert "configs/tiny_ae.json" not in card and "make zoo-" not in card
    assert "--output_root=<this folder's parent>" in card
    published = config_lib.resolve(None, config_file=folder / "config.json")
    assert published == config_lib.resolve(None, config_file=run / "config.json")
    assert published["training"]["dataset"] == str(tmp_path / "images.npy")
    shipped = model_card._reproduce_text("vqvae_fashion_mnist", "mse")
    assert "--config=vqvae_fashion_mnist " in shipped and "make zoo-train" in shipped


def test_the_card_of_a_fine_tuned_model_names_its_origin_and_whether_codes_are_kept(
        tmp_path, zoo_root):
    def origin(family, **training):
        return model_card._origin_text(config_lib.resolve(family, training_overrides=training))

    assert origin("vqvae") == ""
    codes = origin("vqvae", init_from="base", freeze=["encoder", "quantizer"])
    assert codes == ("- Fine-tuned from `base` with its encoder and quantizer frozen "
                     "(`training.freeze`); the training\n  time below is the fine-tuning's. "
                     "Every image has the code it has in `base`,\n  so a prior trained on that "
                     "model's codes applies to this one\n")
    assert "Every image" in origin("dvae", init_from="base", freeze=["encoder"])
    # A VQ-VAE's codebook free to move, or nothing frozen: no claim about the codes.
    assert "Every image" not in origin("vqvae", init_from="base", freeze=["encoder"])
    assert origin("vqvae", init_from="base") == (
        "- Fine-tuned from `base`; the training\n  time below is the fine-tuning's\n")
    assert origin("dvae", init_from="vqvae_fashion_mnist") == (
        "- Started from `vqvae_fashion_mnist`, a VQVAE, as the dVAE that gives its codes and\n"
        "  reconstructions (`zoo.DVAE.from_vqvae`), then trained as a dVAE; the training\n"
        "  time below is the fine-tuning's\n")
    base = tmp_path / "base.keras"
    tiny_model("vqvae").save(base)
    run = make_run(tmp_path, "tuned", family="vqvae", init_from=str(base),
                   freeze=["encoder", "quantizer"])
    card = (publish.publish("tuned", run, output_root=zoo_root) / "README.md").read_text()
    assert f"- Fine-tuned from `{base}` with its encoder and quantizer" in card
    assert card.index("- Fine-tuned") < card.index("- Training time")
    # A VQ-VAE given as a .keras file to a dVAE run: its family is read from the file.
    assert origin("dvae", init_from=str(base)).startswith(f"- Started from `{base}`, a VQVAE,")


def test_a_worse_model_is_not_published_unless_forced(tmp_path, zoo_root):
    folder = publish.publish("tiny_ae", make_run(tmp_path), output_root=zoo_root)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["mse"] = 1e-9  # the published model is now "much better"
    (folder / "metrics.json").write_text(json.dumps(metrics))
    presets.write_manifest(folder)
    before = {p.name: presets.sha256(p) for p in folder.iterdir()}
    worse = make_run(tmp_path, "worse", family="ae")
    with pytest.raises(ValueError, match=r"Not published: .*mse .* is worse .*--force"):
        publish.publish("tiny_ae", worse, output_root=zoo_root)
    assert {p.name: presets.sha256(p) for p in folder.iterdir()} == before
    publish.publish("tiny_ae", worse, output_root=zoo_root, force=True)
    assert json.loads((folder / "metrics.json").read_text())["mse"] > 1e-9
    presets.verify(folder)


def test_card_time_names_the_cpu_and_precision_where_the_run_recorded_them():
    session = {"seconds": 60.0, "epochs_run": 1,
               "machine": "x86_64, 2 CPU cores, AMD EPYC (avx2 fma), vm"}
    timing = model_card.training_time({"train_seconds": 60.0,
                                       "sessions": [{**session, "precision": "float32"}]})
    assert timing.startswith("1.0 minutes of wall time")
    assert "on x86_64, 2 CPU cores, AMD EPYC (avx2 fma), vm, in float32\n" in timing
    # A run before 2026-12-06 recorded no precision.
    older = model_card.training_time({"train_seconds": 60.0, "sessions": [session]})
    assert "AMD EPYC (avx2 fma), vm\n" in older and ", in " not in older


def test_rerender_keeps_the_training_time_of_an_old_card(tmp_path, zoo_root):
    folder = publish.publish("tiny_ae", make_run(tmp_path), output_root=zoo_root)
    (folder / "run_info.json").unlink()
    card = (folder / "README.md").read_text()
    (folder / "README.md").write_text(card.replace("1.5 minutes", "7.5 minutes"))
    presets.write_manifest(folder)
    publish.rerender_card(folder)
    assert "- Training time: 7.5 minutes of wall time" in (folder / "README.md").read_text()
    presets.verify(folder)


def test_reproduce_compares_a_rerun_with_the_card(tmp_path, zoo_root, capsys):
    run = make_run(tmp_path)
    publish.publish("tiny_ae", run, output_root=zoo_root)
    assert reproduce.reproduce("tiny_ae", run)  # the same model: every metric matches
    out = capsys.readouterr().out
    assert "this run" in out and "NOT REPRODUCED" not in out
    # The card and the next step are the user's folder's, not the checkout's saved_models/.
    assert f"against the card ({zoo_root / 'tiny_ae' / 'README.md'})" in out
    assert reproduce.publish_command("tiny_ae", run, zoo_root / "tiny_ae") == (
        f"python -m trainers.publish --name=tiny_ae --model_dir={run} --output_root={zoo_root}")
    shipped = presets.saved_models_dir() / "ae_fashion_mnist"
    assert reproduce.publish_command("ae_fashion_mnist", run, shipped) == (
        "make zoo-publish NAME=ae_fashion_mnist")
    folder = zoo_root / "tiny_ae"
    card = json.loads((folder / "metrics.json").read_text())
    card["mse"] *= 0.5
    (folder / "metrics.json").write_text(json.dumps(card))
    presets.write_manifest(folder)
    assert not reproduce.reproduce("tiny_ae", run)
    assert "NOT REPRODUCED" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, new, old, ok",
    [("mse", 0.0029, 0.0027, True), ("mse", 0.0031, 0.0027, False),
     ("psnr", 26.6, 27.0, True), ("psnr", 26.4, 27.0, False),
     ("bits_per_dim", 6.70, 6.64, False), ("codebook_usage", float("nan"), 1.0, False)],
)
def test_tolerances(name, new, old, ok):
    assert reproduce.within(name, new, old) is ok
    rows, all_ok = reproduce.compare({name: new}, {name: old, "unrelated": 1})
    assert [row[0] for row in rows] == [name] and all_ok is ok


def test_a_metric_of_the_card_missing_from_the_run_is_not_reproduced():
    rows, ok = reproduce.compare({"mse": 0.1}, {"mse": 0.1, "bits_per_dim": 6.6})
    assert not ok and [row[0] for row in rows if not row[-1]] == ["bits_per_dim"]


def test_rerender_signs_the_card_it_changes(tmp_path, zoo_root):
    folder = publish.publish("tiny_ae", make_run(tmp_path), output_root=zoo_root)
    fresh = (folder / "README.md").read_text()
    (folder / "README.md").write_text("# tiny_ae\n\nThe card of an older version.\n")
    presets.write_manifest(folder)
    publish.rerender_card(folder)
    assert (folder / "README.md").read_text() == fresh
    presets.verify(folder)  # the manifest holds the new card's checksum
    assert isinstance(zoo.load("tiny_ae"), zoo.AE)
