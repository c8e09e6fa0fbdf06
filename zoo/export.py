"""Export a zoo model as a versioned SavedModel that TF Serving loads.

`export_model(model, "exports/dvae")` writes `exports/dvae/<version>/` (the
layout of TF Serving's `--model_base_path`) and `exports/dvae/<version>.keras`
beside it. The SavedModel holds only TensorFlow graphs and weights: it runs
with `tf.saved_model.load` (or `tensorflow_model_server`) and no import of
this project. Each model declares its signatures (`serving_signatures()`,
see `zoo.serving`); this module traces and writes them, generically. See
`docs/SERVING.md` for the signatures and how to serve them.
"""

import math
import os
import shutil
import tempfile
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from zoo import atomic, tensor_checks
from zoo.keras_file import save_without_optimizer

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
"""Where TF Serving looks for warm-up requests, relative to a version folder."""


def model_signatures(model) -> dict:
    """The serving signatures `model` declares (`model.serving_signatures()`).

    Args:
        model: an exportable zoo model.

    Returns:
        A dict `name -> zoo.serving.Signature`.

    Raises:
        TypeError: if `model` declares no serving signatures.
    """
    declare = getattr(model, "serving_signatures", None)
    if not callable(declare):
        raise TypeError(
            "Expected a zoo model (AE, VAE, VQVAE, DVAE, ...), which declares its signatures "
            f"with `serving_signatures()`. Received: {type(model).__name__}."
        )
    return declare()


FREEZE_LIMIT_BYTES = 512 * 2**20
"""Largest total of folded-in weights (weights x frozen signatures) `export_model`
freezes by default: every frozen signature holds its own copy in `saved_model.pb`,
a protocol buffer that cannot exceed 2 GiB."""


def frozen_function(signature) -> Callable:
    """The signature's function with the weights it reads folded in as constants.

    TF Serving then runs a graph whose weights are constants: Grappler folds
    what depends on them alone (the casts of a `mixed_bfloat16` model) once at
    load, and the CPU kernels reuse their prepared weights across calls. The
    outputs are the same values as with variables.

    Args:
        signature: `zoo.serving.Signature`.

    Returns:
        A function of the signature's inputs (positional, in `input_specs`
        order) returning the same dict of tensors, built from a copy of the
        traced graph in which every variable read is a constant.
    """
    specs = list(signature.input_specs)
    traced = tf.function(signature.function, input_signature=specs, autograph=False)
    concrete = traced.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False)
    graph_def = frozen.graph.as_graph_def()
    input_names = [tensor.name for tensor in frozen.inputs]
    output_names = [tensor.name for tensor in frozen.outputs]
    structure = concrete.structured_outputs

    def call(*inputs):
        outputs = tf.graph_util.import_graph_def(
            graph_def,
            input_map=dict(zip(input_names, inputs, strict=True)),
            return_elements=output_names,
            name="frozen",
        )
        return tf.nest.pack_sequence_as(structure, outputs)

    return call


def _weight_bytes(model) -> int:
    return sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.weights)


def build_archive(
    model, signatures: dict | None = None, freeze_weights: bool | None = None
) -> keras.export.ExportArchive:
    """Returns a `keras.export.ExportArchive` holding every signature of `model`.

    Args:
        model: an exportable zoo model.
        signatures: its signatures, if already built.
        freeze_weights: bool or `None`. Fold the weights into the graphs of the
            signatures that allow it (`Signature.freeze`, see `frozen_function`).
            `None` freezes when the copies stay under `FREEZE_LIMIT_BYTES`.
    """
    signatures = signatures or model_signatures(model)
    freezable = [name for name, signature in signatures.items() if signature.freeze]
    if freeze_weights is None:
        freeze_weights = _weight_bytes(model) * len(freezable) <= FREEZE_LIMIT_BYTES
    frozen = set(freezable) if freeze_weights else set()
    archive = keras.export.ExportArchive()
    if len(frozen) < len(signatures):
        archive.track(model)
    for name, signature in signatures.items():
        function = frozen_function(signature) if name in frozen else signature.function
        archive.add_endpoint(name, function, input_signature=list(signature.input_specs))
    return archive


