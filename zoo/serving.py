"""Serving signatures: what an exported SavedModel of a zoo model answers.

Every exportable zoo model declares its own signatures with a method
`serving_signatures()` that returns a dict `name -> Signature`. A `Signature`
holds the function (keyword tensors in, a dict of named tensors out), its
input `TensorSpec`s and one small valid example request, which becomes the
model's TF Serving warm-up request. `zoo.export` only traces and writes what
a model declares, so a new kind of model touches its own file only.

The builders below are the parts the autoencoders share: images in and out
(`image_signatures`), discrete codes (`code_signatures`), continuous latents
(`latent_signatures`) and draws from a prior (`sample_signature`).
"""

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Signature:
    """One serving signature of a model.

    Attributes:
        function: Callable. Takes keyword tensors named like `input_specs`
            and returns a dict of named output tensors.
        input_specs: tuple of named `tf.TensorSpec`s, the signature's inputs.
        example: dict. One small valid request (input name -> numpy value);
            exports write it to TF Serving's warm-up file.
        freeze: bool. Whether an export may fold the weights into this
            signature's graph as constants (`zoo.export.export_model`); `False`
            keeps them as variables. Defaults to `True`.
    """

    function: Callable[..., dict]
    input_specs: tuple[tf.TensorSpec, ...]
    example: dict[str, np.ndarray]
    freeze: bool = True


def ensure_spec(tensor, spec: tf.TensorSpec) -> tf.Tensor:
    """Checks the runtime shape of a served input against its spec.

    A SignatureDef records shapes but neither `tf.saved_model.load` nor TF
    Serving checks them when a request arrives, so without this a wrong
    channel count fails deep inside a convolution. The error reads
    "Shape of tensor images [1,28,28,3] is not compatible with expected
    shape [?,28,28,1]." (`InvalidArgumentError`, TF Serving's
    INVALID_ARGUMENT). An empty batch is refused too: TensorFlow's CPU
    convolutions fail on it with an unrelated message.

    Args:
        tensor: the input tensor of a request.
        spec: `tf.TensorSpec`. The declared input, whose name is used in errors.

    Returns:
        The checked tensor.
    """
    tensor = tf.ensure_shape(tensor, spec.shape, name=spec.name)
    if spec.shape.rank:
        check = tf.debugging.assert_positive(
            tf.shape(tensor)[0],
            message=f"`{spec.name}` holds no examples (batch size 0); send at least one",
        )
        with tf.control_dependencies([check]):
            tensor = tf.identity(tensor)
    return tensor


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_to_channels(data: tf.Tensor, channels: int) -> tf.Tensor:
    """One PNG, JPEG, GIF (first frame), BMP or WebP file -> float32 (H, W, channels) in [0, 1].

    PNG and JPEG are decoded straight to `channels` (their decoders convert).
    The GIF, BMP and WebP decoders refuse `channels=1` ("channels must be 0 or 3
    for GIF"), so those files are decoded as stored and converted here: an
    alpha channel is dropped, RGB becomes luma for a grayscale model, gray is
    repeated for an RGB one.
    """
    png_or_jpeg = tf.logical_or(
        tf.io.is_jpeg(data), tf.equal(tf.strings.substr(data, 0, 8), PNG_SIGNATURE)
    )

    def decode_then_convert():
        # uint8 first: the WebP decoder refuses dtype=float32.
        image = tf.io.decode_image(data, expand_animations=False)
        image = tf.image.convert_image_dtype(image, tf.float32)
        have = tf.shape(image)[-1]
        if channels == 1:
            image = tf.cond(have >= 3, lambda: tf.image.rgb_to_grayscale(image[..., :3]),
                            lambda: image[..., :1])
        else:
            image = tf.cond(have >= 3, lambda: image[..., :3],
                            lambda: tf.image.grayscale_to_rgb(image[..., :1]))
        return tf.ensure_shape(image, [None, None, channels])

    def decode_direct():
        return tf.ensure_shape(tf.io.decode_image(
            data, channels=channels, dtype=tf.float32, expand_animations=False
        ), [None, None, channels])

    return tf.cond(png_or_jpeg, decode_direct, decode_then_convert)


def images_to_png(images: tf.Tensor) -> tf.Tensor:
    """Float images (B, H, W, C) in [0, 1] -> string tensor (B,) of PNG bytes."""
    pixels = tf.image.convert_image_dtype(images, tf.uint8, saturate=True)
    return tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.TensorSpec([], tf.string))


def images_spec(model) -> tf.TensorSpec:
    """The `images` input at the model's nominal `image_shape`, any batch size."""
    return tf.TensorSpec([None, *model.image_shape], tf.float32, name="images")


