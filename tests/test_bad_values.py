"""Bad values, empty and huge batches, and bad `sample` arguments get clear errors.

The Python API side: eager calls raise `ValueError`/`TypeError`; graphs
(`tf.function`, `fit`, `predict`) raise `tf.errors.InvalidArgumentError` with
the same message. Shape and dtype errors are in tests/test_bad_input.py; the
exported signatures are in tests/test_bad_requests.py.
"""

import re

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import FAMILY_NAMES, random_images, tiny_model
from zoo import tensor_checks
from zoo.models import batch_passes

VALUES = "must be finite and lie in \\[0, 1\\]"


def _with(value, where=(1, 3, 4, 0)):
    images = random_images(2)
    images[where] = value
    return images


BAD_VALUES = [
    # (id, images): every one must be refused
    ("0-255", random_images(2) * 255),
    ("just_above_1", _with(1.0001)),
    ("just_below_0", _with(-1e-6)),
    ("nan", _with(np.nan)),
    ("inf", _with(np.inf)),
    ("minus_inf", _with(-np.inf)),
    ("all_nan", np.full((2, 28, 28, 1), np.nan, np.float32)),
    ("float16_0-255", (random_images(2) * 255).astype(np.float16)),
    ("float64_nan", _with(np.nan).astype(np.float64)),
]
ENCODERS = {
    "ae": ["__call__", "encode"],
    "vae": ["__call__", "encode", "encode_distribution"],
    "vqvae": ["__call__", "encode"],
    "dvae": ["__call__", "encode", "encode_logits"],
}
METHODS = [(f, m) for f in FAMILY_NAMES for m in ENCODERS[f]]


@pytest.fixture(scope="module")
def models():
    return {family: tiny_model(family) for family in FAMILY_NAMES}


def _method(model, name):
    return model if name == "__call__" else getattr(model, name)


@pytest.mark.parametrize("family,method", METHODS, ids=[f"{f}-{m}" for f, m in METHODS])
def test_bad_image_values_are_refused_eagerly_and_in_graphs(models, family, method):
    fn = _method(models[family], method)
    traced = tf.function(fn, input_signature=[tf.TensorSpec([None, 28, 28, 1])])  # traced once
    runs = [
        ("eager", fn, ValueError),
        ("graph", lambda x: traced(tf.constant(x, tf.float32)), tf.errors.InvalidArgumentError),
    ]
    for case, images in BAD_VALUES:
        for mode, run, error in runs:
            try:
                run(images)
            except error as raised:
                assert re.search(VALUES, str(raised)), (case, mode, str(raised))
            else:
                pytest.fail(f"{case} images were accepted ({mode})")
    traced(tf.constant(random_images(2)))  # and good images still pass


def test_eager_message_names_the_range_and_the_nan_count(models):
    with pytest.raises(ValueError, match=r"values in \[0, 255\]\.") as raised:
        models["ae"](np.concatenate([np.zeros((1, 28, 28, 1)), np.full((1, 28, 28, 1), 255.0)]))
    assert "divide 0-255 data by 255" in str(raised.value)
    with pytest.raises(ValueError, match=r"and 1 NaN or Inf value\(s\)"):
        models["ae"](_with(np.nan))


def test_a_value_just_outside_the_range_is_shown_outside_it(models):
    # 1.0000001 (a resize's rounding) printed as "1": "must lie in [0, 1]. Received
    # values in [..., 1]" named no value outside the range.
    from trainers import data

    images = _with(np.float32(1.0000001))
    for raise_it in (lambda: models["ae"](images), lambda: data.to_unit_float(images)):
        with pytest.raises(ValueError, match=r", 1\.00000011\d*\]\.") as raised:
            raise_it()
        assert re.search(VALUES, str(raised.value))
    with pytest.raises(ValueError, match=r"values in \[0, 255\]\."):  # plain values stay short
        data.to_unit_float(np.array([[[[0.0]], [[255.0]]]], np.float32))


def test_data_module_uses_the_same_message():
    from trainers import data

    with pytest.raises(ValueError, match=VALUES):
        data.to_unit_float(_with(np.inf))


