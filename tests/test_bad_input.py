"""Bad input gets a clear ValueError/TypeError that names what was expected."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.helpers import DISCRETE_FAMILIES, FAMILY_NAMES, random_images, tiny_model

BAD_IMAGES = [
    # (id, images, error type, text the message must contain)
    ("rank3", np.zeros((28, 28, 1), np.float32), ValueError, "rank 4"),
    ("rank5", np.zeros((1, 2, 28, 28, 1), np.float32), ValueError, "rank 4"),
    ("channels", np.zeros((2, 28, 28, 3), np.float32), ValueError, "1 channel"),
    ("height", np.zeros((2, 30, 28, 1), np.float32), ValueError, "divisible by 4"),
    ("width", np.zeros((2, 28, 26, 1), np.float32), ValueError, "divisible by 4"),
    ("uint8", np.zeros((2, 28, 28, 1), np.uint8), TypeError, "255"),
    ("int32", np.zeros((2, 28, 28, 1), np.int32), TypeError, "floating point"),
]


@pytest.fixture(scope="module")
def models():
    return {family: tiny_model(family) for family in FAMILY_NAMES}


@pytest.mark.parametrize("method", ["call", "encode"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize(
    "images,error,expected", [case[1:] for case in BAD_IMAGES], ids=[c[0] for c in BAD_IMAGES]
)
def test_bad_images_raise_clear_errors(models, family, method, images, error, expected):
    model = models[family]
    function = model if method == "call" else model.encode
    with pytest.raises(error, match=expected) as raised:
        function(images)
    # The message also names what was received.
    assert str(tuple(images.shape)) in str(raised.value) or images.dtype.name in str(raised.value)


def test_uint8_message_says_how_to_convert(models):
    with pytest.raises(TypeError) as raised:
        models["ae"](np.zeros((1, 28, 28, 1), np.uint8))
    message = str(raised.value)
    assert "uint8" in message and "/ 255" in message and "[0, 1]" in message


@pytest.mark.parametrize("family", ["ae", "vqvae"])
def test_fit_on_uint8_images_raises_the_same_error(family):
    model = tiny_model(family)
    model.compile(optimizer="adam")
    with pytest.raises(TypeError, match="255"):
        model.fit(np.zeros((4, 28, 28, 1), np.uint8), epochs=1, batch_size=2, verbose=0)
    # The model is still usable: the refused first step created no variables
    # (it used to leave fit failing with "Creating variables on a non-first call").
    history = model.fit(random_images(4), epochs=1, batch_size=2, verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_a_second_fit_checks_the_sizes_keras_relaxed():
    # Keras retraces a second fit with relaxed shapes, where the sizes are known only
    # when the step runs; the checks run then, with the same messages.
    model = tiny_model("ae")
    model.compile(optimizer="adam")
    model.fit(random_images(4), epochs=1, batch_size=2, verbose=0)
    for shape, message in [((4, 28, 28, 3), "Images must have 1 channel"),
                           ((4, 30, 28, 1), "Image height must be divisible by 4")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            model.fit(np.random.rand(*shape).astype("float32"), epochs=1, batch_size=2,
                      verbose=0)


def test_a_second_fit_on_batches_of_another_rank_says_so():
    # Relaxed after batches of another rank, the shape has no rank, and building the
    # message failed: "ValueError: Cannot iterate over a shape with unknown rank".
    model = tiny_model("vqvae")
    model.compile(optimizer="adam")
    images = random_images(2)
    model.fit(images, epochs=1, batch_size=2, verbose=0)
    unbatched = tf.data.Dataset.from_tensor_slices(images)  # forgot .batch()
    with pytest.raises(tf.errors.InvalidArgumentError, match="Images must have rank 4"):
        model.fit(unbatched, epochs=1, verbose=0, shuffle=False)
    model.fit(unbatched.batch(2), epochs=1, verbose=0, shuffle=False)  # batched, it trains


def test_fit_takes_dict_batches_and_names_a_missing_image_key():
    model = tiny_model("ae")
    model.compile(optimizer="adam")
    examples = {"image": random_images(4), "label": np.arange(4)}  # a tensorflow-datasets example
    dataset = tf.data.Dataset.from_tensor_slices(examples).batch(2)
    assert np.isfinite(model.fit(dataset, epochs=1, verbose=0, shuffle=False).history["loss"][0])
    logs = model.evaluate({"images": random_images(2)}, verbose=0, return_dict=True)
    assert np.isfinite(logs["loss"])
    with pytest.raises(TypeError, match=r"`images` or `image`. Received keys \['pixels'\]"):
        model.fit({"pixels": random_images(4)}, epochs=1, verbose=0)


def test_a_prior_fits_after_a_refused_first_batch():
    from tests.test_transformer_prior import class_patterns, tiny_prior

    prior = tiny_prior()
    prior.compile(optimizer="adam")
    codes = class_patterns()[[0, 1, 0, 1]]
    with pytest.raises((TypeError, ValueError), match="labels"):
        prior.fit(codes, np.array([0.5, 1.0, 0.0, 1.0], np.float32), epochs=1, verbose=0)
    history = prior.fit(codes, np.array([0, 1, 0, 1]), epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("family", DISCRETE_FAMILIES)
@pytest.mark.parametrize("bad", [-1, 16, 1000])
def test_codes_outside_the_codebook_raise(models, family, bad):
    codes = np.zeros((2, 7, 7), np.int32)
    codes[1, 3, 4] = bad
    with pytest.raises(ValueError, match=r"\[0, 16\)") as raised:
        models[family].decode(codes)
    assert str(bad) in str(raised.value)


@pytest.mark.parametrize("family", DISCRETE_FAMILIES)
def test_codes_outside_the_codebook_raise_in_a_graph(models, family):
    decode = tf.function(models[family].decode)
    codes = tf.fill([1, 7, 7], 16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_embeddings=16"):
        decode(codes)


@pytest.mark.parametrize("family", DISCRETE_FAMILIES)
@pytest.mark.parametrize(
    "codes,error,expected",
    [
        (np.zeros((2, 7, 7, 1), np.int32), ValueError, "batch, height, width"),
        (np.zeros((7, 7), np.int32), ValueError, "batch, height, width"),
        (np.zeros((2, 7, 7), np.float32), TypeError, "integers"),
    ],
    ids=["rank4", "rank2", "float"],
)
def test_bad_code_grids_raise(models, family, codes, error, expected):
    with pytest.raises(error, match=expected):
        models[family].decode(codes)


@pytest.mark.parametrize("family", ["ae", "vae"])
@pytest.mark.parametrize(
    "shape", [(2, 7, 7, 3), (2, 7, 7), (2, 7, 7, 4, 1)], ids=["channels", "rank3", "rank5"]
)
def test_bad_latents_raise(models, family, shape):
    with pytest.raises(ValueError, match=r"\(batch, h, w, 4\)") as raised:
        models[family].decode(np.zeros(shape, np.float32))
    assert str(shape) in str(raised.value)


INVALID_ARGUMENTS = [
    ("ae", {"filters": -8}, "filters"),
    ("ae", {"filters": 0}, "filters"),
    ("vae", {"latent_channels": 0}, "latent_channels"),
    ("ae", {"num_downsamples": -1}, "num_downsamples"),
    ("ae", {"num_res_blocks": 1.5}, "num_res_blocks"),
    ("ae", {"image_shape": (28, 28)}, "image_shape"),
    ("ae", {"image_shape": (30, 30, 1)}, "divisible"),
    ("vae", {"kl_weight": -1.0}, "kl_weight"),
    ("vqvae", {"num_embeddings": 0}, "num_embeddings"),
    ("vqvae", {"embedding_dim": -4}, "embedding_dim"),
    ("vqvae", {"decay": 1.0}, "decay"),
    ("vqvae", {"commitment_cost": -0.25}, "commitment_cost"),
    ("vqvae", {"dead_code_threshold": -1.0}, "dead_code_threshold"),
    ("dvae", {"likelihood": "bernoulli"}, "likelihood"),
    ("dvae", {"temperature": 0.0}, "temperature"),
    ("dvae", {"logit_laplace_eps": 0.5}, "logit_laplace_eps"),
    ("dvae", {"num_embeddings": -1}, "num_embeddings"),
]


@pytest.mark.parametrize(
    "family,kwargs,name", INVALID_ARGUMENTS, ids=[f"{f}-{n}" for f, _, n in INVALID_ARGUMENTS]
)
def test_invalid_constructor_arguments_raise_value_error(family, kwargs, name):
    with pytest.raises(ValueError, match=name) as raised:
        zoo.FAMILIES[family](**{**{"filters": 8, "num_res_blocks": 1}, **kwargs})
    assert str(next(iter(kwargs.values()))) in str(raised.value)


@pytest.mark.parametrize(
    "family,name", [("vqvae", "use_ema"), ("dvae", "straight_through"), ("ae", "strided_stem")]
)
def test_a_string_for_a_bool_argument_is_refused(family, name):
    # `bool("False")` is True: the quantizers' flags took any truthy value until 2026-12-07.
    with pytest.raises(TypeError, match=f"`{name}` must be a bool"):
        zoo.FAMILIES[family](filters=8, num_res_blocks=1, **{name: "False"})


PRIOR_ARGUMENTS = {"num_embeddings": 16, "grid_shape": (7, 7), "num_classes": 2}


@pytest.mark.parametrize("family", ["vae", "vqvae", "dvae", "prior"])
@pytest.mark.parametrize("seed, error", [(1.7, TypeError), ("3", TypeError), (2**32, ValueError)])
def test_a_constructor_seed_that_is_not_an_int32_is_refused(family, seed, error):
    # `int(seed)` used to truncate 1.7 to 1 and read "3" as 3; the prior stored anything.
    with pytest.raises(error, match="`seed` must"):
        if family == "prior":
            zoo.TransformerPrior(**PRIOR_ARGUMENTS, seed=seed)
        else:
            zoo.FAMILIES[family](filters=8, num_res_blocks=1, seed=seed)


@pytest.mark.parametrize("family", [*FAMILY_NAMES, "prior"])
def test_a_model_dtype_is_refused_for_the_global_policy(family):
    # A model-level dtype reached the model but not its layers, and was not saved.
    build = (
        functools.partial(zoo.TransformerPrior, **PRIOR_ARGUMENTS)
        if family == "prior" else zoo.FAMILIES[family]
    )
    with pytest.raises(ValueError, match="set_global_policy") as raised:
        build(dtype="mixed_bfloat16")
    assert "mixed_bfloat16" in str(raised.value)


def test_good_images_of_other_float_dtypes_are_accepted(models):
    images = random_images(2)
    for dtype in ("float16", "float64"):
        out = models["ae"](images.astype(dtype))
        assert tuple(out.shape) == (2, 28, 28, 1)
        assert np.isfinite(keras.ops.convert_to_numpy(out)).all()