def warmup_requests(model, model_name: str = "model", signatures: dict | None = None) -> list:
    """One small `PredictRequest` per signature, for TF Serving's warm-up file.

    Each request carries the example the model declares with the signature.

    Args:
        model: A zoo model.
        model_name: str. `model_spec.name` of the requests. Defaults to `"model"`.
        signatures: the model's signatures, if already built.

    Returns:
        A list of `tensorflow_serving.apis.predict_pb2.PredictRequest`.
    """
    from tensorflow_serving.apis import predict_pb2

    requests = []
    for name, signature in (signatures or model_signatures(model)).items():
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = name
        for key, value in signature.example.items():
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
    freeze_weights: bool | None = None,
) -> str:
    """Exports `model` as SavedModel version `export_base/<version>/`.

    The export is atomic: everything is written into a temporary folder inside
    `export_base` (named `.tmp-...`, which TF Serving ignores because it is
    not an integer) and renamed into place, so a server watching
    `export_base` never sees a half-written version. If anything fails, the
    temporary folder is removed and no version appears; the folder of an
    export killed on this machine is removed by the next export. An existing
    version is never overwritten.

    The version folder holds the SavedModel with the signatures the model
    declares (`model.serving_signatures()`; for the autoencoders
    `serving_default`, `encode`, `decode`, `sample` (VAE and dVAE) and
    `reconstruct_image_bytes` (gray and RGB models), see `docs/SERVING.md`), and
    `assets.extra/tf_serving_warmup_requests` with each signature's example
    request. With `keras_file=True` the
    Keras model is also saved as `export_base/<version>.keras` (beside the
    version folder, so TF Serving does not see it).

    The weights are folded into the signatures' graphs as constants
    (`frozen_function`; a generator's sampling loop keeps variables): the
    zoo's models then answer a single image 1.1x (float32) to 1.7x
    (`mixed_bfloat16`) faster, with the same outputs (BUILD_NOTES.md,
    Export). The SavedModel then holds one copy of the weights per signature.
    A model whose weights hold NaN or Inf (a diverged run) is refused with a
    `ValueError` (`zoo.tensor_checks.check_finite_weights`).

    Args:
        model: A zoo model (anything with `serving_signatures()`).
        export_base: str. The model's base folder (TF Serving's
            `--model_base_path`); created if missing.
        version: int. The version to write. Defaults to one more than the
            largest existing version, or `1`.
        keras_file: bool. Also write `<version>.keras`. Defaults to `True`.
        model_name: str. `model_spec.name` of the warm-up requests.
            Defaults to the basename of `export_base`.
        freeze_weights: bool or `None`. Whether to fold the weights in;
            `None` does unless the copies would pass `FREEZE_LIMIT_BYTES`
            (the full-size DALL-E dVAE keeps variables). Defaults to `None`.

    Returns:
        The path of the version folder.

    Example:
    >>> import tempfile
    >>> import numpy as np, tensorflow as tf, zoo
    >>> from zoo.export import export_model
    >>> model = zoo.DVAE(filters=8, num_embeddings=16, embedding_dim=8)
    >>> path = export_model(model, tempfile.mkdtemp() + "/dvae")  # ".../dvae/1"
    >>> served = tf.saved_model.load(path)
    >>> images = np.random.rand(2, 28, 28, 1).astype("float32")
    >>> tuple(served.signatures["encode"](images=images)["codes"].shape)
    (2, 7, 7)
    """
    tensor_checks.check_finite_weights(model)
    signatures = model_signatures(model)
    export_base = os.fspath(export_base)
    if os.path.exists(export_base) and not os.path.isdir(export_base):
        raise NotADirectoryError(
            f"`export_base` {export_base!r} is a file; give the folder that holds (or will "
            "hold) the numbered versions."
        )
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
    atomic.remove_orphans(export_base)  # what killed exports on this machine left
    tmp = tempfile.mkdtemp(prefix=atomic.owned_prefix(str(version)), dir=export_base)
    keras_moved = False
    try:
        saved_model = os.path.join(tmp, "saved_model")
        build_archive(model, signatures, freeze_weights).write_out(saved_model, verbose=False)
        write_warmup_file(
            os.path.join(saved_model, WARMUP_FILE),
            warmup_requests(model, model_name, signatures),
        )
        if keras_file:
            tmp_keras = os.path.join(tmp, "model.keras")
            save_without_optimizer(model, tmp_keras)
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
