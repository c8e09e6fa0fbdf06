"""Where a sampling step's time goes: `python -m bench.generation_step [--batch=256]`.

In this process (not through a SavedModel; `bench.generation` measures
that), for a default-size `ImageGenerator` (the one `bench.generation`
exports): the whole sampling loop (`zoo.sampling.compiled_sampler`, 49
steps with the key/value cache) and the decoder pass, then the parts of a
step, each run for the grid's positions in a `tf.while_loop` of its own
(one call: timing each step as a Python call would add the call's overhead
to every small part) on random tensors of the step's shapes: one block's
attention over a cache growing from 1 to L positions, its four matmuls,
the MLP's exact GELU, a LayerNorm, and the head with the Gumbel-max choice.
Parts are timed alone, so they do not add up exactly to a step; the loop
timed without one part at a time (`ABLATIONS`) gives each part's share of
the real loop. Prints a table; medians of `--calls` calls.
"""

import argparse
import contextlib
import math
import time

import numpy as np
import tensorflow as tf

from bench import common


def _median_ms(fn, calls: int) -> float:
    fn()  # trace and warm up
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def _parts(batch: int, prior) -> dict:
    """One-step parts as functions of the step `i`, on random tensors of the step's shapes.

    Each part's input depends on the loop's carried value, so that the loop
    cannot hoist it; the attention reads the first `i + 1` rows of a full
    cache, as the cached step does.
    """
    dim, heads, length = prior.embed_dim, prior.num_heads, prior.sequence_length
    head_dim, codes = dim // heads, prior.num_embeddings
    x = tf.random.normal([batch, dim])
    query = tf.random.normal([batch, heads, head_dim])
    keys = tf.random.normal([length, batch, heads, head_dim])
    values = tf.random.normal([length, batch, heads, head_dim])
    weights = {
        "qkv": tf.random.normal([dim, 3 * dim]),
        "projection": tf.random.normal([dim, dim]),
        "mlp_in": tf.random.normal([dim, prior.mlp_dim]),
        "mlp_out": tf.random.normal([prior.mlp_dim, dim]),
        "head": tf.random.normal([dim, codes]),
    }

    def attention(i, carry):  # the cached step's formula (zoo/transformer.py)
        scores = tf.reduce_sum(keys[: i + 1] * (query + carry), axis=-1) / math.sqrt(head_dim)
        scores = tf.exp(scores - tf.reduce_max(scores, axis=0))
        probs = scores / tf.reduce_sum(scores, axis=0)
        return tf.reduce_sum(probs[..., None] * values[: i + 1], axis=0)

    def matmuls(i, carry):
        inputs = x + carry
        hidden = tf.matmul(inputs, weights["mlp_in"])
        return (
            tf.reduce_sum(tf.matmul(inputs, weights["qkv"]))
            + tf.reduce_sum(tf.matmul(inputs, weights["projection"]))
            + tf.reduce_sum(tf.matmul(hidden, weights["mlp_out"]))
        )

    def mlp_in(i, carry):
        return tf.matmul(x + carry, weights["mlp_in"])

    def mlp_in_gelu(i, carry):
        return tf.nn.gelu(tf.matmul(x + carry, weights["mlp_in"]), approximate=False)

    def layer_norm(i, carry):
        inputs = x + carry
        mean = tf.reduce_mean(inputs, -1, keepdims=True)
        variance = tf.reduce_mean(tf.math.squared_difference(inputs, mean), -1, keepdims=True)
        return (inputs - mean) * tf.math.rsqrt(variance + 1e-5)

    def head_and_choice(i, carry):  # top_k 0 keeps every logit, as served by default
        logits = tf.matmul(x + carry, weights["head"])
        kth = tf.math.top_k(logits, k=1).values[:, -1:]
        logits = tf.where(logits < kth - float("inf"), -float("inf"), logits)
        uniform = tf.random.stateless_uniform([batch, codes], [0, i], minval=1e-20, maxval=1.0)
        return tf.argmax(logits - tf.math.log(-tf.math.log(uniform)), -1)

    return {
        f"attention, one block (1 to {length} cached positions)": attention,
        "qkv, projection and MLP matmuls, one block": matmuls,
        "MLP input matmul alone": mlp_in,
        "MLP input matmul + exact GELU": mlp_in_gelu,
        "LayerNorm": layer_norm,
        "head + top-k + Gumbel-max choice": head_and_choice,
    }


