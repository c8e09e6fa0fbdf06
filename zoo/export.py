"""Export a zoo model as a versioned SavedModel that TF Serving loads.

`export_model(model, "exports/dvae")` writes `exports/dvae/<version>/` (the
layout of TF Serving's `--model_base_path`) and `exports/dvae/<version>.keras`
beside it. The SavedModel holds only TensorFlow graphs and weights: it runs
with `tf.saved_model.load` (or `tensorflow_model_server`) and no import of
this project. See `docs/SERVING.md` for the signatures and how to serve them.
"""

import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
"""Where TF Serving looks for warm-up requests, relative to a version folder."""

SIGNATURES = ("serving_default", "encode", "decode", "sample", "reconstruct_image_bytes")
"""Every signature name an export may have (`sample` only for VAE and dVAE)."""


def _family(model) -> str:
    """Names the latent interface of `model`: "vae", "discrete" or "continuous"."""
    if hasattr(model, "encode_distribution"):
        return "vae"
    if hasattr(model, "num_embeddings"):
        return "discrete"
    if hasattr(model, "latent_channels"):
        return "continuous"
    raise TypeError(
        "Expected a zoo model (AE, VAE, VQVAE or DVAE). "
        f"Received: {type(model).__name__}, which has no `num_embeddings` or `latent_channels`."
    )


def _images_to_png(images: tf.Tensor) -> tf.Tensor:
    """Float images (B, H, W, C) in [0, 1] -> string tensor (B,) of PNG bytes."""
    pixels = tf.image.convert_image_dtype(images, tf.uint8, saturate=True)
    return tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.TensorSpec([], tf.string))


def _ensure(tensor: tf.Tensor, spec: tf.TensorSpec) -> tf.Tensor:
    """Checks the runtime shape of a served input against its spec.

    A SignatureDef records shapes but neither `tf.saved_model.load` nor TF
    Serving checks them when a request arrives, so without this a wrong
    channel count fails deep inside a convolution. The error reads
    "Shape of tensor images [1,28,28,3] is not compatible with expected
    shape [?,28,28,1]." (`InvalidArgumentError`, TF Serving's
    INVALID_ARGUMENT). An empty batch is refused too: TensorFlow's CPU
    convolutions fail on it with an unrelated message.
    """
    tensor = tf.ensure_shape(tensor, spec.shape, name=spec.name)
    if spec.shape.rank:
        check = tf.debugging.assert_positive(
            tf.shape(tensor)[0],
            message=f"`{spec.name}` holds no examples (batch size 0); send at least one.",
        )
        with tf.control_dependencies([check]):
            tensor = tf.identity(tensor)
    return tensor


