"""`zoo.DalleDVAE`: DALL-E's architecture behaving as a zoo dVAE (tiny configurations).

Equality with OpenAI's reference is in test_dalle_reference.py.
"""

import inspect
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.helpers import random_images
from trainers.callbacks import TemperatureAnnealing
from zoo import dalle_weights, tensor_checks
from zoo.dalle_blocks import DalleBlock
from zoo.export import export_model

TINY = {"image_shape": (32, 32, 3), "n_hid": 8, "n_blk_per_group": 1, "vocab_size": 32, "n_init": 8}


@pytest.fixture(scope="module")
def model():
    return zoo.DalleDVAE(**TINY)


@pytest.fixture(scope="module")
def images():
    return random_images(4, shape=(32, 32, 3), seed=2)


def test_is_a_dvae_with_dalle_shapes(model, images):
    assert isinstance(model, zoo.DVAE)
    assert (model.num_embeddings, model.vocab_size, model.n_init) == (32, 32, 8)
    codes = model.encode(images)
    assert codes.dtype == tf.int32 and codes.shape == (4, 4, 4)
    assert model.encode_logits(images).shape == (4, 4, 4, 32)
    decoded = model.decode(codes).numpy()
    assert decoded.shape == (4, 32, 32, 3) and decoded.min() >= 0 and decoded.max() <= 1
    np.testing.assert_allclose(model(images), decoded, atol=1e-6)  # inference = argmax
    # Fully convolutional: a 64x64 image gives an 8x8 grid (256 -> 32 at full size).
    assert model.encode(random_images(1, shape=(64, 64, 3))).shape == (1, 8, 8)
    # Decoder output: location (first C channels) then log-scale, as in dall_e.
    stats = model.decoder(model.quantizer.lookup(codes))
    location = stats[..., :3].numpy()
    eps = model.logit_laplace_eps
    expected = np.clip((1 / (1 + np.exp(-location)) - eps) / (1 - 2 * eps), 0, 1)
    np.testing.assert_allclose(decoded, expected, atol=1e-6)


def test_defaults_are_the_released_configuration():
    parameters = inspect.signature(zoo.DalleDVAE).parameters
    defaults = {name: p.default for name, p in parameters.items()}
    assert defaults["image_shape"] == (256, 256, 3)
    assert (defaults["n_hid"], defaults["n_blk_per_group"]) == (256, 2)
    assert (defaults["vocab_size"], defaults["n_init"]) == (8192, 128)


@pytest.mark.slow
def test_full_size_build():
    model = zoo.DalleDVAE()
    assert model.latent_grid == (32, 32)
    # 53,786,240 (dall_e.Encoder) + 43,829,766 (dall_e.Decoder) parameters,
    # plus the temperature and KL warm-up scalars.
    assert model.count_params() == 53_786_240 + 43_829_766 + 2


def test_config_round_trip_uses_dalle_names(model, images):
    config = model.get_config()
    for name in ("n_hid", "n_blk_per_group", "vocab_size", "n_init"):
        assert config[name] == TINY[name]
    for name in ("filters", "num_res_blocks", "num_embeddings", "embedding_dim", "likelihood"):
        assert name not in config
    clone = zoo.DalleDVAE.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone.encode(images), model.encode(images))


def test_keras_file_round_trip(model, images, tmp_path):
    path = tmp_path / "dalle.keras"
    model.temperature.assign(0.25)
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is zoo.DalleDVAE
    assert float(loaded.temperature.numpy()) == 0.25
    np.testing.assert_array_equal(loaded.encode(images), model.encode(images))
    np.testing.assert_allclose(loaded(images), model(images), atol=1e-6)
    model.temperature.assign(1.0)


@pytest.mark.parametrize(
    "bad, error, match",
    [
        ({"filters": 32}, TypeError, "does not take `filters`; its DALL-E argument is n_hid"),
        ({"num_embeddings": 64}, TypeError, "vocab_size"),
        ({"likelihood": "mse"}, TypeError, "always logit-Laplace"),
        ({"strided_stem": False}, TypeError, "does not take `strided_stem`"),
        ({"separable_residual": True}, TypeError, "layout is fixed"),
        ({"image_shape": (30, 30, 3)}, ValueError, "divisible by 2\\*\\*num_downsamples=8"),
        ({"n_hid": 0}, ValueError, "`n_hid` must be a positive integer"),
        ({"n_hid": 6}, ValueError, "`n_hid` must be a multiple of 4"),
        ({"vocab_size": 0}, ValueError, "`vocab_size` must be a positive integer"),
        ({"n_init": 0}, ValueError, "`n_init` must be a positive integer"),
    ],
)
def test_bad_arguments_are_refused(bad, error, match):
    with pytest.raises(error, match=match):
        zoo.DalleDVAE(**{**TINY, **bad})