def _in_loop(part, steps: int):
    """`part(i, carry)` for i in [0, steps) in one `tf.while_loop`: no per-step call overhead."""

    @tf.function
    def loop():
        def body(i, carry):
            out = part(i, carry)
            return i + 1, 1e-30 * tf.cast(tf.reduce_mean(out), tf.float32)

        return tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), tf.constant(0.0)))[1]

    return loop


def _without(part: str):
    """A context in which the cached sampling step skips `part` (the loop's share of it).

    `attention`: each block returns its value projection instead of attending
    (the QKV matmul stays); `gelu`: the MLP's activation is the identity;
    `layer_norm`: every LayerNorm is the identity; `noise`: no Gumbel noise
    (argmax of the logits). Only for timing: the samples are wrong.
    """
    from unittest import mock

    from zoo import sampling, transformer

    class Decoder(transformer.CachedDecoder):
        def __init__(self, prior, rows):
            super().__init__(prior, rows)
            if part == "gelu":
                for block in self.blocks:
                    kernel, bias, _ = block["mlp_in"]
                    block["mlp_in"] = (kernel, bias, tf.identity)

        def _attention(self, x, weights, cache, number, index, seen, view):
            if part != "attention":
                return super()._attention(x, weights, cache, number, index, seen, view)
            return tf.split(transformer._dense(x, weights["qkv"]), 3, axis=1)[2], cache

    patches = [mock.patch.object(sampling, "CachedDecoder", Decoder)]
    if part == "layer_norm":
        patches.append(mock.patch.object(transformer, "_layer_norm", lambda x, *_: x))
    if part == "noise":
        patches.append(mock.patch.object(
            sampling, "gumbel_noise", lambda shape, seed, step: tf.zeros(shape)))
    stack = contextlib.ExitStack()
    for patch in patches:
        stack.enter_context(patch)
    return stack


ABLATIONS = {
    "attention": "the attention over the cache (QKV matmul kept)",
    "gelu": "the MLP's exact GELU",
    "layer_norm": "every LayerNorm",
    "noise": "the Gumbel noise",
}


def run(batch: int = 256, calls: int = 10) -> common.Table:
    """Times the loop, the decoder and the step's parts; returns a `common.Table`."""
    from bench.generation import build_generator
    from zoo import sampling

    generator = build_generator()
    prior, autoencoder = generator.prior, generator.autoencoder
    h, w = prior.grid_shape
    loop = sampling.compiled_sampler(prior, guided=False)
    inputs = (
        tf.zeros([batch], tf.int32), tf.constant(0), tf.constant(1.0), tf.constant(0),
        tf.constant(1.0), tf.zeros([batch, prior.sequence_length], tf.int32), tf.constant(0),
    )  # fmt: skip
    codes = tf.reshape(loop(*inputs), [batch, h, w])
    decode = tf.function(autoencoder.decode)
    table = common.Table(
        f"Generation step at batch {batch} (in process, median of {calls} calls)",
        ["what", "ms per call", "ms per step"],
    )
    loop_ms = _median_ms(lambda: loop(*inputs).numpy(), calls)
    decode_ms = _median_ms(lambda: decode(codes).numpy(), calls)
    table.add("sampling loop (cached)", f"{loop_ms:.1f}", f"{loop_ms / prior.sequence_length:.2f}")
    table.add("decoder pass", f"{decode_ms:.1f}", "")
    for part, name in ABLATIONS.items():
        with _without(part):  # traced inside the patches; the patches end before timing
            variant = tf.function(lambda *args: sampling.sample_codes(prior, *args, guided=False))
            variant(*inputs)
        variant_ms = _median_ms(lambda f=variant: f(*inputs).numpy(), calls)
        table.add(f"loop without {name}", f"{variant_ms:.1f}",
                  f"{variant_ms / prior.sequence_length:.2f}")
    steps = prior.sequence_length
    for name, part in _parts(batch, prior).items():
        looped = _in_loop(part, steps)
        part_ms = _median_ms(lambda f=looped: f().numpy(), calls)
        table.add(f"part: {name}", f"{part_ms:.1f}", f"{part_ms / steps:.3f}")
    table.notes.append(
        f"{prior.num_layers} blocks of width {prior.embed_dim}, {prior.sequence_length} steps; "
        f"images/s of loop + decoder: {1000 * batch / (loop_ms + decode_ms):.0f}. "
        f"CPU: {common.cpu_model()}; load before: {common.loadavg()}."
    )
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args(argv)
    print(run(args.batch, args.calls).markdown())


if __name__ == "__main__":
    main()