def build_signatures(model) -> dict:
    """Builds the serving functions of `model` and their input signatures.

    Images are fixed at the model's nominal `image_shape` (batch size `None`):
    TF Serving clients get a clear shape error instead of a silently resized
    answer, the warm-up requests exercise the shape that is served, and
    `sample` draws at that size.

    Args:
        model: A zoo model (`AE`, `VAE`, `VQVAE` or `DVAE`).

    Returns:
        A dict `signature name -> (function, input TensorSpecs)`; every
        function takes keyword tensors named like its specs and returns a dict
        of named outputs.
    """
    family = _family(model)
    height, width, channels = model.image_shape
    grid_h, grid_w = model.latent_grid
    images_spec = tf.TensorSpec([None, height, width, channels], tf.float32, name="images")
    bytes_spec = tf.TensorSpec([None], tf.string, name="image_bytes")

    def serving_default(images):
        images = _ensure(images, images_spec)
        return {"reconstructions": model(images, training=False)}

    def reconstruct_image_bytes(image_bytes):
        image_bytes = _ensure(image_bytes, bytes_spec)

        def decode_one(data):
            image = tf.io.decode_image(
                data, channels=channels, dtype=tf.float32, expand_animations=False
            )
            image = tf.image.resize(image, [height, width], antialias=True)
            return tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), [height, width, channels])

        images = tf.map_fn(
            decode_one,
            image_bytes,
            fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32),
        )
        return {"png_bytes": _images_to_png(model(images, training=False))}

    signatures = {
        "serving_default": (serving_default, [images_spec]),
        "reconstruct_image_bytes": (reconstruct_image_bytes, [bytes_spec]),
    }
    scalar = [
        tf.TensorSpec([], tf.int32, name="num_samples"),
        tf.TensorSpec([], tf.int32, name="seed"),
    ]

    def check_sample_inputs(num_samples, seed):
        num_samples = _ensure(num_samples, scalar[0])
        check = tf.debugging.assert_positive(num_samples, message="num_samples must be >= 1.")
        with tf.control_dependencies([check]):
            return tf.identity(num_samples), _ensure(seed, scalar[1])

    if family == "discrete":
        latent_spec = tf.TensorSpec([None, grid_h, grid_w], tf.int32, name="codes")

        def encode(images):
            return {"codes": model.encode(_ensure(images, images_spec))}

        def decode(codes):
            return {"images": model.decode(_ensure(codes, latent_spec))}

        def sample(num_samples, seed):
            num_samples, seed = check_sample_inputs(num_samples, seed)
            # The same draw as `DVAE.sample`, with the seed as a tensor.
            codes = tf.random.stateless_uniform(
                tf.stack([num_samples, grid_h, grid_w]),
                seed=tf.stack([seed, 0]),
                maxval=model.num_embeddings,
                dtype=tf.int32,
            )
            return {"images": model.decode(codes)}

        has_sample = hasattr(model, "sample")
    else:
        latent_spec = tf.TensorSpec(
            [None, grid_h, grid_w, model.latent_channels], tf.float32, name="latents"
        )

        def encode(images):
            images = _ensure(images, images_spec)
            if family == "vae":
                mean, log_variance = model.encode_distribution(images)
                return {"mean": mean, "log_variance": log_variance}
            return {"latents": model.encode(images)}

        def decode(latents):
            return {"images": model.decode(_ensure(latents, latent_spec))}

        def sample(num_samples, seed):
            num_samples, seed = check_sample_inputs(num_samples, seed)
            # The same draw as `VAE.sample`, with the seed as a tensor.
            z = tf.random.stateless_normal(
                tf.stack([num_samples, grid_h, grid_w, model.latent_channels]),
                seed=tf.stack([seed, 0]),
            )
            return {"images": model.decode(z)}

        has_sample = family == "vae"
    signatures["encode"] = (encode, [images_spec])
    signatures["decode"] = (decode, [latent_spec])
    if has_sample:
        signatures["sample"] = (sample, scalar)
    return {name: signatures[name] for name in SIGNATURES if name in signatures}


