"""The serving contract of an exported `zoo.ImageGenerator`, in a TF-only fresh process.

A tiny generator (tiny dVAE, tiny prior, the ten Fashion-MNIST class names)
is exported once. `DRIVER` runs in `python -I` with the export folder as its
working directory, so it can import TensorFlow, tensorflow-serving-api and
tests/serving_emulator.py (itself TF-only) but not this project: it calls the
signatures directly, answers the documented gRPC client and snippet over a
real local channel and the documented REST bodies, replays the warm-up file
and sends bad requests. The tests compare what it wrote with the Keras model:
codes exactly, images within 1e-5.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import zoo
from tests.helpers import REPO_ROOT, tiny_model
from zoo.export import export_model

DOCS = REPO_ROOT / "docs" / "SERVING.md"
CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
OPTIONS = ("seed", "temperature", "top_k", "guidance_scale")
REQUESTS = {
    "generate": ({"labels": [9, 0, 3]}, (5, 0.9, 4, 1.0)),
    "generate_from_text": ({"prompts": ["Ankle Boot", " bag", "t-shirt/TOP"]}, (2, 1.0, 0, 2.5)),
}
BAD_REQUESTS = [
    ("generate", {"labels": [10]}, (0, 1.0, 0, 1.0), "labels must be < 10"),
    ("generate", {"labels": [-1]}, (0, 1.0, 0, 1.0), "labels must be >= 0"),
    ("generate", {"labels": [1]}, (0, 0.0, 0, 1.0), "temperature must be > 0"),
    ("generate", {"labels": [1]}, (0, 1.0, -1, 1.0), "top_k must be >= 0"),
    ("generate", {"labels": [1]}, (0, float("inf"), 0, 1.0), "temperature must be finite"),
    ("generate", {"labels": [1]}, (0, 1.0, 0, float("nan")), "guidance_scale must be finite"),
    ("generate", {"labels": [0] * 4097}, (0, 1.0, 0, 1.0), "At most 4,096 images per generate"),
    ("generate", {"labels": []}, (0, 1.0, 0, 1.0), "`labels` holds no examples"),
    ("generate_from_text", {"prompts": ["bag", "Sandal Boot"]}, (0, 1.0, 0, 1.0),
     r"Unknown class name\(s\) in prompts:\] \[sandal boot\] \[Known names .*Ankle boot"),
]  # fmt: skip

DRIVER = r"""
import json, sys
from concurrent import futures
import grpc, numpy as np, tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2, prediction_service_pb2_grpc
sys.path.insert(0, sys.argv[1])  # tests/: serving_emulator imports only TF and TF Serving APIs
import serving_emulator as emulator

emulator.MODELS["generator"] = model = emulator.SessionModel("export")
json.dump({k: emulator.describe(s) for k, s in model.signatures.items()},
          open("signatures.json", "w"))
inputs = dict(np.load("inputs.npz", allow_pickle=True))
direct = {}
for name in model.signatures:
    outputs = emulator.run("generator", name, emulator.signature_inputs(inputs, name))
    direct.update({f"{name}.{key}": value for key, value in outputs.items()})
np.savez("direct.npz", **direct)

warmup = []
for record in tf.data.TFRecordDataset("export/assets.extra/tf_serving_warmup_requests"):
    request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
    request.model_spec.name = "generator"
    warmup.append([request.model_spec.signature_name, sorted(emulator.predict(request).outputs)])
json.dump(warmup, open("warmup.json", "w"))

server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(emulator.Servicer(), server)
port = server.add_insecure_port("localhost:0")
server.start()
client = {"__name__": "grpc_client"}
exec(open("grpc_client.py").read(), client)
client.update(SERVER=f"localhost:{port}", MODEL="generator", __name__="__main__")
exec(open("grpc_generator.py").read(), client)
np.savez("grpc.npz", images=client["images"], codes=client["codes"],
         by_id_codes=client["by_id"]["codes"])
errors = {}
try:
    client["predict"]("generate", labels=np.array([10], np.int32), **client["options"])
except grpc.RpcError as error:
    errors["grpc"] = [error.code().name, error.details()]
server.stop(None)

bodies = json.load(open("rest_bodies.json"))
json.dump([emulator.rest_predict("generator", body) for body in bodies],
          open("rest_responses.json", "w"))
for i, (name, request) in enumerate(json.load(open("bad_requests.json"))):
    arrays = {k: np.array(v, dtype=np.int32 if k in ("labels", "seed", "top_k") else
                          object if k == "prompts" else np.float32) for k, v in request.items()}
    try:
        emulator.run("generator", name, arrays)
        errors[str(i)] = ["no error", ""]
    except tf.errors.OpError as error:
        errors[str(i)] = [type(error).__name__, error.message]
json.dump(errors, open("errors.json", "w"))
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("zoo", "trainers", "tests"))
if leaked:
    raise SystemExit(f"The SavedModel pulled in modules of the project: {leaked}")