def _example_images(model) -> np.ndarray:
    return np.full((1, *model.image_shape), 0.5, np.float32)


IMAGE_FILE_CHANNELS = (1, 3)
"""The channel counts that image files are read as (gray, RGB): the models that
get `reconstruct_image_bytes`."""


def image_signatures(model) -> dict[str, Signature]:
    """`serving_default` (images -> reconstructions) and `reconstruct_image_bytes`.

    Images are fixed at the model's nominal `image_shape` (batch size `None`):
    clients get a clear shape error instead of a silently resized answer, and
    the warm-up requests exercise the shape that is served. Encoded image
    files are decoded, resized to that shape and clipped to [0, 1].
    `reconstruct_image_bytes` is declared only for gray and RGB models
    (`IMAGE_FILE_CHANNELS`): files do not decode to other channel counts, and
    TF Serving does not load a version whose warm-up request fails.
    """
    height, width, channels = model.image_shape
    spec = images_spec(model)
    bytes_spec = tf.TensorSpec([None], tf.string, name="image_bytes")

    def serving_default(images):
        return {"reconstructions": model(ensure_spec(images, spec), training=False)}

    def decode_one(data):
        image = tf.image.resize(decode_to_channels(data, channels), [height, width], antialias=True)
        return tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), [height, width, channels])

    def reconstruct_image_bytes(image_bytes):
        images = tf.map_fn(
            decode_one,
            ensure_spec(image_bytes, bytes_spec),
            fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32),
        )
        return {"png_bytes": images_to_png(model(images, training=False))}

    signatures = {
        "serving_default": Signature(serving_default, (spec,), {"images": _example_images(model)})
    }
    if channels in IMAGE_FILE_CHANNELS:
        png = tf.io.encode_png(np.full((height, width, channels), 128, np.uint8)).numpy()
        signatures["reconstruct_image_bytes"] = Signature(
            reconstruct_image_bytes, (bytes_spec,), {"image_bytes": np.array([png], dtype=object)}
        )
    return signatures


def code_signatures(model) -> dict[str, Signature]:
    """`encode` (images -> int32 `codes`) and `decode` (codes -> images) of a discrete model."""
    spec = images_spec(model)
    codes_spec = tf.TensorSpec([None, *model.latent_grid], tf.int32, name="codes")

    def encode(images):
        return {"codes": model.encode(ensure_spec(images, spec))}

    def decode(codes):
        return {"images": model.decode(ensure_spec(codes, codes_spec))}

    return {
        "encode": Signature(encode, (spec,), {"images": _example_images(model)}),
        "decode": Signature(
            decode, (codes_spec,), {"codes": np.zeros((1, *model.latent_grid), np.int32)}
        ),
    }


def latent_signatures(model, encode_outputs: Callable[[tf.Tensor], dict]) -> dict[str, Signature]:
    """`encode` and `decode` of a continuous model with `latent_channels` channels.

    Args:
        model: a continuous zoo model (AE, VAE).
        encode_outputs: maps checked images to the dict `encode` returns
            (`{"latents": ...}` for the AE, `{"mean", "log_variance"}` for the VAE).
    """
    spec = images_spec(model)
    latent_shape = (*model.latent_grid, model.latent_channels)
    latents_spec = tf.TensorSpec([None, *latent_shape], tf.float32, name="latents")

    def encode(images):
        return encode_outputs(ensure_spec(images, spec))

    def decode(latents):
        return {"images": model.decode(ensure_spec(latents, latents_spec))}

    return {
        "encode": Signature(encode, (spec,), {"images": _example_images(model)}),
        "decode": Signature(
            decode, (latents_spec,), {"latents": np.zeros((1, *latent_shape), np.float32)}
        ),
    }


def sample_signature(draw: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]) -> dict[str, Signature]:
    """`sample`: `num_samples` and `seed` (int32 scalars) -> `images`.

    Args:
        draw: maps `(num_samples, seed)` int32 scalar tensors to images and
            checks the count. The models pass the function behind their own
            `sample`, so the SavedModel draws exactly what
            `model.sample(n, seed)` returns.
    """
    num_spec = tf.TensorSpec([], tf.int32, name="num_samples")
    seed_spec = tf.TensorSpec([], tf.int32, name="seed")

    def sample(num_samples, seed):
        # `draw` checks the count (>= 1 and within the model's batch limit).
        num_samples = ensure_spec(num_samples, num_spec)
        return {"images": draw(num_samples, ensure_spec(seed, seed_spec))}

    return {
        "sample": Signature(
            sample, (num_spec, seed_spec), {"num_samples": np.int32(1), "seed": np.int32(0)}
        )
    }
