"""Plays TF Serving against exported SavedModels, in a process that imports only TensorFlow.

TF Serving itself cannot run here, so this script does what it does with
TensorFlow's and tensorflow-serving-api's own functions: it loads each
version folder into a TensorFlow session (`SessionModel`: TF Serving's
`SavedModelBundle`, which feeds the SignatureDef's tensor names and casts
nothing, so a wrong dtype or shape meets the graph's own checks), converts
requests into tensors with `tf.make_ndarray` (gRPC `PredictRequest`s, REST
JSON bodies in the row and columnar formats, with `{"b64": ...}` strings)
and replays the warm-up file. It is run by tests/test_export_contract.py as
`python -I tests/serving_emulator.py WORKDIR` with WORKDIR as the current
folder, so nothing of the project can be imported (asserted at the end).

WORKDIR holds `exports/<family>/1/`, `inputs_<family>.npz` (one array per
`<signature>.<input>`), `rest_requests.json` and `grpc_client.py` (the client
code of docs/SERVING.md). It writes `signatures.json`, `direct_<family>.npz`,
`grpc_<family>.npz`, `warmup.json`, `rest_responses.json` and `errors.json`.
"""

import base64
import json
import os
import sys
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc

MODELS = {}


class SessionModel:
    """A SavedModel as TF Serving's C++ server runs it.

    The server loads the `serve` graph into a session and answers a request by
    feeding each input's tensor, named by the SignatureDef, with the request's
    tensor as sent (no cast, no shape check) and fetching the outputs' tensors.
    `tf.saved_model.load` would instead call a Python function that checks and
    casts its arguments first, with messages a TF Serving client never sees.

    Args:
        path: str. The version folder.
    """

    def __init__(self, path: str):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], path)
        self.signatures = {
            name: signature
            for name, signature in meta_graph.signature_def.items()
            if not name.startswith("__")  # __saved_model_init_op
        }

    def run(self, signature_name: str, arrays: dict) -> dict:
        signature = self.signatures[signature_name]
        if set(arrays) != set(signature.inputs):
            raise ValueError(
                f"Inputs {sorted(arrays)} do not match the signature's {sorted(signature.inputs)}"
            )
        tensor = self.graph.get_tensor_by_name
        feeds = {
            tensor(signature.inputs[k].name)._as_tf_output(): np.asarray(v)
            for k, v in arrays.items()
        }
        names = sorted(signature.outputs)
        fetches = [tensor(signature.outputs[k].name)._as_tf_output() for k in names]
        # Session.run would check shapes and cast dtypes in Python; the server does
        # neither, so feed through the call Session.run ends in.
        values = self.session._call_tf_sessionrun(None, feeds, fetches, [], None)
        return dict(zip(names, values, strict=True))


def load_models():
    for family in sorted(os.listdir("exports")):
        MODELS[family] = SessionModel(os.path.join("exports", family, "1"))


def _tensor_info(info):
    shape = [None if d.size < 0 else d.size for d in info.tensor_shape.dim]
    return [tf.dtypes.as_dtype(info.dtype).name, shape]


def describe(signature):
    """{"inputs": {name: [dtype, shape]}, "outputs": {...}} of a SignatureDef."""
    return {
        side: {k: _tensor_info(v) for k, v in getattr(signature, side).items()}
        for side in ("inputs", "outputs")
    }


def input_dtypes(model_name, signature_name):
    """{input name: tf.DType} of a signature, as the REST parser reads them."""
    inputs = MODELS[model_name].signatures[signature_name].inputs
    return {k: tf.dtypes.as_dtype(v.dtype) for k, v in inputs.items()}


def run(model_name, signature_name, arrays):
    return MODELS[model_name].run(signature_name or "serving_default", arrays)


def predict(request):
    """TF Serving's Predict: PredictRequest -> PredictResponse."""
    arrays = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    outputs = run(request.model_spec.name, request.model_spec.signature_name, arrays)
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return response


class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def Predict(self, request, context):
        try:
            return predict(request)
        except (tf.errors.OpError, ValueError, TypeError) as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))


