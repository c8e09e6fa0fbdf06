"""`trainers.publish` refuses to replace a published generator by a worse one.

Autoencoders were compared on their main test metric, but a generator run
replaced the published one whatever its figures (`make zoo-publish
NAME=prior_...` after a short or broken retrain overwrote the shipped
generator), and `--force` did nothing. A generator is now compared on its
`test_bits_per_image`, the metric its runs keep their best model by.
"""

import json

import pytest

import zoo
from tests.helpers import REPO_ROOT, tiny_model
from trainers import evaluate_prior as evaluate_prior_module
from trainers import publish, train_prior
from trainers.labels import FASHION_MNIST_CLASSES

SHIPPED_METRICS = REPO_ROOT / "saved_models" / "prior_dvae_fashion_mnist" / "metrics.json"


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A finished-looking prior run whose evaluation reports `run.bits` bits per image."""
    folder = tmp_path / "run"
    folder.mkdir()
    autoencoder = tiny_model("dvae")
    prior = zoo.TransformerPrior(num_embeddings=autoencoder.num_embeddings,
                                 grid_shape=autoencoder.latent_grid, num_classes=10,
                                 embed_dim=16, num_layers=1, num_heads=2, mlp_dim=32)
    zoo.ImageGenerator(autoencoder, prior, list(FASHION_MNIST_CLASSES)).save(
        folder / "best.keras")
    config = train_prior.resolve("dvae_fashion_mnist")
    config["model_config"].update(num_embeddings=prior.num_embeddings, num_classes=10,
                                  grid_shape=list(prior.grid_shape))  # as train_prior saves it
    (folder / "config.json").write_text(json.dumps(config))

    def evaluate(generator, output_dir, *args, **kwargs):  # the figures, without sampling
        output_dir.mkdir(parents=True, exist_ok=True)
        for picture in ("samples.png", "completions.png"):
            (output_dir / picture).write_bytes(b"")
        report = json.loads(SHIPPED_METRICS.read_text())
        report.pop("class_names")
        return {**report, "test_bits_per_image": evaluate.bits}

    monkeypatch.setattr(evaluate_prior_module, "evaluate_prior", evaluate)
    return folder, evaluate


def test_a_worse_generator_is_not_published_unless_forced(tmp_path, run):
    model_dir, evaluate = run
    root = tmp_path / "zoo"
    evaluate.bits = 280.0
    folder = publish.publish("prior_tiny", model_dir, output_root=root)
    evaluate.bits = 290.0
    with pytest.raises(ValueError, match=r"Not published: .*bits_per_image .* 290 is worse "
                                         r"than the published prior_tiny's 280 .*--force"):
        publish.publish("prior_tiny", model_dir, output_root=root)
    assert json.loads((folder / "metrics.json").read_text())["test_bits_per_image"] == 280.0
    publish.publish("prior_tiny", model_dir, output_root=root, force=True)
    assert json.loads((folder / "metrics.json").read_text())["test_bits_per_image"] == 290.0
    evaluate.bits = 270.0  # better: published without --force
    publish.publish("prior_tiny", model_dir, output_root=root)
    assert json.loads((folder / "metrics.json").read_text())["test_bits_per_image"] == 270.0