def test_the_batch_limit_counts_the_full_resolution_width_n_hid():
    # The limit used the base class's `filters` (32), not `n_hid`: at full size it allowed
    # batches whose first group's activations pass 2**31 values, which crash CPU kernels.
    model = zoo.DalleDVAE(image_shape=(64, 64, 3), n_hid=64, n_blk_per_group=1,
                          vocab_size=64, n_init=8)
    assert model.max_batch_size * 64 * 64 * 64 <= tensor_checks.MAX_TENSOR_VALUES


def test_block_scales_its_residual_branch_by_inverse_square_layers():
    x = tf.random.normal((1, 4, 4, 8), seed=1)
    one = DalleBlock(8, 8, num_layers=1)
    four = DalleBlock(8, 8, num_layers=4)
    one.build(x.shape), four.build(x.shape)
    four.set_weights(one.get_weights())
    assert one.id_path is None  # same width: identity
    np.testing.assert_allclose(four(x) - x, (one(x) - x) / 16, rtol=1e-5, atol=1e-6)
    widen = DalleBlock(8, 16, num_layers=1)
    assert widen.id_path is not None and widen(x).shape == (1, 4, 4, 16)
    with pytest.raises(ValueError, match="multiple of 4"):
        DalleBlock(8, 10, num_layers=1)


def test_state_dicts_round_trip_and_mismatches_are_named(model, images):
    encoder_state, decoder_state = dalle_weights.state_dicts(model)
    assert decoder_state["blocks.input.w"].shape == (8, 32, 1, 1)  # (n_init, K, 1, 1)
    assert encoder_state["blocks.input.w"].shape == (8, 3, 7, 7)  # OIHW
    clone = zoo.DalleDVAE.from_state_dicts(encoder_state, decoder_state, image_shape=(32, 32, 3))
    assert clone.get_config() == {**model.get_config(), "name": clone.name}
    np.testing.assert_array_equal(clone.encode_logits(images), model.encode_logits(images))
    np.testing.assert_array_equal(clone(images), model(images))

    missing = dict(encoder_state)
    del missing["blocks.group_2.block_1.res_path.conv_3.b"]
    with pytest.raises(ValueError, match=r"Missing keys: \['blocks.group_2.block_1"):
        dalle_weights.assign(clone, missing, decoder_state)
    wrong = {**decoder_state, "blocks.input.w": np.zeros((8, 64, 1, 1), np.float32)}
    with pytest.raises(ValueError, match="disagree on vocab_size .*: 32 != 64"):
        dalle_weights.config_from_state_dicts(encoder_state, wrong)
    with pytest.raises(ValueError, match="3-channel images"):
        zoo.DalleDVAE.from_state_dicts(encoder_state, decoder_state, image_shape=(32, 32, 1))


def test_fit_with_temperature_annealing_trains_every_weight(images):
    model = zoo.DalleDVAE(**TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(
        images,
        epochs=1,
        batch_size=2,
        verbose=0,
        callbacks=[TemperatureAnnealing(start=1.0, end=1 / 16, steps=1, schedule="linear")],
    )
    logs = history.history
    for name in ("loss", "reconstruction_loss", "kl_loss", "perplexity", "temperature"):
        assert math.isfinite(logs[name][-1]), (name, logs)
    assert float(model.temperature.numpy()) == pytest.approx(1 / 16)
    unchanged = [
        w.path
        for w, b in zip(model.trainable_weights, before, strict=True)
        if np.array_equal(w.numpy(), b)
    ]
    assert unchanged == []  # the codebook and the decoder's input bias train too


def test_exported_encode_and_decode_signatures_match_the_model(model, images, tmp_path):
    path = export_model(model, str(tmp_path / "dalle"), keras_file=False)
    served = tf.saved_model.load(path)
    codes = served.signatures["encode"](images=tf.constant(images))["codes"]
    np.testing.assert_array_equal(codes, model.encode(images))
    decoded = served.signatures["decode"](codes=codes)
    (output,) = decoded.values()
    np.testing.assert_allclose(output, model.decode(codes), atol=1e-6)
