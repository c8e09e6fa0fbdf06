"""The exported `generate` and `generate_from_text` of a `zoo.ImageGenerator`.

`ImageGenerator.serving_signatures` adds them to its autoencoder's; they run the
same sampling loop (`zoo.sampling`) as `generate` in Python.
"""

import numpy as np
import tensorflow as tf

from zoo import sampling, serving

MAX_GENERATE_BATCH = 4096
"""Largest batch the exported `generate` signatures take, checked before sampling: the
loop's key/value cache grows with the batch (doubled by guidance), and the
autoencoders' own limit (85,598 images for the shipped ones) applies only at `decode`,
after the loop, so one request could otherwise take the server's memory."""


def generate_signatures(generator, use_cache: bool) -> dict:
    """`generate` and `generate_from_text` of `generator` (see `serving_signatures`)."""
    prior = generator.prior
    num_classes = prior.num_classes
    scalars = (
        tf.TensorSpec([], tf.int32, name="seed"),
        tf.TensorSpec([], tf.float32, name="temperature"),
        tf.TensorSpec([], tf.int32, name="top_k"),
        tf.TensorSpec([], tf.float32, name="guidance_scale"),
    )
    labels_spec = tf.TensorSpec([None], tf.int32, name="labels")
    prompts_spec = tf.TensorSpec([None], tf.string, name="prompts")

    def draw(labels, seed, temperature, top_k, guidance_scale):
        seed, temperature, top_k, guidance_scale = (
            serving.ensure_spec(value, spec)
            for value, spec in zip((seed, temperature, top_k, guidance_scale), scalars, strict=True)
        )
        checks = [
            tf.debugging.assert_less_equal(
                tf.shape(labels)[0], MAX_GENERATE_BATCH,
                message=f"At most {MAX_GENERATE_BATCH:,} images per generate request "
                "(the sampling loop's key/value cache grows with the batch); split it",
            ),
            tf.debugging.assert_non_negative(labels, message="labels must be >= 0"),
            tf.debugging.assert_less(
                labels, num_classes, message=f"labels must be < {num_classes} (class ids)"
            ),
            tf.debugging.assert_positive(temperature, message="temperature must be > 0"),
            tf.debugging.assert_all_finite(temperature, "temperature must be finite."),
            tf.debugging.assert_non_negative(top_k, message="top_k must be >= 0 (0: all codes)"),
            tf.debugging.assert_all_finite(guidance_scale, "guidance_scale must be finite."),
        ]
        with tf.control_dependencies(checks):
            labels = tf.identity(labels)
        length = prior.sequence_length
        prefix = tf.zeros(tf.stack([tf.shape(labels)[0], length]), tf.int32)
        arguments = (labels, seed, temperature, top_k, guidance_scale, prefix, 0)

        def sample(guided):
            return lambda: sampling.sample_codes(
                prior, *arguments, guided=guided, use_cache=use_cache
            )

        codes = tf.cond(tf.not_equal(guidance_scale, 1.0), sample(True), sample(False))
        codes = tf.reshape(codes, [-1, *prior.grid_shape])
        return {"images": generator.autoencoder.decode(codes), "codes": codes}

    def generate(labels, seed, temperature, top_k, guidance_scale):
        labels = serving.ensure_spec(labels, labels_spec)
        return draw(labels, seed, temperature, top_k, guidance_scale)

    def generate_from_text(prompts, seed, temperature, top_k, guidance_scale):
        labels = generator.graph_class_ids(serving.ensure_spec(prompts, prompts_spec))
        return draw(labels, seed, temperature, top_k, guidance_scale)

    example = {
        "seed": np.int32(0),
        "temperature": np.float32(1.0),
        "top_k": np.int32(0),
        "guidance_scale": np.float32(generator.guidance_scale),  # warms the served default
    }
    prompt = np.array([generator.class_names[0].encode()], dtype=object)
    # The sampling loop keeps its weights as variables: folded in as constants it
    # sampled slower (batch-1 p50 14.5 against 10.5 ms, BUILD_NOTES.md, Export).
    return {
        "generate": serving.Signature(
            generate, (labels_spec, *scalars), {"labels": np.zeros([1], np.int32), **example},
            freeze=False,
        ),
        "generate_from_text": serving.Signature(
            generate_from_text, (prompts_spec, *scalars), {"prompts": prompt, **example},
            freeze=False,
        ),
    }
