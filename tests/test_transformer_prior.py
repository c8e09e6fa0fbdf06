"""Behaviour of `zoo.TransformerPrior`: causality, training, sampling, completion, saving.

A tiny prior (3x4 grid, so rows and columns differ) is trained once per
module on a fixed set where the class decides the whole code grid: class c
has its own fixed random grid. That makes "the condition changes the
samples" and "completion" checkable with exact codes.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.helpers import run_in_fresh_process, summary_text

GRID = (3, 4)
K = 16
CLASSES = 4
TINY_PRIOR = {
    "num_embeddings": K,
    "grid_shape": GRID,
    "num_classes": CLASSES,
    "embed_dim": 32,
    "num_layers": 2,
    "num_heads": 2,
    "mlp_dim": 64,
}
LOSS_THRESHOLD = 0.3  # nats per code after training; ln(16) = 2.77 at chance


def tiny_prior(**overrides) -> zoo.TransformerPrior:
    return zoo.TransformerPrior(**{**TINY_PRIOR, **overrides})


def class_patterns(seed: int = 0) -> np.ndarray:
    """One fixed code grid per class, int32 (CLASSES, h, w)."""
    return np.random.default_rng(seed).integers(0, K, (CLASSES, *GRID), dtype=np.int32)


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    patterns = class_patterns()
    labels = np.repeat(np.arange(CLASSES, dtype=np.int32), 8)
    codes = patterns[labels]
    prior = tiny_prior(dropout=0.0)
    prior.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = prior.evaluate(codes, labels, verbose=0, return_dict=True)
    history = prior.fit(codes, labels, epochs=60, batch_size=16, verbose=0)
    return {"prior": prior, "patterns": patterns, "before": before, "history": history.history}


def test_fit_drives_the_loss_down(trained):
    loss = trained["history"]["loss"]
    assert trained["before"]["loss"] == pytest.approx(np.log(K), abs=0.1)  # chance at init
    assert loss[-1] < LOSS_THRESHOLD < loss[0], loss
    assert set(trained["history"]) == {"loss", "accuracy", "bits_per_image"}


def test_bits_per_image_is_the_summed_code_nll(trained):
    prior, patterns = trained["prior"], trained["patterns"]
    labels = np.arange(CLASSES, dtype=np.int32)
    logits = prior.logits(patterns, labels).numpy()
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, patterns[..., None], axis=-1)[..., 0]
    expected = -picked.sum(axis=(1, 2)) / np.log(2)
    np.testing.assert_allclose(prior.bits_per_image(patterns, labels), expected, rtol=1e-4)
    logs = prior.evaluate(patterns, labels, verbose=0, return_dict=True)
    assert logs["bits_per_image"] == pytest.approx(expected.mean(), rel=1e-4)
    raw = GRID[0] * GRID[1] * np.log2(K)
    assert expected.max() < 0.2 * raw  # the trained prior compresses its training grids


def test_summary_gives_every_layer_its_output_shape():
    rows = summary_text(tiny_prior())
    assert "?" not in rows, rows
    assert rows.count(f"(None, {GRID[0] * GRID[1]}, 32)") == 5, rows  # embedding .. final norm


def test_causality_later_codes_do_not_change_earlier_logits():
    prior = tiny_prior()
    codes = np.random.default_rng(1).integers(0, K, (2, *GRID), dtype=np.int32)
    labels = np.array([0, 3], np.int32)
    base = prior.logits(codes, labels).numpy().reshape(2, -1, K)
    for position in (0, 5, 10):
        changed = codes.reshape(2, -1).copy()
        changed[:, position] = (changed[:, position] + 1) % K
        logits = prior.logits(changed.reshape(codes.shape), labels).numpy().reshape(2, -1, K)
        # Position p predicts code p from codes < p: positions <= p are unchanged.
        np.testing.assert_allclose(logits[:, : position + 1], base[:, : position + 1], atol=1e-5)
        assert np.abs(logits[:, position + 1 :] - base[:, position + 1 :]).max() > 1e-4


def test_generate_in_a_traced_function_equals_eager_generate():
    # A user's own tf.function: labels of unknown batch size, and guidance (whose eager
    # shortcut for label-free batches needs the label values).
    prior = tiny_prior()
    labels = tf.constant([0, 2, CLASSES], tf.int32)  # CLASSES: no condition
    traced = tf.function(
        lambda lab: prior.generate(lab, guidance_scale=2.0, top_k=4, seed=3),
        input_signature=[tf.TensorSpec([None], tf.int32)],
    )
    np.testing.assert_array_equal(
        traced(labels), prior.generate(labels.numpy(), guidance_scale=2.0, top_k=4, seed=3))
    unconditional = tf.constant([CLASSES] * 2, tf.int32)
    np.testing.assert_array_equal(
        traced(unconditional), prior.generate(unconditional.numpy(), guidance_scale=2.0,
                                              top_k=4, seed=3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="N >= 1"):
        traced(tf.zeros([0], tf.int32))


def test_condition_token_changes_every_position():
    prior = tiny_prior()
    codes = np.zeros((1, *GRID), np.int32)
    a, b = (prior.logits(codes, np.array([c], np.int32)).numpy() for c in (0, 1))
    assert (np.abs(a - b).reshape(-1, K).max(axis=-1) > 1e-5).all()


@pytest.mark.parametrize(
    "options",
    [{"top_k": 1}, {"temperature": 1.0}, {"temperature": 0.7, "top_k": 5, "guidance_scale": 2.0}],
)
def test_cached_sampling_equals_uncached(options):
    prior = tiny_prior()
    labels = [0, 1, 2, CLASSES]
    cached = prior.generate(labels, seed=3, **options)
    uncached = prior.generate(labels, seed=3, use_cache=False, **options)
    np.testing.assert_array_equal(cached, uncached)


def test_fixed_seed_reproduces_and_other_seeds_differ():
    prior = tiny_prior()
    first = prior.generate([0, 1, 2], seed=7).numpy()
    assert first.dtype == np.int32 and first.shape == (3, *GRID)
    assert first.min() >= 0 and first.max() < K
    np.testing.assert_array_equal(first, prior.generate([0, 1, 2], seed=7))
    assert not np.array_equal(first, prior.generate([0, 1, 2], seed=8))


def test_the_condition_decides_the_samples(trained):
    prior, patterns = trained["prior"], trained["patterns"]
    labels = np.repeat(np.arange(CLASSES, dtype=np.int32), 3)
    codes = prior.generate(labels, seed=0, top_k=1).numpy()
    np.testing.assert_array_equal(codes, patterns[labels])
    sampled = prior.generate(labels, seed=1, temperature=1.0).numpy()
    assert (sampled == patterns[labels]).mean() > 0.9


def test_unconditional_and_guided_sampling(trained):
    prior, patterns = trained["prior"], trained["patterns"]
    codes = prior.generate(None, num_samples=6, seed=2, top_k=1).numpy()
    assert codes.shape == (6, *GRID)
    # With no condition the prior still draws one of the grids it learned.
    flat_patterns = patterns.reshape(CLASSES, -1)
    matches = [(flat_patterns == c.reshape(-1)).all(-1).any() for c in codes]
    assert np.mean(matches) >= 0.5
    none = prior.generate([CLASSES] * 6, seed=2, top_k=1).numpy()
    np.testing.assert_array_equal(codes, none)  # labels=None is the "no condition" id
    guided = prior.generate([1, 2], seed=4, guidance_scale=3.0).numpy()
    np.testing.assert_array_equal(guided, patterns[[1, 2]])


def test_completion_keeps_the_given_rows(trained):
    prior, patterns = trained["prior"], trained["patterns"]
    other = np.random.default_rng(5).integers(0, K, (2, *GRID), dtype=np.int32)
    for rows in (1, 2, GRID[0]):
        codes = prior.generate([0, 3], prefix=other[:, :rows], seed=rows).numpy()
        np.testing.assert_array_equal(codes[:, :rows], other[:, :rows])
    # A prefix of the class's own grid is completed into that grid.
    completed = prior.generate([2], prefix=patterns[2:3, :1], top_k=1).numpy()
    np.testing.assert_array_equal(completed[0], patterns[2])
    unconditional = prior.generate(None, prefix=other[:, :1], seed=0).numpy()
    np.testing.assert_array_equal(unconditional[:, :1], other[:, :1])


def test_bad_arguments_are_refused():
    prior = tiny_prior()
    with pytest.raises(ValueError, match="temperature"):
        prior.generate([0], temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        prior.generate([0], top_k=-1)
    for guidance in (float("nan"), float("inf")):  # gave all-zero or degenerate codes
        with pytest.raises(ValueError, match="guidance_scale.*finite"):
            prior.generate([0], guidance_scale=guidance)
    with pytest.raises(ValueError, match="int32"):  # wrapped around to seed 0
        prior.generate([0], seed=2**32)
    with pytest.raises(ValueError, match=r"\[0, 3\] or 4"):
        prior.generate([5])
    with pytest.raises(ValueError, match="num_samples"):
        prior.generate(None)
    with pytest.raises(ValueError, match=r"prefix.*\(N, r, 4\)"):
        prior.generate([0], prefix=np.zeros((1, 1, 3), np.int32))
    with pytest.raises(ValueError, match="agree"):
        prior.generate([0, 1], prefix=np.zeros((1, 1, 4), np.int32))
    with pytest.raises(ValueError, match="Codes must be in"):
        prior.logits(np.full((1, *GRID), K, np.int32), [0])
    for shape in [(2, GRID[0] + 1, GRID[1]), (2, 1, GRID[0] * GRID[1])]:  # same count, reshaped
        with pytest.raises(ValueError, match=r"grid_shape.*Received shape \(2, "):
            prior.logits(np.zeros(shape, np.int32), [0, 1])
    with pytest.raises(ValueError, match="3 labels for 2 grids"):
        prior.bits_per_image(np.zeros((2, *GRID), np.int32), [0, 1, 2])
    prior.compile(optimizer="adam")
    with pytest.raises(ValueError, match="grid_shape"):
        prior.fit(np.zeros((4, GRID[0], GRID[1] + 2), np.int32), np.arange(4) % 2, verbose=0)
    with pytest.raises(ValueError, match="divisible by `num_heads`"):
        tiny_prior(embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="grid_shape"):
        tiny_prior(grid_shape=(3,))


def test_numpy_scalars_are_accepted_as_sampling_arguments():
    prior = tiny_prior()
    plain = prior.generate([0, 1], temperature=0.9, top_k=5, guidance_scale=2.0, seed=3)
    numpy = prior.generate([0, 1], temperature=np.float32(0.9), top_k=np.int64(5),
                           guidance_scale=np.float32(2.0), seed=np.int64(3))
    np.testing.assert_array_equal(plain.numpy(), numpy.numpy())


def test_a_top_k_beyond_the_codebook_keeps_every_code():
    prior = tiny_prior()
    every = prior.generate([0, 1, 2], seed=4).numpy()
    for k in (K, K + 1, 2**31, 2**32 + 1):  # 2**32 + 1 wrapped to int32 1: greedy codes
        np.testing.assert_array_equal(prior.generate([0, 1, 2], top_k=k, seed=4).numpy(), every)


def test_fit_accepts_a_dataset_of_int64_pairs():
    prior = tiny_prior()
    prior.compile(optimizer="adam")
    codes = class_patterns()[np.arange(8) % CLASSES]
    dataset = tf.data.Dataset.from_tensor_slices(
        (codes.astype(np.int64), (np.arange(8) % CLASSES).astype(np.int64))
    ).batch(4)
    logs = prior.fit(dataset, epochs=1, verbose=0, shuffle=False).history
    assert np.isfinite(logs["loss"][0])


def test_condition_dropout_draws_per_call_stateless():
    prior = tiny_prior(condition_dropout=0.5)
    labels = tf.zeros([1000], tf.int32)
    a, b = prior._drop_conditions(labels).numpy(), prior._drop_conditions(labels).numpy()
    assert 0.4 < (a == CLASSES).mean() < 0.6
    assert not np.array_equal(a, b)
    assert set(np.unique(a)) == {0, CLASSES}


def test_parameter_count_of_the_default_size():
    prior = zoo.TransformerPrior(num_embeddings=512, grid_shape=(7, 7), num_classes=10)
    assert 3e5 < prior.count_params() < 3e6  # the "few hundred thousand to few million"


def test_config_and_keras_round_trip_in_a_fresh_process(tmp_path):
    prior = tiny_prior(condition_dropout=0.2, seed=3)
    config = prior.get_config()
    again = zoo.TransformerPrior.from_config(json.loads(json.dumps(config)))
    assert again.get_config() == config
    codes = np.random.default_rng(0).integers(0, K, (2, *GRID), dtype=np.int32)
    labels = np.array([1, 2], np.int32)
    np.save(tmp_path / "codes.npy", codes)
    np.save(tmp_path / "logits.npy", prior.logits(codes, labels).numpy())
    np.save(tmp_path / "samples.npy", prior.generate(labels, seed=5, temperature=0.9).numpy())
    prior.save(tmp_path / "prior.keras")
    run_in_fresh_process(
        f"""
        import keras, numpy as np, zoo
        folder = {str(tmp_path)!r}
        prior = keras.saving.load_model(folder + "/prior.keras")
        assert isinstance(prior, zoo.TransformerPrior)
        assert prior.get_config() == {config!r}
        codes, labels = np.load(folder + "/codes.npy"), np.array([1, 2], np.int32)
        np.testing.assert_allclose(prior.logits(codes, labels), np.load(folder + "/logits.npy"),
                                   atol=1e-5)
        np.testing.assert_array_equal(prior.generate(labels, seed=5, temperature=0.9),
                                      np.load(folder + "/samples.npy"))
        """
    )


@pytest.mark.parametrize("scale", [0.0, 3.0])
def test_greedy_guided_codes_are_the_argmax_of_the_guided_logits(scale):
    # top_k=1 removes the noise: each code is the argmax of
    # u + scale * (c - u), u and c the prior's logits without and with the
    # condition given the codes before it (`logits` computes them all at once).
    prior = tiny_prior()
    for weight in prior.weights:  # spread-out logits ...
        weight.assign(np.random.default_rng(0).normal(0.0, 0.3, weight.shape))
    table = prior.embedding.tables["condition"].embeddings  # ... that the condition moves
    table.assign(np.random.default_rng(1).normal(0.0, 1.0, table.shape))
    labels = np.array([0, 1, 2, 3], np.int32)
    codes = prior.generate(labels, seed=0, top_k=1, guidance_scale=scale).numpy()
    conditional = prior.logits(codes, labels).numpy()
    unconditional = prior.logits(codes, None).numpy()
    guided = unconditional + scale * (conditional - unconditional)
    np.testing.assert_array_equal(codes, guided.argmax(-1))
    # The check has teeth: somewhere the guided argmax is not the conditional one.
    assert (guided.argmax(-1) != conditional.argmax(-1)).any()
    if scale == 0.0:  # no condition at all
        np.testing.assert_array_equal(codes, prior.generate([CLASSES] * 4, seed=0, top_k=1))


@pytest.mark.parametrize("options", [{"temperature": 1.0}, {"temperature": 0.5},
                                     {"temperature": 1.0, "top_k": 3}])
def test_first_codes_follow_the_softmax_of_the_scaled_logits(options):
    # The first code depends on the condition only, so its frequencies over many
    # draws must match softmax(logits / temperature), restricted to the top k.
    prior = tiny_prior()
    for weight in prior.weights:  # a peaked, non-uniform first distribution
        weight.assign(np.random.default_rng(1).normal(0.0, 0.5, weight.shape))
    n = 4000
    codes = prior.generate([1] * n, seed=11, **options).numpy()
    logits = prior.logits(codes[:1], np.array([1], np.int32)).numpy()[0, 0, 0]
    scaled = logits / options["temperature"]
    if "top_k" in options:
        scaled = np.where(scaled >= np.sort(scaled)[-options["top_k"]], scaled, -np.inf)
    expected = np.exp(scaled - scaled.max())
    expected /= expected.sum()
    assert expected.max() > 0.2 and (expected > 0.02).sum() >= 3  # a distribution to check
    frequencies = np.bincount(codes[:, 0, 0], minlength=K) / n
    np.testing.assert_allclose(frequencies, expected, atol=0.03)  # ~4 standard errors


@pytest.mark.parametrize("method", ["fit", "evaluate"])
def test_sample_weights_are_refused_not_ignored(method):
    prior = tiny_prior()
    prior.compile(optimizer="adam")
    h, w = TINY_PRIOR["grid_shape"]
    codes, labels = np.zeros((4, h, w), "int32"), np.zeros(4, "int32")
    with pytest.raises(ValueError, match=rf"`{method}` got sample_weight"):
        getattr(prior, method)(codes, labels, sample_weight=np.zeros(4), verbose=0)


def test_generate_of_no_labels_says_so():
    with pytest.raises(ValueError, match="`labels` hold no labels"):
        tiny_prior().generate([])


@pytest.mark.parametrize("grid", [(3,), (0, 3), (2, 3, 1)])
def test_the_grid_embedding_checks_its_grid_shape(grid):
    # The public layer took any tuple: (3,) failed with an IndexError, (0, 3) in
    # keras.layers.Embedding naming `input_dim`, and (2, 3, 1) was used as (2, 3).
    from zoo.transformer import ConditionedGridEmbedding

    with pytest.raises(ValueError, match=r"`grid_shape` must be \(h, w\).*Received"):
        ConditionedGridEmbedding(16, grid, num_classes=2, embed_dim=8)


def test_a_transformer_block_runs_under_its_own_dtype_policy():
    # Its sublayers took the global float32 policy, and the residual add of a
    # bfloat16 input and a float32 branch failed.
    from zoo.transformer import TransformerBlock

    block = TransformerBlock(num_heads=2, mlp_dim=16, dropout=0.1, dtype="mixed_bfloat16")
    outputs = block(np.ones((2, 5, 8), "float32"), training=True)
    assert outputs.dtype == "bfloat16"
    assert {layer.dtype_policy.name for layer in block._flatten_layers()} == {"mixed_bfloat16"}
