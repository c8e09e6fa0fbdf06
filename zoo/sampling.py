"""The sampling loop of `TransformerPrior`: one compiled function, used everywhere.

`sample_codes` runs inside a `tf.function`: `TransformerPrior.generate`
calls it (through `generate_codes`, which checks the Python arguments and
builds the conditions and the prefix), and the exported `generate`
signatures are built from it, so Python, the command line and TF Serving
draw the same codes for the same seed. It is a `tf.while_loop` over the
h*w raster positions; with the key/value cache each step runs one token
through the network.

Randomness: the code at step `t` is `argmax(logits / temperature + g)`
(the Gumbel-max trick), with Gumbel noise `g` drawn statelessly from
`(seed, t)`. The noise depends only on the seed and the position, so the
cached and the uncached loops (and any two runs) draw the same samples in
float32; under `mixed_bfloat16` the two loops round the attention
differently (a matrix product against a sum over the cache), and a few
codes differ.
"""

import weakref

import tensorflow as tf

from zoo import tensor_checks, validation
from zoo.transformer import CachedDecoder

_COMPILED = weakref.WeakKeyDictionary()



def _transpose_codes(codes: tf.Tensor) -> tf.Tensor:
    """Transposes a 2-D int32 code tensor, through float32 (exact for codes < 2**24).

    TensorFlow's oneDNN CPU build logs an "oneDNN supports DT_INT32 only on
    platforms with AVX-512" error line for an int32 Transpose in a graph;
    users would read it as a failure.
    """
    return tf.cast(tf.transpose(tf.cast(codes, tf.float32)), tf.int32)

def top_k_filter(top_k: tf.Tensor, num_codes: int):
    """A function keeping the `top_k` largest logits per row (ties at the k-th kept).

    `top_k` 0 keeps every logit. The returned function has no branch: with
    `top_k` 0 it takes a top-1 (cheap) and compares with -inf; its
    loop-invariant parts are computed here, once, outside the sampling loop.

    Args:
        top_k: int32 scalar >= 0.
        num_codes: int. The number of logits per row.

    Returns:
        A function from logits (B, num_codes) to logits with the rest at -inf.
    """
    k = tf.clip_by_value(top_k, 1, num_codes)
    inf = tf.constant(float("inf"), tf.float32)
    floor = tf.where(top_k > 0, 0.0, -inf)  # added to the k-th largest: -inf keeps all

    def apply(logits):
        kth = tf.math.top_k(logits, k=k, sorted=True).values[:, -1:]
        return tf.where(logits < kth + floor, -inf, logits)

    return apply


def gumbel_noise(shape, seed: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """Standard Gumbel noise from the stateless seed `(seed, step)`."""
    uniform = tf.random.stateless_uniform(
        shape, seed=tf.stack([seed, step]), minval=1e-20, maxval=1.0, dtype=tf.float32
    )
    return -tf.math.log(-tf.math.log(uniform))


def sample_codes(
    prior,
    conditions: tf.Tensor,
    seed: tf.Tensor,
    temperature: tf.Tensor,
    top_k: tf.Tensor,
    guidance_scale: tf.Tensor,
    prefix: tf.Tensor,
    prefix_length: tf.Tensor,
    guided: bool,
    use_cache: bool = True,
) -> tf.Tensor:
    """Samples code sequences from `prior`, position by position.

    Inputs are not checked here (`generate_codes` and the export check them).

    Args:
        prior: a `zoo.TransformerPrior`.
        conditions: int32 (B,). Class ids; `prior.num_classes` is "no condition".
        seed: int32 scalar.
        temperature: float32 scalar > 0.
        top_k: int32 scalar; 0 keeps every code.
        guidance_scale: float32 scalar. Classifier-free guidance: the logits
            are `u + guidance_scale * (c - u)`, with `c` conditional and `u`
            unconditional. Only used when `guided`.
        prefix: int32 (B, L). Codes kept at positions `< prefix_length`.
        prefix_length: int32 scalar in [0, L].
        guided: bool. Run the conditional and unconditional streams in one
            batch of 2B and mix their logits.
        use_cache: bool. Key/value cache (one token per step) or a full
            forward pass over the whole sequence at each step (for tests and
            the benchmark).

    Returns:
        int32 (B, L) codes in raster order.
    """
    length = prior.sequence_length
    batch = tf.shape(conditions)[0]
    if guided:
        unconditional = tf.fill([batch], tf.constant(prior.num_classes, tf.int32))
        stream_conditions = tf.concat([conditions, unconditional], axis=0)
    else:
        stream_conditions = conditions
    # Loop invariants, computed once: the loop body is a chain of small ops at batch 1.
    truncate = top_k_filter(top_k, prior.num_embeddings)
    noise_shape = tf.stack([_rows(conditions), prior.num_embeddings])
    prefix_columns = _transpose_codes(prefix)  # (L, B): one gather per step

    def choose(logits, step):
        if guided:
            conditional, unconditional = tf.split(logits, 2, axis=0)
            logits = unconditional + guidance_scale * (conditional - unconditional)
        logits = truncate(logits / temperature)
        noise = gumbel_noise(noise_shape, seed, step)
        sampled = tf.argmax(logits + noise, axis=-1, output_type=tf.int32)
        return tf.where(step < prefix_length, tf.gather(prefix_columns, step), sampled)

    def stream(codes):
        return tf.concat([codes, codes], axis=0) if guided else codes

    step = tf.constant(0, tf.int32)
    if use_cache:
        # The loop carries the next input tokens (B, d) and the cache; the
        # codes go to a TensorArray, one (B,) row per step.
        decoder = CachedDecoder(prior, _rows(stream_conditions))

        def body(step, tokens, cache, codes):
            logits, cache = decoder(tokens, cache, step)
            code = choose(logits, step)
            tokens = decoder.code_tokens(stream(code), step)
            return step + 1, tokens, cache, codes.write(step, code)

        codes = tf.TensorArray(tf.int32, size=length, element_shape=tf.TensorShape([None]))
        state = (step, decoder.condition_tokens(stream_conditions), decoder.empty_cache(), codes)
        state = tf.while_loop(
            lambda step, *_: step < length, body, state, maximum_iterations=length
        )
        return _transpose_codes(state[3].stack())  # (steps, B) -> (B, steps)

    def body(step, codes):
        logits = prior.sequence_logits(stream(codes), stream_conditions)
        code = choose(logits[:, step], step)
        return step + 1, tf.where(tf.range(length)[None, :] == step, code[:, None], codes)

    state = (step, tf.zeros([batch, length], tf.int32))
    state = tf.while_loop(lambda step, *_: step < length, body, state, maximum_iterations=length)
    return state[1]


def _rows(tensor):
    """The first dimension of `tensor`: an int when static (shapes stay known in the loop)."""
    return tensor.shape[0] if tensor.shape[0] is not None else tf.shape(tensor)[0]


def compiled_sampler(prior, guided: bool, use_cache: bool = True):
    """`sample_codes` for `prior` as a `tf.function`, traced once per `(guided, use_cache)`.

    Its arguments are the tensors of `sample_codes`, in order, with any
    batch size; the functions are kept outside the model (TensorFlow would
    otherwise track them as part of it).
    """
    functions = _COMPILED.setdefault(prior, {})
    if (guided, use_cache) not in functions:
        scalar, real = tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32)
        codes = tf.TensorSpec([None, prior.sequence_length], tf.int32)
        signature = [tf.TensorSpec([None], tf.int32), scalar, real, scalar, real, codes, scalar]

        def run(conditions, seed, temperature, top_k, guidance_scale, prefix, prefix_length):
            return sample_codes(
                prior, conditions, seed, temperature, top_k, guidance_scale, prefix,
                prefix_length, guided=guided, use_cache=use_cache,
            )  # fmt: skip

        functions[(guided, use_cache)] = tf.function(run, input_signature=signature)
    return functions[(guided, use_cache)]


