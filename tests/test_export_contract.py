"""The serving contract of exported SavedModels, for every family.

One module-scoped fixture exports a tiny model of each family once and runs
tests/serving_emulator.py once in a fresh `python -I` process that can import
only TensorFlow and tensorflow-serving-api (not this project): it loads each
export, calls every signature, answers gRPC (the client code of
docs/SERVING.md over a real local channel) and REST requests (row and
columnar, b64) by converting them with `tf.make_ndarray`, and replays the
warm-up file. The tests compare what it wrote with the Keras models.

Tolerances: float outputs equal the Keras model's within `FLOAT_ATOL`; codes
exactly; PNG outputs within one 8-bit level of `round(255 * reconstruction)`.
"""

import base64
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.helpers import FAMILY_NAMES, REPO_ROOT, random_images, tiny_model
from zoo import serving
from zoo.export import export_model

FLOAT_ATOL = 1e-5
DOCS = REPO_ROOT / "docs" / "SERVING.md"
DTYPES = {"float32": "DT_FLOAT", "int32": "DT_INT32", "string": "DT_STRING"}


def expected_signatures(model) -> dict:
    """The documented contract: {signature: {"inputs"/"outputs": {name: (dtype, shape)}}}."""
    h, w, c = model.image_shape
    gh, gw = model.latent_grid
    images = ("float32", [None, h, w, c])
    if hasattr(model, "num_embeddings"):
        latent = {"codes": ("int32", [None, gh, gw])}
        encoded = latent
    else:
        latent = {"latents": ("float32", [None, gh, gw, model.latent_channels])}
        encoded = (
            {"mean": latent["latents"], "log_variance": latent["latents"]}
            if hasattr(model, "encode_distribution")
            else latent
        )
    signatures = {
        "serving_default": {"inputs": {"images": images}, "outputs": {"reconstructions": images}},
        "encode": {"inputs": {"images": images}, "outputs": encoded},
        "decode": {"inputs": latent, "outputs": {"images": images}},
        "reconstruct_image_bytes": {
            "inputs": {"image_bytes": ("string", [None])},
            "outputs": {"png_bytes": ("string", [None])},
        },
    }
    if hasattr(model, "sample"):
        scalar = ("int32", [])
        signatures["sample"] = {
            "inputs": {"num_samples": scalar, "seed": scalar},
            "outputs": {"images": images},
        }
    return signatures


def cli_shape(shape) -> str:
    """How `saved_model_cli show` prints a shape: `(-1, 28, 28, 1)`, `(-1)`, `()`."""
    return "(" + ", ".join("-1" if n is None else str(n) for n in shape) + ")"


def docs_grpc_client() -> str:
    text = DOCS.read_text()
    match = re.search(r"<!-- grpc-client.*?-->\s*```python\n(.*?)```", text, re.S)
    if not match:
        raise AssertionError("docs/SERVING.md lost its marked gRPC client block")
    return match.group(1)


def docs_inline_bodies() -> list[dict]:
    return [json.loads(body) for body in re.findall(r"-d '(\{.*?\})'", DOCS.read_text())]