def _from_json(value):
    """JSON values -> Python values, with {"b64": s} objects as bytes."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _to_json(name, value):
    if value.dtype == object:
        if not name.endswith("_bytes"):
            raise ValueError(f"string output {name!r} needs a name ending in _bytes for b64")
        return tf.nest.map_structure(
            lambda b: {"b64": base64.b64encode(b).decode()}, value.tolist()
        )
    return value.tolist()


def rest_predict(model_name, body):
    """TF Serving's REST `:predict` on a parsed JSON body."""
    dtypes = input_dtypes(model_name, body.get("signature_name", "serving_default"))
    row = "instances" in body
    data = _from_json(body["instances"] if row else body["inputs"])
    if row and data and isinstance(data[0], dict):
        data = {k: [instance[k] for instance in data] for k in data[0]}
    if not isinstance(data, dict):
        (only,) = dtypes
        data = {only: data}
    arrays = {k: tf.make_ndarray(tf.make_tensor_proto(v, dtype=dtypes[k])) for k, v in data.items()}
    outputs = run(model_name, body.get("signature_name"), arrays)
    if row:
        names = sorted(outputs)
        if len(names) == 1:
            return {"predictions": _to_json(names[0], outputs[names[0]])}
        columns = {k: _to_json(k, outputs[k]) for k in names}
        size = len(columns[names[0]])
        return {"predictions": [{k: columns[k][i] for k in names} for i in range(size)]}
    if len(outputs) == 1:
        ((name, value),) = outputs.items()
        return {"outputs": _to_json(name, value)}
    return {"outputs": {k: _to_json(k, v) for k, v in outputs.items()}}


def signature_inputs(arrays, name):
    """The `<name>.<input>` entries of `arrays` as {input: array}."""
    return {k.split(".")[1]: v for k, v in arrays.items() if k.startswith(name + ".")}


def main():
    load_models()
    json.dump(
        {f: {k: describe(s) for k, s in m.signatures.items()} for f, m in MODELS.items()},
        open("signatures.json", "w"),
    )
    inputs = {f: dict(np.load(f"inputs_{f}.npz", allow_pickle=True)) for f in MODELS}

    # Every signature called directly.
    for family, model in MODELS.items():
        out = {}
        for name in model.signatures:
            for key, value in run(family, name, signature_inputs(inputs[family], name)).items():
                out[f"{name}.{key}"] = value
        np.savez(f"direct_{family}.npz", **out)

    # The warm-up file: parse each record and run it.
    warmup = {}
    for family in MODELS:
        path = os.path.join("exports", family, "1", "assets.extra", "tf_serving_warmup_requests")
        ran = []
        for record in tf.data.TFRecordDataset(path):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            request = log.predict_log.request
            request.model_spec.name = family
            response = predict(request)
            ran.append([request.model_spec.signature_name, sorted(response.outputs)])
        warmup[family] = ran
    json.dump(warmup, open("warmup.json", "w"))

    # gRPC: the documented client against a PredictionService on a local port.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("localhost:0")
    server.start()
    client = {"__name__": "grpc_client"}
    exec(open("grpc_client.py").read(), client)
    client["SERVER"] = f"localhost:{port}"
    errors = {}
    for family, model in MODELS.items():
        client["MODEL"] = family
        out = {}
        for name in model.signatures:
            for key, value in client["predict"](
                name, **signature_inputs(inputs[family], name)
            ).items():
                out[f"{name}.{key}"] = value
        np.savez(f"grpc_{family}.npz", **out)
    client["MODEL"] = "dvae"
    for case, images in [
        ("grpc_wrong_channels", np.zeros((1, 28, 28, 3), np.float32)),
        ("grpc_wrong_dtype", np.zeros((1, 28, 28, 1), np.float64)),
    ]:
        try:
            client["predict"]("encode", images=images)
            errors[case] = ["OK", ""]
        except grpc.RpcError as error:
            errors[case] = [error.code().name, error.details()]
    server.stop(None)

    # REST bodies.
    requests = json.load(open("rest_requests.json"))
    json.dump(
        [rest_predict(r["model"], r["body"]) for r in requests], open("rest_responses.json", "w")
    )
    json.dump(errors, open("errors.json", "w"))

    # (`import tensorflow` itself imports keras; the project must stay out.)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("zoo", "trainers", "tests"))
    if leaked:
        raise SystemExit(f"The SavedModels pulled in modules of the project: {leaked}")


if __name__ == "__main__":
    main()