def generate_codes(
    prior, labels, *, temperature, top_k, guidance_scale, seed, prefix, num_samples, use_cache
) -> tf.Tensor:
    """`prior.generate(...)`: checks the arguments and runs the compiled loop on them.

    The arguments (every one given: the defaults are `generate`'s), the
    result and the errors are those of `TransformerPrior.generate`, which
    calls this.
    """
    temperature = validation.positive_float("temperature", temperature)
    top_k = validation.non_negative_int("top_k", 0 if top_k is None else top_k)
    top_k = min(top_k, prior.num_embeddings)  # the same codes; an int32 would wrap a larger k
    guidance_scale = validation.finite_float("guidance_scale", guidance_scale)
    seed = validation.check_seed(seed)
    h, w = prior.grid_shape
    batch = None
    if prefix is not None:
        prefix = tensor_checks.check_codes(prefix, prior.num_embeddings)
        if prefix.shape[2] != w or prefix.shape[1] > h:
            raise ValueError(
                f"`prefix` must have shape (N, r, {w}) with r <= {h}. "
                f"Received shape {tuple(prefix.shape)}."
            )
        batch = prefix.shape[0]
    elif num_samples is not None:
        batch = validation.positive_int("num_samples", num_samples)
    conditions = tensor_checks.condition_ids(labels, prior.num_classes, batch)
    count = conditions.shape[0]  # None: labels of a batch size a traced function does not know
    if count == 0 or None not in (count, batch) and count != batch:
        raise ValueError(
            f"`labels`, `prefix` and `num_samples` must agree on N >= 1. Received: "
            f"{count} labels, N={batch}."
        )
    if count is None:
        count = tf.shape(conditions)[0]
        checks = [tf.debugging.assert_positive(count, message="generate needs N >= 1 labels")]
        if prefix is not None:
            checks.append(tf.debugging.assert_equal(
                count, tf.shape(prefix)[0], message="`labels` and `prefix` must agree on N"))
        with tf.control_dependencies(checks):
            conditions = tf.identity(conditions)
    if prefix is None:
        flat, prefix_length = tf.zeros([count, prior.sequence_length], tf.int32), 0
    else:
        prefix_length = int(prefix.shape[1]) * w
        flat = tf.reshape(prefix, [count, prefix_length])
        flat = tf.pad(flat, [[0, 0], [0, prior.sequence_length - prefix_length]])
    # Eagerly, a batch without any condition skips the guided (2N) loop; in a traced
    # function the labels are not known, and the guided loop gives the same codes
    # for them (u + s * (u - u) = u), at twice the cost.
    guided = guidance_scale != 1.0 and (
        not tf.executing_eagerly() or bool(tf.reduce_any(conditions < prior.num_classes))
    )
    codes = compiled_sampler(prior, guided, use_cache)(
        conditions,
        tf.constant(seed, tf.int32),
        tf.constant(temperature, tf.float32),
        tf.constant(top_k, tf.int32),
        tf.constant(guidance_scale, tf.float32),
        flat,
        tf.constant(prefix_length, tf.int32),
    )
    return tf.reshape(codes, [count, h, w])