def _case(family, model, work):
    """Writes the inputs of `family` and returns the Keras reference outputs."""
    pixels = np.round(random_images(3, model.image_shape, seed=1) * 255).astype(np.uint8)
    images = pixels.astype(np.float32) / 255.0
    files = [tf.io.encode_png(p).numpy() for p in pixels[:2]]
    files.append(tf.io.encode_jpeg(pixels[2], quality=95).numpy())
    decoded = images.copy()
    decoded[2] = tf.io.decode_jpeg(files[2], channels=model.image_shape[-1]).numpy() / 255.0
    refs = {"serving_default.reconstructions": model(images).numpy()}
    if hasattr(model, "encode_distribution"):
        mean, log_variance = model.encode_distribution(images)
        refs.update({"encode.mean": mean.numpy(), "encode.log_variance": log_variance.numpy()})
        latent = {"decode.latents": mean.numpy()}
    else:
        key = "codes" if hasattr(model, "num_embeddings") else "latents"
        refs[f"encode.{key}"] = model.encode(images).numpy()
        latent = {f"decode.{key}": refs[f"encode.{key}"]}
    refs["decode.images"] = model.decode(next(iter(latent.values()))).numpy()
    inputs = {
        "serving_default.images": images,
        "encode.images": images,
        **latent,
        "reconstruct_image_bytes.image_bytes": np.array(files, dtype=object),
    }
    if hasattr(model, "sample"):
        inputs.update({"sample.num_samples": np.int32(2), "sample.seed": np.int32(7)})
        refs["sample.images"] = model.sample(2, seed=7).numpy()
    refs["reconstruct_image_bytes.png_bytes"] = np.round(model(decoded).numpy() * 255)
    np.savez(work / f"inputs_{family}.npz", **inputs)
    b64 = [{"b64": base64.b64encode(f).decode()} for f in files]
    ((latent_name, latent_value),) = ((k.split(".")[1], v) for k, v in latent.items())
    bodies = [
        ("serving_default.row", {"instances": images.tolist()}),
        ("encode.columnar", {"signature_name": "encode", "inputs": {"images": images.tolist()}}),
        (
            "encode.row",
            {"signature_name": "encode", "instances": [{"images": x} for x in images.tolist()]},
        ),
        (
            "decode.columnar",
            {"signature_name": "decode", "inputs": {latent_name: latent_value.tolist()}},
        ),
        (
            "reconstruct_image_bytes.row",
            {
                "signature_name": "reconstruct_image_bytes",
                "instances": [{"image_bytes": x} for x in b64],
            },
        ),
        (
            "reconstruct_image_bytes.columnar",
            {"signature_name": "reconstruct_image_bytes", "inputs": {"image_bytes": b64}},
        ),
    ]
    if hasattr(model, "sample"):
        bodies.append(
            (
                "sample.columnar",
                {"signature_name": "sample", "inputs": {"num_samples": 2, "seed": 7}},
            )
        )
    return refs, [{"model": family, "name": n, "body": b} for n, b in bodies]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("serving")
    models, refs, requests, paths = {}, {}, [], {}
    for family in FAMILY_NAMES:
        models[family] = tiny_model(family)
        paths[family] = export_model(models[family], str(work / "exports" / family))
        refs[family], family_requests = _case(family, models[family], work)
        requests += family_requests
    requests += [{"model": "dvae", "name": "docs", "body": b} for b in docs_inline_bodies()]
    (work / "rest_requests.json").write_text(json.dumps(requests))
    (work / "grpc_client.py").write_text(docs_grpc_client())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-I", str(REPO_ROOT / "tests" / "serving_emulator.py")],
        cwd=work,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode:
        raise AssertionError(
            f"serving emulator failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return {"work": work, "models": models, "refs": refs, "paths": paths, "requests": requests}


def assert_matches_keras(key, value, ref):
    if key.endswith("png_bytes"):
        pixels = np.stack([tf.io.decode_png(v).numpy() for v in value]).astype(np.float32)
        assert pixels.shape == ref.shape, key
        np.testing.assert_allclose(pixels, ref, atol=1.0, rtol=0, err_msg=key)
    elif key.endswith("codes"):
        assert value.dtype == np.int32, key
        np.testing.assert_array_equal(value, ref, err_msg=key)
    else:
        assert value.dtype == np.float32, key
        np.testing.assert_allclose(value, ref, atol=FLOAT_ATOL, rtol=0, err_msg=key)


def test_saved_model_cli_show_lists_every_signature(served):
    for family in ("dvae",):  # every signature; the fresh-process test checks all families
        out = subprocess.run(
            [
                str(REPO_ROOT / ".venv" / "bin" / "saved_model_cli"),
                "show",
                "--all",
                "--dir",
                served["paths"][family],
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        blocks = dict(re.findall(r"signature_def\['(\w+)'\]:\n(.*?)Method name", out, re.S))
        expected = expected_signatures(served["models"][family])
        assert set(blocks) - {"__saved_model_init_op"} == set(expected), family
        for name, spec in expected.items():
            for side in ("inputs", "outputs"):
                found = {
                    k: (dtype, shape)
                    for k, dtype, shape in re.findall(
                        rf"{side}\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: ([^\n]+)",
                        blocks[name],
                    )
                }
                want = {k: (DTYPES[d], cli_shape(shape)) for k, (d, shape) in spec[side].items()}
                assert found == want, (family, name, side)


def test_saved_model_cli_run_on_npy(served, tmp_path):
    model = served["models"]["vqvae"]
    images = random_images(2, model.image_shape, seed=3)
    np.save(tmp_path / "x.npy", images)
    subprocess.run(
        [
            str(REPO_ROOT / ".venv" / "bin" / "saved_model_cli"),
            "run",
            "--dir",
            served["paths"]["vqvae"],
            "--tag_set",
            "serve",
            "--signature_def",
            "encode",
            "--inputs",
            f"images={tmp_path / 'x.npy'}",
            "--outdir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    codes = np.load(tmp_path / "out" / "codes.npy")
    np.testing.assert_array_equal(codes, model.encode(images).numpy())


def test_fresh_process_signatures_are_the_documented_contract(served):
    found = json.loads((served["work"] / "signatures.json").read_text())
    for family, model in served["models"].items():
        expected = {
            name: {side: {k: [d, s] for k, (d, s) in spec[side].items()} for side in spec}
            for name, spec in expected_signatures(model).items()
        }
        assert found[family] == expected, family


@pytest.mark.parametrize("source", ["direct", "grpc"])
def test_fresh_process_outputs_equal_keras(served, source):
    for family, refs in served["refs"].items():
        outputs = dict(np.load(served["work"] / f"{source}_{family}.npz", allow_pickle=True))
        assert set(outputs) == set(refs), family
        for key, ref in refs.items():
            assert_matches_keras(f"{family}:{key}", outputs[key], ref)


def _from_json(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    return [_from_json(v) for v in value] if isinstance(value, list) else value


def _rest_outputs(response, names):
    """REST answer -> {output name: value}, undoing TF Serving's JSON layout."""
    if "predictions" in response:
        rows = _from_json(response["predictions"])
        if len(names) == 1:
            return {names[0]: rows}
        return {k: [row[k] for row in rows] for k in names}
    outputs = _from_json(response["outputs"])
    return outputs if len(names) > 1 else {names[0]: outputs}


def test_rest_row_and_columnar_bodies(served):
    responses = json.loads((served["work"] / "rest_responses.json").read_text())
    checked = 0
    for request, response in zip(served["requests"], responses, strict=True):
        if request["name"] == "docs":
            continue
        signature = request["name"].split(".")[0]
        refs = {
            k.split(".")[1]: v
            for k, v in served["refs"][request["model"]].items()
            if k.startswith(signature + ".")
        }
        outputs = _rest_outputs(response, sorted(refs))
        assert set(outputs) == set(refs), request["name"]
        for key, ref in refs.items():
            value = outputs[key]
            if key != "png_bytes":
                value = np.array(value, dtype=np.int32 if key == "codes" else np.float32)
            assert_matches_keras(f"{request['model']}:{request['name']}:{key}", value, ref)
        checked += 1
    assert checked == sum(6 + hasattr(m, "sample") for m in served["models"].values())


def test_docs_curl_bodies_run(served):
    responses = json.loads((served["work"] / "rest_responses.json").read_text())
    docs = [
        (q, r) for q, r in zip(served["requests"], responses, strict=True) if q["name"] == "docs"
    ]
    assert len(docs) == 2
    shape = (None, *served["models"]["dvae"].image_shape)
    for _, response in docs:
        images = np.array(response["outputs"], np.float32)
        assert images.shape[1:] == shape[1:]
        assert images.min() >= 0.0 and images.max() <= 1.0


def test_warmup_file_has_a_request_per_signature_and_each_runs(served):
    warmup = json.loads((served["work"] / "warmup.json").read_text())
    for family, model in served["models"].items():
        expected = expected_signatures(model)
        ran = {name: outputs for name, outputs in warmup[family]}
        assert sorted(ran) == sorted(expected), family
        for name, outputs in ran.items():
            assert outputs == sorted(expected[name]["outputs"]), (family, name)


def test_grpc_bad_input_is_invalid_argument(served):
    errors = json.loads((served["work"] / "errors.json").read_text())
    # The messages of TF Serving's session (the graph names the tensor after the
    # function argument), quoted in docs/SERVING.md.
    code, details = errors["grpc_wrong_channels"]
    assert code == "INVALID_ARGUMENT"
    assert "Shape of tensor _arg_encode_images_0_0 [1,28,28,3] is not compatible" in details
    assert "expected shape [?,28,28,1]" in details
    code, details = errors["grpc_wrong_dtype"]
    assert code == "INVALID_ARGUMENT"
    assert "Expects arg[0] to be float but double is provided" in details


@pytest.fixture(scope="module")
def loaded(served):
    return {f: tf.saved_model.load(p) for f, p in served["paths"].items() if f in ("ae", "dvae")}


def test_bad_images_are_refused(loaded):
    serve = loaded["ae"].signatures["serving_default"]
    for bad in (
        tf.zeros([1, 28, 28, 3]),  # wrong channels
        tf.zeros([1, 32, 32, 1]),  # wrong size
        tf.zeros([28, 28, 1]),  # no batch axis
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"expected shape \[\?,28,28,1\]"):
            serve(images=bad)
    for bad in (tf.zeros([1, 28, 28, 1], tf.float64), tf.zeros([1, 28, 28, 1], tf.uint8)):
        with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor"):
            serve(images=bad)


def test_bad_sample_and_latent_inputs_are_refused(loaded):
    signatures = loaded["dvae"].signatures
    for count in (0, -1):
        with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples must be >= 1"):
            signatures["sample"](num_samples=tf.constant(count), seed=tf.constant(0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="`codes` holds no examples"):
        signatures["decode"](codes=tf.zeros([0, 7, 7], tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="`image_bytes` holds no examples"):
        signatures["reconstruct_image_bytes"](image_bytes=tf.constant([], tf.string))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"expected shape \[\?,7,7\]"):
        signatures["decode"](codes=tf.zeros([1, 7, 8], tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a int32 tensor"):
        signatures["decode"](codes=tf.zeros([1, 7, 7], tf.float32))


def test_corrupt_image_bytes_fail(loaded):
    fn = loaded["dvae"].signatures["reconstruct_image_bytes"]
    png = tf.io.encode_png(tf.zeros([28, 28, 1], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        fn(image_bytes=tf.constant([png.numpy(), b"not an image"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid PNG"):
        fn(image_bytes=tf.constant([png.numpy()[:30]]))  # truncated PNG


def test_other_sizes_and_rgb_files_are_converted(loaded):
    fn = loaded["dvae"].signatures["reconstruct_image_bytes"]
    big_rgb = tf.io.encode_png(tf.fill([56, 40, 3], tf.constant(200, tf.uint8)))
    gif = io.BytesIO()
    Image.new("RGB", (30, 30), (200, 10, 10)).save(gif, "GIF")
    out = fn(image_bytes=tf.constant([big_rgb.numpy(), gif.getvalue()]))["png_bytes"]
    assert [tf.io.decode_png(png).shape for png in out.numpy()] == [(28, 28, 1)] * 2


@pytest.mark.parametrize("file_format", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
@pytest.mark.parametrize("stored, channels", [("L", 1), ("RGB", 1), ("L", 3), ("RGBA", 3)])
def test_every_documented_image_format_decodes_to_the_model_channels(
    file_format, stored, channels
):
    # GIF, BMP and WebP decoders refuse channels=1 (and WebP a float dtype): until
    # 2026-12-07 `reconstruct_image_bytes` refused them for every grayscale model.
    if file_format == "JPEG" and stored == "RGBA":
        stored = "RGB"
    pixels = np.full((6, 5, len(stored)), 200, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if stored == "L" else pixels, stored).save(
        buffer, file_format, **({"lossless": True} if file_format == "WEBP" else {})
    )
    image = serving.decode_to_channels(tf.constant(buffer.getvalue()), channels)
    assert image.dtype == tf.float32 and image.shape == (6, 5, channels)
    np.testing.assert_allclose(image.numpy(), 200 / 255, atol=2 / 255)


def test_out_of_range_codes_fail(loaded, served):
    decode = loaded["dvae"].signatures["decode"]
    k = served["models"]["dvae"].num_embeddings
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_embeddings"):
        decode(codes=tf.fill([1, 7, 7], k))
    with pytest.raises(tf.errors.InvalidArgumentError, match=">= 0"):
        decode(codes=tf.fill([1, 7, 7], -1))


@pytest.mark.parametrize("channels", [2, 4, 5])
def test_every_signature_of_a_model_of_other_channels_answers_its_warmup_request(channels):
    # Image files decode to 1, 3 or 4 channels, and the zoo reads them as gray or RGB:
    # a 2- or 5-channel model declared `reconstruct_image_bytes` with a warm-up
    # request it failed ("`channels` must be 0, 1, 3 or 4"), and TF Serving does not
    # load a version whose warm-up fails; a 4-channel one failed every JPEG.
    model = tiny_model("ae", image_shape=(8, 8, channels))
    signatures = model.serving_signatures()
    assert "reconstruct_image_bytes" not in signatures
    for name, signature in signatures.items():
        outputs = signature.function(
            **{key: tf.constant(value) for key, value in signature.example.items()}
        )
        assert outputs, name
    assert "reconstruct_image_bytes" in tiny_model("ae", image_shape=(8, 8, 3)).serving_signatures()