"""


def docs_block(marker: str) -> str:
    match = re.search(rf"<!-- {marker}.*?-->\s*```\w+\n(.*?)```", DOCS.read_text(), re.S)
    if not match:
        raise AssertionError(f"docs/SERVING.md lost its marked {marker} block")
    return match.group(1)


def request(inputs: dict, options: tuple) -> dict:
    return {**inputs, **dict(zip(OPTIONS, options, strict=True))}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("generator_serving")
    autoencoder = tiny_model("dvae")
    prior = zoo.TransformerPrior(
        num_embeddings=autoencoder.num_embeddings,
        grid_shape=autoencoder.latent_grid,
        num_classes=len(CLASS_NAMES),
        embed_dim=32,
        num_layers=2,
        num_heads=2,
        mlp_dim=64,
    )
    generator = zoo.ImageGenerator(autoencoder, prior, CLASS_NAMES)
    os.rename(export_model(generator, str(work / "exports"), keras_file=False), work / "export")
    inputs = {
        f"{name}.{key}": value
        for name, signature in generator.serving_signatures().items()
        for key, value in signature.example.items()
    }
    for name, (batch, options) in REQUESTS.items():
        for key, value in request(batch, options).items():
            dtype = {"prompts": object, "temperature": np.float32, "guidance_scale": np.float32}
            inputs[f"{name}.{key}"] = np.asarray(value, dtype.get(key, np.int32))
    np.savez(work / "inputs.npz", **inputs)
    (work / "grpc_client.py").write_text(docs_block("grpc-client"))
    (work / "grpc_generator.py").write_text(docs_block("grpc-generator"))
    bodies = [
        json.loads(b) for b in re.findall(r"--data '(\{.*?\})'", docs_block("generator-rest"))
    ]
    (work / "rest_bodies.json").write_text(json.dumps(bodies))
    bad = [(name, request(batch, options)) for name, batch, options, _ in BAD_REQUESTS]
    (work / "bad_requests.json").write_text(json.dumps(bad))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-I", "-c", DRIVER, str(REPO_ROOT / "tests")],
        cwd=work,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=400,
    )
    if result.returncode:
        raise AssertionError(f"driver failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return {"work": work, "generator": generator, "bodies": bodies}


def keras_reference(generator, labels, options) -> tuple[np.ndarray, np.ndarray]:
    seed, temperature, top_k, guidance_scale = options
    codes = generator.prior.generate(
        labels, seed=seed, temperature=temperature, top_k=top_k, guidance_scale=guidance_scale
    )
    return codes.numpy(), generator.autoencoder.decode(codes).numpy()


def assert_same_draw(codes, images, reference):
    assert codes.dtype == np.int32 and images.dtype == np.float32
    np.testing.assert_array_equal(codes, reference[0])
    np.testing.assert_allclose(images, reference[1], atol=1e-5, rtol=0)


def test_signatures_are_the_documented_contract(served):
    found = json.loads((served["work"] / "signatures.json").read_text())
    generator = served["generator"]
    assert set(found) == set(generator.autoencoder.serving_signatures()) | set(REQUESTS)
    scalars = {"seed": ["int32", []], "temperature": ["float32", []], "top_k": ["int32", []],
               "guidance_scale": ["float32", []]}  # fmt: skip
    outputs = {"images": ["float32", [None, 28, 28, 1]], "codes": ["int32", [None, 7, 7]]}
    assert found["generate"] == {
        "inputs": {"labels": ["int32", [None]], **scalars},
        "outputs": outputs,
    }
    assert found["generate_from_text"] == {
        "inputs": {"prompts": ["string", [None]], **scalars},
        "outputs": outputs,
    }


def test_served_draws_equal_keras_for_the_same_seed(served):
    direct = dict(np.load(served["work"] / "direct.npz", allow_pickle=True))
    generator = served["generator"]
    for name, (batch, options) in REQUESTS.items():
        labels = generator.class_ids(next(iter(batch.values())))
        reference = keras_reference(generator, labels, options)
        assert_same_draw(direct[f"{name}.codes"], direct[f"{name}.images"], reference)
    # The Python generator draws the same images from the names.
    batch, options = REQUESTS["generate_from_text"]
    images = generator.generate(batch["prompts"], **dict(zip(OPTIONS, options, strict=True)))
    np.testing.assert_allclose(direct["generate_from_text.images"], images, atol=1e-5)


def test_documented_grpc_snippet(served):
    answer = np.load(served["work"] / "grpc.npz")
    reference = keras_reference(served["generator"], [9, 8], (0, 1.0, 0, 1.0))
    assert_same_draw(answer["codes"], answer["images"], reference)
    np.testing.assert_array_equal(answer["by_id_codes"], reference[0])


def test_documented_rest_bodies(served):
    responses = json.loads((served["work"] / "rest_responses.json").read_text())
    assert len(responses) == len(served["bodies"]) == 2
    generator = served["generator"]
    for body, response in zip(served["bodies"], responses, strict=True):
        inputs = body["inputs"]
        labels = generator.class_ids(inputs.get("prompts", inputs.get("labels")))
        options = tuple(inputs[k] for k in OPTIONS)
        outputs = response["outputs"]
        codes = np.array(outputs["codes"], np.int32)
        assert_same_draw(codes, np.array(outputs["images"], np.float32),
                         keras_reference(generator, labels, options))  # fmt: skip


def test_warmup_file_covers_every_signature(served):
    warmup = json.loads((served["work"] / "warmup.json").read_text())
    found = json.loads((served["work"] / "signatures.json").read_text())
    assert sorted(name for name, _ in warmup) == sorted(found)
    for name, outputs in warmup:
        assert outputs == sorted(found[name]["outputs"]), name


def test_bad_requests_are_invalid_argument_with_a_message(served):
    errors = json.loads((served["work"] / "errors.json").read_text())
    for i, (_, _, _, message) in enumerate(BAD_REQUESTS):
        kind, text = errors[str(i)]
        assert kind == "InvalidArgumentError", (i, kind, text)
        assert re.search(message, text), (message, text)
    code, details = errors["grpc"]
    assert code == "INVALID_ARGUMENT" and "labels must be < 10" in details
