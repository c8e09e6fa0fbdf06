"""The sampling loop of `TransformerPrior`: one compiled function, used everywhere.

`sample_codes` runs inside a `tf.function`: `TransformerPrior.generate`
calls it, and the exported `generate` signatures are built from it, so
Python, the command line and TF Serving draw the same codes for the same
seed. It is a `tf.while_loop` over the h*w raster positions; with the
key/value cache each step runs one token through the network.

Randomness: the code at step `t` is `argmax(logits / temperature + g)`
(the Gumbel-max trick), with Gumbel noise `g` drawn statelessly from
`(seed, t)`. The noise depends only on the seed and the position, so the
cached and the uncached loops (and any two runs) draw the same samples.
"""

import weakref

import tensorflow as tf

_COMPILED = weakref.WeakKeyDictionary()


def filter_top_k(logits: tf.Tensor, top_k: tf.Tensor) -> tf.Tensor:
    """Keeps the `top_k` largest logits per row (ties at the k-th kept); 0 keeps all."""

    def truncate():
        k = tf.minimum(top_k, tf.shape(logits)[-1])
        kth = tf.math.top_k(logits, k=k, sorted=True).values[:, -1:]
        return tf.where(logits < kth, tf.constant(-float("inf"), logits.dtype), logits)

    return tf.cond(top_k > 0, truncate, lambda: logits)


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

    Inputs are not checked here (`TransformerPrior.generate` and the export
    check them).

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

    def choose(logits, step):
        logits = tf.cast(logits, tf.float32)
        if guided:
            conditional, unconditional = tf.split(logits, 2, axis=0)
            logits = unconditional + guidance_scale * (conditional - unconditional)
        logits = filter_top_k(logits / temperature, top_k)
        noise = gumbel_noise(tf.shape(logits), seed, step)
        sampled = tf.argmax(logits + noise, axis=-1, output_type=tf.int32)
        return tf.where(step < prefix_length, prefix[:, step], sampled)

    def write(codes, step, code):
        return tf.where(tf.range(length)[None, :] == step, code[:, None], codes)

    def stream(codes):
        return tf.concat([codes, codes], axis=0) if guided else codes

    codes = tf.zeros([batch, length], tf.int32)
    step = tf.constant(0, tf.int32)
    if use_cache:

        def body(step, codes, cache):
            previous = stream(codes)[:, tf.maximum(step - 1, 0)]
            logits, cache = prior.call_with_cache(previous, stream_conditions, cache, step)
            return step + 1, write(codes, step, choose(logits, step)), cache

        state = (step, codes, prior.empty_cache(tf.shape(stream_conditions)[0]))
    else:

        def body(step, codes):
            logits = prior.sequence_logits(stream(codes), stream_conditions)
            return step + 1, write(codes, step, choose(logits[:, step], step))

        state = (step, codes)
    state = tf.while_loop(lambda step, *_: step < length, body, state, maximum_iterations=length)
    return state[1]


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