def build_archive(model) -> keras.export.ExportArchive:
    """Returns a `keras.export.ExportArchive` holding every signature of `model`."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, specs) in build_signatures(model).items():
        archive.add_endpoint(name, fn, input_signature=specs)
    return archive


def warmup_requests(model, model_name: str = "model") -> list:
    """One small `PredictRequest` per signature, for TF Serving's warm-up file.

    Args:
        model: A zoo model.
        model_name: str. `model_spec.name` of the requests. Defaults to `"model"`.

    Returns:
        A list of `tensorflow_serving.apis.predict_pb2.PredictRequest`.
    """
    from tensorflow_serving.apis import predict_pb2

    height, width, channels = model.image_shape
    grid_h, grid_w = model.latent_grid
    images = np.full((1, height, width, channels), 0.5, np.float32)
    png = tf.io.encode_png(np.full((height, width, channels), 128, np.uint8)).numpy()
    inputs = {
        "serving_default": {"images": images},
        "encode": {"images": images},
        "reconstruct_image_bytes": {"image_bytes": np.array([png], dtype=object)},
    }
    if _family(model) == "discrete":
        inputs["decode"] = {"codes": np.zeros((1, grid_h, grid_w), np.int32)}
    else:
        shape = (1, grid_h, grid_w, model.latent_channels)
        inputs["decode"] = {"latents": np.zeros(shape, np.float32)}
    names = build_signatures(model)
    if "sample" in names:
        inputs["sample"] = {"num_samples": np.int32(1), "seed": np.int32(0)}
    requests = []
    for name in names:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = name
        for key, value in inputs[name].items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        requests.append(request)
    return requests


def write_warmup_file(path: str, requests: list) -> None:
    """Writes `requests` as a TFRecord of `PredictionLog`s (TF Serving's warm-up format)."""
    from tensorflow_serving.apis import prediction_log_pb2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def existing_versions(export_base: str) -> list[int]:
    """Sorted integer versions under `export_base` (the folders TF Serving would load)."""
    if not os.path.isdir(export_base):
        return []
    return sorted(
        int(name)
        for name in os.listdir(export_base)
        if name.isdigit() and os.path.isdir(os.path.join(export_base, name))
    )


def export_model(
    model,
    export_base: str,
    version: int | None = None,
    keras_file: bool = True,
    model_name: str | None = None,
) -> str:
    """Exports `model` as SavedModel version `export_base/<version>/`.

    The export is atomic: everything is written into a temporary folder inside
    `export_base` (named `.tmp-...`, which TF Serving ignores because it is
    not an integer) and renamed into place, so a server watching
    `export_base` never sees a half-written version. If anything fails, the
    temporary folder is removed and no version appears. An existing version
    is never overwritten.

    The version folder holds the SavedModel with the signatures
    `serving_default`, `encode`, `decode`, `sample` (VAE and dVAE) and
    `reconstruct_image_bytes` (see `docs/SERVING.md`), and
    `assets.extra/tf_serving_warmup_requests`. With `keras_file=True` the
    Keras model is also saved as `export_base/<version>.keras` (beside the
    version folder, so TF Serving does not see it).

    Args:
        model: A zoo model (`AE`, `VAE`, `VQVAE` or `DVAE`).
        export_base: str. The model's base folder (TF Serving's
            `--model_base_path`); created if missing.
        version: int. The version to write. Defaults to one more than the
            largest existing version, or `1`.
        keras_file: bool. Also write `<version>.keras`. Defaults to `True`.
        model_name: str. `model_spec.name` of the warm-up requests.
            Defaults to the basename of `export_base`.

    Returns:
        The path of the version folder.

    Example:
    >>> model = zoo.DVAE()
    >>> path = export_model(model, "exports/dvae")  # "exports/dvae/1"
    >>> served = tf.saved_model.load(path)
    >>> codes = served.signatures["encode"](images=images)["codes"]
    """
    _family(model)
    export_base = os.fspath(export_base)
    if version is None:
        version = (existing_versions(export_base) or [0])[-1] + 1
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"`version` must be an integer >= 0. Received: version={version!r}")
    version = int(version)
    target = os.path.join(export_base, str(version))
    keras_target = os.path.join(export_base, f"{version}.keras")
    for path in (target, keras_target) if keras_file else (target,):
        if os.path.exists(path):
            raise FileExistsError(
                f"Version {version} already exists at {path!r}; exports are never overwritten. "
                f"Choose another `version` (existing: {existing_versions(export_base)}) "
                "or leave it unset for the next one."
            )
    if model_name is None:
        model_name = os.path.basename(os.path.normpath(os.path.abspath(export_base)))
    os.makedirs(export_base, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_base)
    keras_moved = False
    try:
        saved_model = os.path.join(tmp, "saved_model")
        build_archive(model).write_out(saved_model, verbose=False)
        write_warmup_file(
            os.path.join(saved_model, WARMUP_FILE), warmup_requests(model, model_name)
        )
        if keras_file:
            tmp_keras = os.path.join(tmp, "model.keras")
            model.save(tmp_keras)
            if os.path.exists(keras_target):
                raise FileExistsError(f"{keras_target!r} appeared during the export.")
            os.rename(tmp_keras, keras_target)
            keras_moved = True
        if os.path.exists(target):
            raise FileExistsError(f"Version folder {target!r} appeared during the export.")
        os.rename(saved_model, target)
    except BaseException:
        if keras_moved:
            os.remove(keras_target)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