@pytest.mark.parametrize("value", [0.0, 1.0], ids=["zeros", "ones"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_the_bounds_themselves_are_accepted(models, value, dtype):
    out = models["dvae"](np.full((2, 28, 28, 1), value, dtype))
    assert tuple(out.shape) == (2, 28, 28, 1)


@pytest.mark.parametrize("dtype", [np.bool_, np.complex64, np.int8, np.uint16])
def test_non_float_dtypes_are_type_errors(models, dtype):
    with pytest.raises(TypeError, match="floating point"):
        models["vae"](np.zeros((1, 28, 28, 1), dtype))


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("method", ["__call__", "encode"])
def test_an_empty_batch_is_refused(models, family, method):
    fn = _method(models[family], method)
    with pytest.raises(ValueError, match=r"no examples \(batch size 0\).*\(0, 28, 28, 1\)"):
        fn(np.zeros((0, 28, 28, 1), np.float32))
    traced = tf.function(fn, input_signature=[tf.TensorSpec([None, 28, 28, 1])])
    with pytest.raises(tf.errors.InvalidArgumentError, match="no examples"):
        traced(tf.zeros([0, 28, 28, 1]))


BAD_LATENTS = [
    ("nan", np.full((1, 7, 7, 4), np.nan, np.float32), ValueError, "1?96 NaN or Inf"),
    ("inf", np.full((1, 7, 7, 4), np.inf, np.float32), ValueError, "NaN or Inf"),
    ("empty", np.zeros((0, 7, 7, 4), np.float32), ValueError, "no examples"),
    ("int", np.zeros((1, 7, 7, 4), np.int32), TypeError, "floating point"),
]


@pytest.mark.parametrize("family", ["ae", "vae"])
@pytest.mark.parametrize(
    "latents,error,expected", [c[1:] for c in BAD_LATENTS], ids=[c[0] for c in BAD_LATENTS]
)
def test_bad_latents(models, family, latents, error, expected):
    with pytest.raises(error, match=expected):
        models[family].decode(latents)


@pytest.mark.parametrize("family", ["ae", "vae"])
def test_latents_beyond_the_compute_dtype_are_refused(models, family):
    # Checked in their own dtype, float64 latents of 1e39 passed and the decoder's
    # float32 turned them into Inf: every image NaN, without an error.
    big = np.full((1, 7, 7, 4), 1e39)
    with pytest.raises(ValueError, match="196 NaN or Inf value.* in float32"):
        models[family].decode(big)
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf values in float32"):
        tf.function(models[family].decode)(tf.constant(big))
    assert np.isfinite(models[family].decode(np.full((1, 7, 7, 4), 7e4)).numpy()).all()


def test_latents_beyond_float16_are_refused_under_mixed_float16():
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")  # reset by conftest
    model = tiny_model("ae")
    with pytest.raises(ValueError, match="NaN or Inf value.* in float16.*65504"):
        model.decode(np.full((1, 7, 7, 4), 7e4, np.float32))
    assert np.isfinite(model.decode(np.full((1, 7, 7, 4), 0.5, np.float32)).numpy()).all()


def test_non_finite_latents_are_refused_in_a_graph(models):
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
        tf.function(models["vae"].decode)(tf.fill([1, 7, 7, 4], np.nan))


BAD_CODES = [
    ("empty", np.zeros((0, 7, 7), np.int32), ValueError, "no examples"),
    ("int64_wraps_to_0", np.full((1, 7, 7), 2**32, np.int64), ValueError, "4294967296"),
    ("int64_negative", np.full((1, 7, 7), -(2**40), np.int64), ValueError, r"\[0, 16\)"),
    ("bool", np.zeros((1, 7, 7), np.bool_), TypeError, "integers"),
]


@pytest.mark.parametrize("family", ["vqvae", "dvae"])
@pytest.mark.parametrize(
    "codes,error,expected", [c[1:] for c in BAD_CODES], ids=[c[0] for c in BAD_CODES]
)
def test_bad_codes(models, family, codes, error, expected):
    with pytest.raises(error, match=expected):
        models[family].decode(codes)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64])
def test_codes_of_other_integer_dtypes_decode_like_int32(models, dtype):
    codes = np.arange(49).reshape(1, 7, 7) % 16
    expected = models["vqvae"].decode(codes.astype(np.int32)).numpy()
    np.testing.assert_array_equal(models["vqvae"].decode(codes.astype(dtype)).numpy(), expected)


BAD_NUM_SAMPLES = [
    (0, ValueError),
    (-1, ValueError),
    (np.int64(0), ValueError),
    (2.5, TypeError),
    (2.0, TypeError),
    (np.float32(2), TypeError),
    ("3", TypeError),
    (True, TypeError),
    (None, TypeError),
    ([2], TypeError),
]


@pytest.mark.parametrize("family", ["vae", "dvae"])
@pytest.mark.parametrize("value,error", BAD_NUM_SAMPLES, ids=[repr(v) for v, _ in BAD_NUM_SAMPLES])
def test_bad_num_samples(models, family, value, error):
    with pytest.raises(error, match=r"`num_samples` must be an integer >= 1\. Received"):
        models[family].sample(value)


