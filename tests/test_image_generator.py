"""`zoo.ImageGenerator`: class names to images, fine-tuning its prior, one `.keras` file."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.helpers import (
    DISCRETE_FAMILIES,
    copy_model,
    random_images,
    run_in_fresh_process,
    tiny_model,
)

NAMES = ["T-shirt/top", "Trouser", "Ankle boot"]
TINY_PRIOR = {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_dim": 64}


def tiny_generator(family: str = "dvae") -> zoo.ImageGenerator:
    autoencoder = tiny_model(family)
    prior = zoo.TransformerPrior(
        num_embeddings=autoencoder.num_embeddings,
        grid_shape=autoencoder.latent_grid,
        num_classes=len(NAMES),
        **TINY_PRIOR,
    )
    return zoo.ImageGenerator(autoencoder, prior, NAMES)


@pytest.mark.parametrize("family", DISCRETE_FAMILIES)
def test_names_and_ids_give_the_same_images(family):
    generator = tiny_generator(family)
    images = generator.generate(["ankle BOOT ", "trouser"], seed=1, top_k=4).numpy()
    assert images.shape == (2, 28, 28, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_array_equal(images, generator.generate([2, 1], seed=1, top_k=4))
    codes = generator.prior.generate([2, 1], seed=1, top_k=4)
    np.testing.assert_allclose(images, generator.autoencoder.decode(codes), atol=1e-6)


def test_prompts_may_be_arrays_or_tensors_of_ids_or_names():
    generator = tiny_generator()
    expected = [2, 1]
    for prompts in (tf.constant([2, 1]), tf.constant(["Ankle boot", "trouser"]),
                    np.array([2, 1]), np.array(["ankle boot", "Trouser"])):
        np.testing.assert_array_equal(generator.class_ids(prompts), expected)
    np.testing.assert_array_equal(generator.class_ids(tf.constant(2)), [2])
    with pytest.raises(ValueError, match="one-dimensional"):
        generator.class_ids(np.array([[2, 1]]))


def test_unknown_names_and_ids_are_refused_with_the_known_names():
    generator = tiny_generator()
    with pytest.raises(ValueError, match="Known names: T-shirt/top, Trouser, Ankle boot"):
        generator.generate(["sandal"])
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        generator.generate([3])
    with pytest.raises(ValueError, match="empty"):
        generator.generate([])


def test_generate_inside_a_traced_function_takes_tensors_of_names_or_ids():
    generator = tiny_generator()
    expected = generator.generate(["ankle boot", "trouser"], seed=1, top_k=4).numpy()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def from_names(prompts):
        return generator.generate(prompts, seed=1, top_k=4)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def from_ids(prompts):
        return generator.generate(prompts, seed=1, top_k=4)

    np.testing.assert_allclose(from_names(tf.constant([" Ankle BOOT", "trouser"])), expected,
                               atol=1e-6)
    np.testing.assert_allclose(from_ids(tf.constant([2, 1], tf.int64)), expected, atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="(?s)sandal.*Known names .*T-shirt/top, Trouser, Ankle boot"):
        from_names(tf.constant(["sandal"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="class ids must be < 3"):
        from_ids(tf.constant([3], tf.int64))


def test_mismatched_parts_are_refused():
    autoencoder = tiny_model("vqvae")
    prior = zoo.TransformerPrior(
        num_embeddings=autoencoder.num_embeddings + 1,
        grid_shape=autoencoder.latent_grid,
        num_classes=3,
        **TINY_PRIOR,
    )
    with pytest.raises(ValueError, match="num_embeddings"):
        zoo.ImageGenerator(autoencoder, prior, NAMES)
    with pytest.raises(TypeError, match="discrete zoo model"):
        zoo.ImageGenerator(tiny_model("ae"), prior, NAMES)
    with pytest.raises(ValueError, match="case-insensitively"):
        zoo.ImageGenerator(autoencoder, prior, ["a", "A", "b"])


def test_default_guidance_scale_is_used_saved_and_checked(tmp_path):
    generator = tiny_generator()
    for weight in generator.prior.weights:  # conditions that matter, so guidance shows
        weight.assign(np.random.default_rng(0).normal(0.0, 0.5, weight.shape))
    guided = zoo.ImageGenerator(generator.autoencoder, generator.prior, NAMES, guidance_scale=3)
    assert generator.guidance_scale == 1.0 and guided.guidance_scale == 3.0
    labels = [0, 1, 2] * 4
    images = guided.generate(labels, seed=5).numpy()
    np.testing.assert_array_equal(images, generator.generate(labels, seed=5, guidance_scale=3))
    assert not np.array_equal(images, generator.generate(labels, seed=5))
    np.testing.assert_array_equal(  # an explicit scale wins over the generator's own
        guided.generate(labels, seed=5, guidance_scale=1), generator.generate(labels, seed=5))

    for name in ("generate", "generate_from_text"):  # the export's warm-up requests
        assert guided.serving_signatures()[name].example["guidance_scale"] == 3.0

    guided.save(tmp_path / "guided.keras")
    loaded = keras.saving.load_model(tmp_path / "guided.keras", safe_mode=True)
    assert loaded.guidance_scale == 3.0
    np.testing.assert_array_equal(loaded.generate(labels, seed=5), images)
    config = guided.get_config()
    del config["guidance_scale"]  # a generator saved before the option existed
    assert zoo.ImageGenerator.from_config(config).guidance_scale == 1.0
    for bad in (-1.0, float("nan"), "3", True):
        with pytest.raises(ValueError, match="guidance_scale"):
            zoo.ImageGenerator(generator.autoencoder, generator.prior, NAMES, guidance_scale=bad)


def test_unconditional_and_completion():
    generator = tiny_generator()
    images = generator.generate(None, num_samples=2, seed=0)
    assert images.shape == (2, 28, 28, 1)
    codes = generator.autoencoder.encode(random_images(2))
    completed = generator.prior.generate([0, 1], prefix=codes[:, :3], seed=0)
    np.testing.assert_array_equal(completed[:, :3], codes[:, :3])


def test_compile_readies_the_prior_for_fine_tuning_and_the_autoencoder_is_frozen():
    generator = tiny_generator()
    generator.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert not generator.autoencoder.trainable
    before = [v.numpy().copy() for v in generator.autoencoder.weights]
    codes = generator.autoencoder.encode(random_images(8))
    history = generator.prior.fit(codes, np.arange(8) % 3, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for a, b in zip(before, generator.autoencoder.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    with pytest.raises(TypeError, match="generator.prior.fit"):
        generator.fit(codes)


def test_keras_file_round_trip_in_a_fresh_process(tmp_path):
    generator = tiny_generator()
    images = generator.generate(["trouser", "ankle boot"], seed=3, temperature=0.8)
    np.save(tmp_path / "images.npy", images.numpy())
    generator.save(tmp_path / "generator.keras")
    run_in_fresh_process(
        f"""
        import keras, numpy as np, zoo
        folder = {str(tmp_path)!r}
        generator = keras.saving.load_model(folder + "/generator.keras", safe_mode=True)
        assert isinstance(generator, zoo.ImageGenerator)
        assert isinstance(generator.autoencoder, zoo.DVAE) and not generator.autoencoder.trainable
        assert generator.class_names == {NAMES!r}
        images = generator.generate(["Trouser", "ANKLE boot"], seed=3, temperature=0.8)
        np.testing.assert_allclose(images, np.load(folder + "/images.npy"), atol=1e-6)
        generator.compile(optimizer=keras.optimizers.Adam(1e-4))  # what zoo.load does
        codes = generator.autoencoder.encode(np.random.rand(4, 28, 28, 1).astype("float32"))
        generator.prior.fit(codes, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
        """
    )


def test_preset_folder_loads_compiled_for_fine_tuning(tmp_path):
    generator = tiny_generator()
    folder = generator.save_to_preset(tmp_path / "prior_tiny")
    loaded = zoo.load(folder)  # what zoo.load("prior_dvae_fashion_mnist") does
    assert isinstance(loaded, zoo.ImageGenerator) and loaded.class_names == NAMES
    codes = loaded.autoencoder.encode(random_images(4))
    history = loaded.prior.fit(codes, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    assert np.isfinite(history.history["bits_per_image"][0])
    np.testing.assert_array_equal(
        zoo.ImageGenerator.from_preset(folder).generate([1], seed=2),
        generator.generate([1], seed=2),
    )


@pytest.mark.parametrize("family", DISCRETE_FAMILIES)
def test_another_decoder_for_the_same_codes_draws_the_same_codes_differently(family):
    generator = tiny_generator(family)
    other = copy_model(generator.autoencoder)
    kernel = other.decoder.weights[0]
    kernel.assign(kernel.numpy() * 1.5)  # a fine-tuned decoder, encoding parts unchanged
    swapped = generator.with_autoencoder(other)
    assert swapped.prior is generator.prior and swapped.class_names == generator.class_names
    assert swapped.guidance_scale == generator.guidance_scale
    codes = generator.prior.generate([2, 0], seed=3)
    images = swapped.generate([2, 0], seed=3).numpy()
    np.testing.assert_allclose(images, other.decode(codes), atol=1e-6)
    assert np.abs(images - generator.generate([2, 0], seed=3).numpy()).max() > 1e-4


@pytest.mark.parametrize("family, part", [("dvae", "encoder"), ("vqvae", "encoder"),
                                          ("vqvae", "quantizer")])
def test_an_autoencoder_that_would_give_other_codes_is_refused(family, part):
    generator = tiny_generator(family)
    other = copy_model(generator.autoencoder)
    weight = getattr(other, part).weights[0]
    weight.assign(weight.numpy() + 0.01)
    with pytest.raises(ValueError, match=f"other codes than this generator's: its {part} weights"):
        generator.with_autoencoder(other)
    with pytest.raises(ValueError, match="must be a DVAE like this generator's"):
        tiny_generator("dvae").with_autoencoder(tiny_model("vqvae"))
