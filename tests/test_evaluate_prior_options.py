"""`evaluate_prior` refuses a bad batch size or completion row count before sampling.

`--completion_rows` beyond the code grid was refused only when the completions
were drawn, last, after every sample and the guidance table (minutes at the
default counts), and 0 silently became the default; `--batch_size=0` ended in
"range() arg 3 must not be zero", a negative one in "need at least one array
to concatenate".
"""

import pytest

import zoo
from tests.helpers import tiny_model
from trainers import generation
from trainers.evaluate_prior import evaluate_prior
from trainers.labels import FASHION_MNIST_CLASSES


@pytest.fixture
def generator(monkeypatch):
    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the options were checked")

    monkeypatch.setattr(generation, "generate_in_batches", no_sampling)
    autoencoder = tiny_model("dvae")
    prior = zoo.TransformerPrior(num_embeddings=autoencoder.num_embeddings,
                                 grid_shape=autoencoder.latent_grid, num_classes=10,
                                 embed_dim=16, num_layers=1, num_heads=2, mlp_dim=32)
    return zoo.ImageGenerator(autoencoder, prior, list(FASHION_MNIST_CLASSES))


@pytest.mark.parametrize("options, message", [
    ({"completion_rows_kept": 0}, r"`completion_rows` must be in \[1, {last}\].*Received: 0"),
    ({"completion_rows_kept": 99}, r"`completion_rows` must be in \[1, {last}\].*Received: 99"),
    ({"batch_size": 0}, r"`batch_size` must be a positive integer"),
    ({"batch_size": -5}, r"`batch_size` must be a positive integer"),
])
def test_bad_options_are_refused_before_sampling(generator, tmp_path, options, message):
    last = generator.autoencoder.latent_grid[0] - 1
    with pytest.raises(ValueError, match=message.format(last=last)):
        evaluate_prior(generator, tmp_path / "eval", "fashion_mnist", num_samples=10,
                       guidance_samples=10, **options)