@pytest.mark.parametrize("seed,error", [(1.5, TypeError), ("0", TypeError), (None, TypeError),
                                        (2**40, ValueError)])
def test_bad_seeds(models, seed, error):
    with pytest.raises(error, match="`seed` must"):
        models["dvae"].sample(2, seed=seed)


@pytest.mark.parametrize("value", [np.int32(2), np.int64(2), tf.constant(2)])
def test_integer_like_num_samples_are_accepted(models, value):
    np.testing.assert_array_equal(models["dvae"].sample(value, seed=np.int64(3)),
                                  models["dvae"].sample(2, seed=3))


# Huge batches ---------------------------------------------------------------


def test_default_models_know_their_limit():
    from zoo import DVAE

    model = DVAE()
    # The decoder's last stage holds 28 * 28 * 32 values per image: 2**31 at 85,599.
    assert model.max_batch_size == (2**31 - 1) // (28 * 28 * 32) == 85_598


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_the_limit_bounds_every_tensor_of_a_training_step(family):
    """`_values_per_example` is an upper bound on every per-example tensor of a pass."""
    model = tiny_model(family)
    model.compile(optimizer="adam")
    batch = 16

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.compute_terms(images, training=True)["loss"])
        return tape.gradient(loss, model.trainable_variables)

    graph = step.get_concrete_function(tf.TensorSpec([batch, 28, 28, 1])).graph
    largest = max(
        (t.shape.num_elements() or 0) for op in graph.get_operations() for t in op.outputs
    )
    assert 0 < largest <= batch * model._values_per_example()


@pytest.mark.parametrize("family", ["vqvae", "dvae"])
def test_a_graph_refuses_code_grids_over_the_real_limit(models, family):
    model = models[family]
    limit = model.max_batch_size
    decode = tf.function(model.decode, input_signature=[tf.TensorSpec([None, 7, 7], tf.int32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"At most {limit:,} code grids"):
        decode(tf.zeros([limit + 1, 7, 7], tf.int32))
    assert decode(tf.zeros([2, 7, 7], tf.int32)).shape == (2, 28, 28, 1)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_graphs_refuse_a_batch_over_the_limit_before_reading_it(family, monkeypatch):
    model = tiny_model(family)
    monkeypatch.setattr(tensor_checks, "MAX_TENSOR_VALUES", 3 * model._values_per_example())
    assert model.max_batch_size == 3
    images = random_images(4) * 255  # bad values too: the size is refused first
    for method in ENCODERS[family]:
        traced = tf.function(_method(model, method))
        with pytest.raises(tf.errors.InvalidArgumentError, match="At most 3 images"):
            traced(tf.constant(images))
    if family in ("ae", "vae"):
        with pytest.raises(tf.errors.InvalidArgumentError, match="At most 3 latent grids"):
            tf.function(model.decode)(tf.zeros([4, 7, 7, 4]))


def test_fit_and_predict_refuse_a_batch_over_the_limit(monkeypatch):
    model = tiny_model("ae")
    model.compile(optimizer="adam")
    monkeypatch.setattr(tensor_checks, "MAX_TENSOR_VALUES", 3 * model._values_per_example())
    images = random_images(8)
    with pytest.raises(tf.errors.InvalidArgumentError, match="At most 3 images"):
        model.fit(images, batch_size=4, epochs=1, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="At most 3 images"):
        model.predict(images, batch_size=4, verbose=0)
    assert model.predict(images, batch_size=3, verbose=0).shape == (8, 28, 28, 1)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_eager_calls_run_big_batches_in_passes(models, family, monkeypatch):
    model = models[family]
    images = random_images(7)
    whole = {
        "call": model(images).numpy(),
        "encode": model.encode(images).numpy(),
    }
    monkeypatch.setattr(batch_passes, "PASS_VALUES", 2 * model._values_per_example())  # passes of 2
    np.testing.assert_allclose(model(images).numpy(), whole["call"], atol=1e-6)
    np.testing.assert_allclose(model.encode(images).numpy(), whole["encode"], atol=1e-6)
    latents = whole["encode"]
    np.testing.assert_allclose(
        model.decode(latents).numpy(), models[family].decode(latents[:3]).numpy().tolist()
        + models[family].decode(latents[3:]).numpy().tolist(), atol=1e-6
    )


@pytest.mark.parametrize("family", ["vae", "dvae"])
def test_eager_sample_decodes_in_passes_and_equals_one_pass(models, family, monkeypatch):
    model = models[family]
    whole = model.sample(7, seed=5).numpy()
    monkeypatch.setattr(batch_passes, "PASS_VALUES", 2 * model._values_per_example())
    np.testing.assert_allclose(model.sample(7, seed=5).numpy(), whole, atol=1e-6)


def test_eager_output_larger_than_one_tensor_is_refused(models, monkeypatch):
    model = models["ae"]
    monkeypatch.setattr(batch_passes, "PASS_VALUES", 2 * model._values_per_example())
    monkeypatch.setattr(tensor_checks, "MAX_TENSOR_VALUES", 5 * 28 * 28)
    with pytest.raises(ValueError, match="pass at most 5 images at once"):
        model(random_images(6))
    with pytest.raises(ValueError, match=r"At most 5 samples .* Received 6"):
        models["dvae"].sample(6)
    assert models["dvae"].sample(5).shape == (5, 28, 28, 1)


def test_sample_beyond_any_tensor_is_refused_without_drawing(models):
    limit = (2**31 - 1) // (28 * 28)
    with pytest.raises(ValueError, match=f"At most {limit:,} samples"):
        models["dvae"].sample(limit + 1)
    with pytest.raises(ValueError, match="At most"):
        models["vae"].sample(2**31 - 1)


@pytest.mark.slow
def test_dvae_sample_100000_returns_images_in_a_fresh_process():
    """The reported crash: exit 139 (segfault) before; now ~2,700 images per pass."""
    from tests.helpers import run_in_fresh_process

    result = run_in_fresh_process(
        """
        import numpy as np, zoo
        images = zoo.DVAE().sample(100_000, seed=0).numpy()
        assert images.shape == (100_000, 28, 28, 1), images.shape
        assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
        print("ok")
        """,
        timeout=900,
    )
    assert result.stdout.strip().endswith("ok")


# fit / evaluate / predict -----------------------------------------------------


def test_fit_and_evaluate_refuse_bad_values_at_the_first_step():
    model = tiny_model("dvae")
    model.compile(optimizer="adam")
    before = [w.copy() for w in model.get_weights()]
    for images in (random_images(4) * 255, _with(np.nan), _with(-np.inf)):
        for run in (model.fit, model.evaluate):
            with pytest.raises(tf.errors.InvalidArgumentError, match=VALUES):
                run(images, batch_size=2, verbose=0)
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)  # no step was applied


EMPTY = [
    ("array", np.zeros((0, 28, 28, 1), np.float32)),
    ("pair", (np.zeros((0, 28, 28, 1), np.float32), np.zeros((0,)))),
    ("dataset", tf.data.Dataset.from_tensor_slices(np.zeros((0, 28, 28, 1), np.float32)).batch(2)),
]


@pytest.mark.parametrize("data", [c[1] for c in EMPTY], ids=[c[0] for c in EMPTY])
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_empty_data_is_refused(models, method, data):
    model = models["vqvae"]
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=rf"{method}\(x\) (holds no examples|is an empty)"):
        getattr(model, method)(data, verbose=0)


def test_empty_validation_data_is_refused(models):
    model = models["ae"]
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"fit\(validation_data\) holds no examples"):
        model.fit(random_images(4), epochs=1, verbose=0,
                  validation_data=np.zeros((0, 28, 28, 1), np.float32))


# Exported signatures (the SavedModel graph, loaded without the Python model) -----


@pytest.fixture(scope="module")
def served_dvae(tmp_path_factory):
    from zoo.export import export_model

    model = tiny_model("dvae")
    path = export_model(model, str(tmp_path_factory.mktemp("exports") / "dvae"))
    return model, tf.saved_model.load(path).signatures


def test_signatures_refuse_bad_image_values(served_dvae):
    _, signatures = served_dvae
    for _case, images in BAD_VALUES:
        for name in ("serving_default", "encode"):
            with pytest.raises(tf.errors.InvalidArgumentError, match=VALUES):
                signatures[name](images=tf.constant(images, tf.float32))


def test_sample_signature_refuses_counts_over_the_limit_without_crashing(served_dvae):
    model, signatures = served_dvae
    sample = signatures["sample"]
    for count in (model.max_batch_size + 1, 2**31 - 1):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=f"At most {model.max_batch_size:,} samples"):
            sample(num_samples=tf.constant(count), seed=tf.constant(0))
    for count in (0, -5):
        with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples must be >= 1"):
            sample(num_samples=tf.constant(count), seed=tf.constant(0))
    images = sample(num_samples=tf.constant(3), seed=tf.constant(4))["images"]
    np.testing.assert_allclose(images.numpy(), model.sample(3, seed=4).numpy(), atol=1e-5)
