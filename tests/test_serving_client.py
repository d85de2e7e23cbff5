"""Golden tests of the TF Serving client helpers (`ldseg_tf.serving`).

Expected REST bodies are literal dicts taken from (or built like) the examples of
TF Serving's RESTful API document (tensorflow_serving/g3doc/api_rest.md). Network
use is limited to servers started here on 127.0.0.1 with an ephemeral port.
"""

from __future__ import annotations

import http.server
import json
import os
import pathlib
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

try:
    from ldseg_tf import serving
except ModuleNotFoundError:  # no packaging config puts the repository root on sys.path yet
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from ldseg_tf import serving

try:  # the REST helpers need neither; the gRPC/warmup tests do
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
except ImportError:  # pragma: no cover
    predict_pb2 = prediction_log_pb2 = None

needs_serving_api = pytest.mark.skipif(
    predict_pb2 is None, reason='needs `pip install --no-deps "tensorflow-serving-api==2.21.*"`'
)


def assert_json_equal(body, expected):
    """== on the dicts, and on their JSON text, so that 1 vs 1.0 and
    non-serializable numpy scalars are caught too."""
    assert body == expected
    assert json.dumps(body, sort_keys=True) == json.dumps(expected, sort_keys=True)


# ------------------------------------------------------------- request bodies (golden)


def test_row_single_input_matches_doc_example():
    # api_rest.md: "List of 2 tensors each of [1, 2] shape".
    x = np.array([[[1, 2]], [[3, 4]]], dtype=np.uint8)
    assert_json_equal(
        serving.rest_predict_body(x, format="instances"),
        {"signature_name": "serving_default", "instances": [[[1, 2]], [[3, 4]]]},
    )
    # A one-entry mapping is the same "one named input" case.
    assert_json_equal(
        serving.rest_predict_body({"image": x}, signature_name=None, format="instances"),
        {"instances": [[[1, 2]], [[3, 4]]]},
    )


def test_row_and_columnar_multi_input_match_doc_example():
    # api_rest.md: two instances with the named inputs "signal" and "sensor" (the
    # document also has a string input "tag", which LDSeg's signatures never take).
    inputs = {
        "signal": np.array([[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]], dtype=np.int32),
        "sensor": np.array([[[1, 2], [3, 4]], [[4, 5], [6, 8]]], dtype=np.int64),
    }
    assert_json_equal(
        serving.rest_predict_body(inputs, signature_name=None, format="instances"),
        {
            "instances": [
                {"signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
                {"signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]},
            ]
        },
    )
    assert_json_equal(
        serving.rest_predict_body(inputs, signature_name=None, format="inputs"),
        {
            "inputs": {
                "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
                "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]],
            }
        },
    )


def test_columnar_single_input_is_the_bare_value():
    x = np.array([[[[0.5], [-1.0]], [[0.25], [2.0]]]], dtype=np.float32)  # (1, 2, 2, 1)
    assert_json_equal(
        serving.rest_predict_body({"image": x}, signature_name="segment_any_size"),
        {"signature_name": "segment_any_size", "inputs": [[[[0.5], [-1.0]], [[0.25], [2.0]]]]},
    )


def test_columnar_segment_signature_with_scalars():
    image = np.array([[[[0], [255]], [[7], [128]]]], dtype=np.uint8)  # (1, 2, 2, 1)
    body = serving.rest_predict_body(
        {"image": image, "steps": np.int32(10), "samples": 4, "seed": np.int64(1234)},
        signature_name="segment",
        format="inputs",
    )
    assert_json_equal(
        body,
        {
            "signature_name": "segment",
            "inputs": {"image": [[[[0], [255]], [[7], [128]]]], "steps": 10, "samples": 4, "seed": 1234},
        },
    )
    assert json.dumps(body, separators=(",", ":")) == (
        '{"signature_name":"segment","inputs":{"image":[[[[0],[255]],[[7],[128]]]],'
        '"steps":10,"samples":4,"seed":1234}}'
    )


def test_float32_values_round_trip_exactly_and_non_finite_tokens():
    x = np.array([[0.1, np.nan, np.inf, -np.inf]], dtype=np.float32)
    text = json.dumps(serving.rest_predict_body(x, signature_name=None))
    # api_rest.md "JSON conformance": NaN / Infinity / -Infinity tokens.
    assert text == '{"inputs": [[0.10000000149011612, NaN, Infinity, -Infinity]]}'
    back = np.asarray(json.loads(text)["inputs"], dtype=np.float32)
    np.testing.assert_array_equal(back, x)


def test_row_format_rejects_scalars_with_clear_message():
    inputs = {"image": np.zeros((1, 2, 2, 1), np.uint8), "steps": 10, "samples": 4, "seed": 1}
    with pytest.raises(ValueError, match=r"(?s)scalars.*0-th.*format='inputs'") as info:
        serving.rest_predict_body(inputs, signature_name="segment", format="instances")
    assert "'steps'" in str(info.value) and "'seed'" in str(info.value)
    # A bare 0-d array is no batch either.
    with pytest.raises(ValueError, match="scalar"):
        serving.rest_predict_body(np.float32(1.0), format="instances")


def test_row_format_rejects_mismatched_or_empty_batch():
    with pytest.raises(ValueError, match="same 0-th dimension"):
        serving.rest_predict_body({"a": np.zeros((2, 3)), "b": np.zeros((3,))}, format="instances")
    with pytest.raises(ValueError, match="batch size 0"):
        serving.rest_predict_body(np.zeros((0, 4, 4, 1), np.uint8), format="instances")
    with pytest.raises(ValueError, match="format must be"):
        serving.rest_predict_body(np.zeros((1, 2)), format="rows")


def test_string_inputs_are_refused():
    # LDSeg's signatures take numbers only; a string tensor is a caller's mistake.
    with pytest.raises(TypeError, match="'caption'.*integer or float"):
        serving.rest_predict_body({"caption": np.array(["seaside"])}, signature_name=None)


def test_rest_url():
    assert serving.rest_url("localhost", "ldseg") == "http://localhost:8501/v1/models/ldseg:predict"
    assert serving.rest_url("10.0.0.2", "ldseg", version=3) == "http://10.0.0.2:8501/v1/models/ldseg/versions/3:predict"
    assert serving.rest_url("h", "m", label="stable", port=9000) == "http://h:9000/v1/models/m/labels/stable:predict"
    assert serving.rest_url("https://srv:443/", "m") == "https://srv:443/v1/models/m:predict"
    with pytest.raises(ValueError):
        serving.rest_url("h", "m", version=1, label="x")


# ------------------------------------------------------------------ response parsing


def test_parse_doc_example_single_output():
    # api_rest.md half_plus_three example: {"predictions": [3.5, 4.0, 5.5]}.
    out = serving.parse_rest_response({"predictions": [3.5, 4.0, 5.5]})
    assert list(out) == ["predictions"]
    assert out["predictions"].dtype == np.float32
    np.testing.assert_array_equal(out["predictions"], [3.5, 4.0, 5.5])
    out = serving.parse_rest_response('{"outputs": [[1.5], [2.0]]}', single_output_name="y")
    assert list(out) == ["y"] and out["y"].shape == (2, 1)


def test_parse_row_format_named_outputs():
    response = {
        "predictions": [
            {"labels": [[0, 1]], "probs": [[[0.75, 0.25], [0.5, 0.5]]], "std": [[0.0, 0.125]]},
            {"labels": [[1, 1]], "probs": [[[0.25, 0.75], [0.0, 1.0]]], "std": [[0.5, 0.25]]},
        ]
    }
    out = serving.parse_rest_response(response)
    assert set(out) == {"labels", "probs", "std"}
    assert out["labels"].dtype == np.int32 and out["labels"].shape == (2, 1, 2)
    assert out["probs"].dtype == np.float32 and out["probs"].shape == (2, 1, 2, 2)
    assert out["std"].dtype == np.float32 and out["std"].shape == (2, 1, 2)
    np.testing.assert_array_equal(out["labels"], [[[0, 1]], [[1, 1]]])
    np.testing.assert_array_equal(out["std"], [[[0.0, 0.125]], [[0.5, 0.25]]])


def test_parse_columnar_named_outputs_and_dtype_map():
    response = {"outputs": {"labels": [[0, 2]], "probs": [[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]], "std": [[0.0, 0.0]]}}
    out = serving.parse_rest_response(response)
    assert out["labels"].dtype == np.int32 and out["labels"].shape == (1, 2)
    assert out["probs"].dtype == np.float32 and out["probs"].shape == (1, 2, 3)
    out = serving.parse_rest_response(response, dtypes={"labels": np.int64, "std": np.float64})
    assert out["labels"].dtype == np.int64 and out["std"].dtype == np.float64
    with pytest.raises(ValueError, match="fractional"):
        serving.parse_rest_response({"outputs": {"labels": [0.5], "std": [1.0]}})


def test_parse_bool_outputs():
    out = serving.parse_rest_response({"predictions": [{"ok": True}, {"ok": False}]})
    assert out["ok"].dtype == np.bool_ and out["ok"].tolist() == [True, False]


def test_parse_errors():
    with pytest.raises(serving.ServingError, match="Servable not found for request: Latest") as info:
        serving.parse_rest_response({"error": "Servable not found for request: Latest(half)"})
    assert info.value.message == "Servable not found for request: Latest(half)"
    assert info.value.status is None
    with pytest.raises(ValueError, match="same named outputs"):
        serving.parse_rest_response({"predictions": [{"a": 1}, {"b": 2}]})
    with pytest.raises(ValueError, match="rectangular"):
        serving.parse_rest_response({"outputs": {"std": [[1.0], [2.0, 3.0]]}})
    with pytest.raises(ValueError, match="Not a TF Serving predict response"):
        serving.parse_rest_response({"result": [1]})


def _ldseg_like_outputs(rng, batch=2):
    return {
        "labels": rng.integers(0, 3, size=(batch, 3, 4)).astype(np.int32),
        "probs": rng.random((batch, 3, 4, 3)).astype(np.float32),
        "std": rng.random((batch, 3, 4)).astype(np.float32),
    }


@pytest.mark.parametrize("fmt", ["instances", "inputs"])
def test_round_trip_through_an_echoing_server(fmt):
    # A server whose outputs equal its inputs answers predictions = instances (row)
    # or outputs = inputs (columnar); parsing must give back the same arrays/dtypes.
    arrays = _ldseg_like_outputs(np.random.default_rng(0))
    body = json.loads(json.dumps(serving.rest_predict_body(arrays, format=fmt)))
    response = {"predictions": body["instances"]} if fmt == "instances" else {"outputs": body["inputs"]}
    out = serving.parse_rest_response(json.dumps(response))
    assert set(out) == set(arrays)
    for name, expected in arrays.items():
        assert out[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(out[name], expected)


# ----------------------------------------------------------------------------- gRPC


@needs_serving_api
def test_grpc_request_fields_and_tensors():
    image = np.arange(2 * 4 * 4 * 1, dtype=np.uint8).reshape(2, 4, 4, 1)
    request = serving.grpc_predict_request(
        {"image": image, "steps": 8, "samples": np.int64(3), "seed": 7},
        model_name="ldseg",
        signature_name="segment",
        version=5,
    )
    assert isinstance(request, predict_pb2.PredictRequest)
    assert request.model_spec.name == "ldseg"
    assert request.model_spec.signature_name == "segment"
    assert request.model_spec.HasField("version") and request.model_spec.version.value == 5
    assert set(request.inputs) == {"image", "steps", "samples", "seed"}
    got = {name: tf.make_ndarray(t) for name, t in request.inputs.items()}
    assert got["image"].dtype == np.uint8 and got["image"].shape == (2, 4, 4, 1)
    np.testing.assert_array_equal(got["image"], image)
    assert got["steps"].dtype == np.int32 and got["steps"].shape == () and got["steps"] == 8
    assert got["samples"].dtype == np.int32 and got["samples"] == 3
    assert got["seed"].dtype == np.int64 and got["seed"] == 7
    assert request.inputs["image"].dtype == tf.uint8.as_datatype_enum
    assert request.inputs["steps"].dtype == tf.int32.as_datatype_enum
    assert request.inputs["seed"].dtype == tf.int64.as_datatype_enum


@needs_serving_api
def test_grpc_request_defaults_and_float32():
    x = np.full((1, 2, 2, 2, 1), 0.5, np.float32)
    request = serving.grpc_predict_request(x)
    assert request.model_spec.name == "ldseg"
    assert request.model_spec.signature_name == "serving_default"
    assert not request.model_spec.HasField("version")
    assert list(request.inputs) == ["image"]
    back = tf.make_ndarray(request.inputs["image"])
    assert back.dtype == np.float32 and back.shape == (1, 2, 2, 2, 1)
    with pytest.raises(ValueError, match="without loss"):
        serving.grpc_predict_request({"image": x, "steps": 2**40})


@needs_serving_api
def test_parse_grpc_response():
    arrays = _ldseg_like_outputs(np.random.default_rng(1), batch=1)
    response = predict_pb2.PredictResponse()
    for name, value in arrays.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    out = serving.parse_grpc_response(response)
    for name, expected in arrays.items():
        assert out[name].dtype == expected.dtype
        np.testing.assert_array_equal(out[name], expected)


@needs_serving_api
def test_grpc_predict_against_local_server():
    grpc = pytest.importorskip("grpc")
    from concurrent import futures

    from tensorflow_serving.apis import prediction_service_pb2_grpc

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            if request.model_spec.signature_name == "bad":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unknown signature: bad")
            image = tf.make_ndarray(request.inputs["image"])
            response = predict_pb2.PredictResponse()
            response.model_spec.CopyFrom(request.model_spec)
            response.outputs["labels"].CopyFrom(tf.make_tensor_proto((image[..., 0] > 0).astype(np.int32)))
            response.outputs["std"].CopyFrom(tf.make_tensor_proto(np.zeros(image.shape[:-1], np.float32)))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        image = np.array([[[[0], [3]], [[1], [0]]]], np.uint8)
        out = serving.grpc_predict(f"127.0.0.1:{port}", serving.grpc_predict_request(image), timeout=5)
        assert out["labels"].dtype == np.int32
        np.testing.assert_array_equal(out["labels"], [[[0, 1], [1, 0]]])
        assert out["std"].dtype == np.float32 and out["std"].shape == (1, 2, 2)
        raw = serving.grpc_predict(
            f"127.0.0.1:{port}", serving.grpc_predict_request(image, model_name="m"), timeout=5, parse=False
        )
        assert isinstance(raw, predict_pb2.PredictResponse) and raw.model_spec.name == "m"
        with pytest.raises(serving.ServingError, match="unknown signature: bad") as info:
            serving.grpc_predict(
                f"127.0.0.1:{port}", serving.grpc_predict_request(image, signature_name="bad"), timeout=5
            )
        assert info.value.status == "INVALID_ARGUMENT"
    finally:
        server.stop(grace=None).wait(5)


# ---------------------------------------------------------------------------- warmup


@needs_serving_api
def test_prediction_log_bytes_equal_the_serving_api_messages():
    """The hand-written encoding (no tensorflow-serving-api needed) parses, with
    that package, to the message `grpc_predict_request` builds."""
    for inputs, signature in (({"image": np.arange(6, dtype=np.float32).reshape(1, 2, 3, 1)},
                               "serving_default"),
                              ({"image": np.zeros((2, 1, 1, 3), np.float32), "steps": 300,
                                "samples": 2, "seed": -5}, "segment")):
        log = prediction_log_pb2.PredictionLog.FromString(
            serving.prediction_log_bytes(inputs, "ldseg-é", signature))
        expected = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(
            request=serving.grpc_predict_request(inputs, "ldseg-é", signature)))
        assert log == expected


def test_warmup_file_is_written_without_the_serving_api(tmp_path, monkeypatch):
    def missing():
        raise ImportError("no tensorflow_serving")

    monkeypatch.setattr(serving, "import_serving_apis", missing)
    records = serving.warmup_records([{"image": np.zeros((1, 2, 2, 1), np.float32)}])
    path = tmp_path / serving.WARMUP_FILE_RELPATH
    serving.write_warmup_file(str(path), records)
    assert list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()) == records


@pytest.mark.parametrize("body", [b"", b"{bad", b"[" * 100_000, b"\xff\xfe",
                                  b'{"outputs": {"labels": [["a", "b"]]}}',
                                  b'{"outputs": {"labels": [[1], [2, 3]]}}', b"[1]"])
def test_malformed_replies_raise_serving_error(body):
    with pytest.raises(serving.ServingError):
        serving.parse_rest_response(body)


@needs_serving_api
def test_warmup_records_and_file_round_trip(tmp_path):
    image = np.zeros((1, 4, 4, 1), np.float32)
    records = serving.warmup_records(
        [{"image": image}, {"image": image[:, :2]}], "ldseg", ["serving_default", "segment_any_size"]
    ) + serving.warmup_records(
        [{"image": image, "steps": 4, "samples": 2, "seed": 0}], "ldseg", "segment"
    )
    assert len(records) == 5 and all(isinstance(r, bytes) for r in records)

    path = tmp_path / "model" / "1" / serving.WARMUP_FILE_RELPATH
    assert serving.write_warmup_file(str(path), records) == str(path)
    assert sorted(os.listdir(path.parent)) == ["tf_serving_warmup_requests"]  # no temporary left

    logs = serving.read_warmup_file(str(path))
    # Compare messages, not bytes: protobuf map fields serialize in no fixed order.
    assert logs == [prediction_log_pb2.PredictionLog.FromString(r) for r in records]
    assert all(isinstance(log, prediction_log_pb2.PredictionLog) for log in logs)
    assert all(log.WhichOneof("log_type") == "predict_log" for log in logs)
    requests = [log.predict_log.request for log in logs]
    assert [r.model_spec.signature_name for r in requests] == [
        "serving_default", "serving_default", "segment_any_size", "segment_any_size", "segment"
    ]
    assert all(r.model_spec.name == "ldseg" for r in requests)
    assert tf.make_ndarray(requests[1].inputs["image"]).shape == (1, 2, 4, 1)
    assert set(requests[4].inputs) == {"image", "steps", "samples", "seed"}
    assert tf.make_ndarray(requests[4].inputs["steps"]).dtype == np.int32
    assert tf.make_ndarray(requests[4].inputs["seed"]).dtype == np.int64

    # Overwriting replaces the file; PredictionLog messages are accepted as records.
    serving.write_warmup_file(str(path), logs[:1])
    assert len(serving.read_warmup_file(str(path))) == 1


@needs_serving_api
def test_warmup_validation_leaves_existing_file_untouched(tmp_path):
    path = tmp_path / "tf_serving_warmup_requests"
    good = serving.warmup_records([np.zeros((1, 2, 2, 1), np.uint8)])
    serving.write_warmup_file(str(path), good)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="not a serialized PredictionLog"):
        serving.write_warmup_file(str(path), good + [b"malformed_record"])
    with pytest.raises(ValueError, match="at most 1000"):
        serving.write_warmup_file(str(path), good * 1001)
    with pytest.raises(ValueError, match="No warmup records"):
        serving.write_warmup_file(str(path), [])
    with pytest.raises(ValueError, match="at most 1000"):
        serving.warmup_records([{"image": np.zeros((1,), np.uint8)}] * 501, signature_names=["a", "b"])
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["tf_serving_warmup_requests"]


@needs_serving_api
@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640)])
def test_warmup_file_gets_the_umask_mode(tmp_path, mask, expected):
    """Not mkstemp's 0600: a TF Serving process running as another user must be
    able to read the file, as it can read the rest of the SavedModel."""
    import stat

    path = tmp_path / "1" / serving.WARMUP_FILE_RELPATH
    records = serving.warmup_records([np.zeros((1, 2, 2, 1), np.uint8)])
    saved = os.umask(mask)
    try:
        serving.write_warmup_file(str(path), records)
        with open(tmp_path / "reference", "w"):  # what open() gives a new file
            pass
    finally:
        os.umask(saved)
    assert stat.S_IMODE(os.stat(path).st_mode) == expected
    assert stat.S_IMODE(os.stat(tmp_path / "reference").st_mode) == expected
    assert sorted(os.listdir(path.parent)) == ["tf_serving_warmup_requests"]  # no temporary left
    assert len(serving.read_warmup_file(str(path))) == 1


# ---------------------------------------------------------------- REST over local HTTP

CANNED_OK = {
    "predictions": [
        {"labels": [[0, 1]], "probs": [[[0.75, 0.25], [0.5, 0.5]]], "std": [[0.0, 0.125]]},
    ]
}


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = 5  # a stuck client cannot hold the handler forever

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        self.server.seen.append((self.path, self.headers.get("Content-Type"), json.loads(body)))
        if self.path == "/v1/models/ldseg:predict":
            self._reply(200, json.dumps(CANNED_OK).encode())
        elif self.path == "/v1/models/ldseg/versions/2:predict":
            self._reply(200, b'{"error": "soft error in a 200 body"}')
        elif self.path == "/v1/models/bad:predict":
            self._reply(400, b'{ "error": "JSON Value: 1 Type: Number is not of expected type: string" }')
        elif self.path == "/v1/models/slow:predict":
            time.sleep(1.0)
            self._reply(200, json.dumps(CANNED_OK).encode())
        elif self.path == "/v1/models/proxy:predict":
            self._reply(502, b"Bad Gateway")
        else:
            self._reply(404, b'{ "error": "Servable not found for request: Latest(half)" }')

    def _reply(self, code, payload):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def rest_server(monkeypatch):
    """A canned TF Serving REST stand-in on 127.0.0.1:<ephemeral>; its loop ends by
    itself after 10 s even if the test never tears it down."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.timeout = 0.05
    server.seen = []
    stop = threading.Event()
    deadline = time.monotonic() + 10.0

    def loop():
        while not stop.is_set() and time.monotonic() < deadline:
            server.handle_request()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=2)
        server.server_close()


def test_rest_predict_ok(rest_server):
    host, port = rest_server.server_address
    url = serving.rest_url(host, "ldseg", port=port)
    image = np.array([[[[0], [255]]]], np.uint8)
    out = serving.rest_predict(url, {"image": image}, format="instances", timeout=5)
    assert out["labels"].dtype == np.int32 and out["labels"].shape == (1, 1, 2)
    assert out["probs"].dtype == np.float32 and out["probs"].shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(out["std"], np.array([[[0.0, 0.125]]], np.float32))
    path, content_type, body = rest_server.seen[-1]
    assert path == "/v1/models/ldseg:predict" and content_type == "application/json"
    assert body == {"signature_name": "serving_default", "instances": [[[[0], [255]]]]}

    serving.rest_predict(url, {"image": image, "steps": 3, "samples": 1, "seed": 9}, signature_name="segment", timeout=5)
    assert rest_server.seen[-1][2] == {
        "signature_name": "segment",
        "inputs": {"image": [[[[0], [255]]]], "steps": 3, "samples": 1, "seed": 9},
    }


def test_rest_predict_http_errors(rest_server):
    host, port = rest_server.server_address
    with pytest.raises(serving.ServingError, match="is not of expected type: string") as info:
        serving.rest_predict(serving.rest_url(host, "bad", port=port), np.zeros((1, 1), np.uint8), timeout=5)
    assert info.value.status == 400
    assert info.value.message == "JSON Value: 1 Type: Number is not of expected type: string"
    with pytest.raises(serving.ServingError, match=r"Servable not found") as info:
        serving.rest_predict(serving.rest_url(host, "half", port=port), np.zeros((1, 1), np.uint8), timeout=5)
    assert info.value.status == 404
    with pytest.raises(serving.ServingError, match="Bad Gateway") as info:
        serving.rest_predict(serving.rest_url(host, "proxy", port=port), np.zeros((1, 1), np.uint8), timeout=5)
    assert info.value.status == 502
    with pytest.raises(serving.ServingError, match="soft error") as info:
        serving.rest_predict(serving.rest_url(host, "ldseg", 2, port=port), np.zeros((1, 1), np.uint8), timeout=5)
    assert info.value.status is None


def test_rest_predict_timeout(rest_server):
    host, port = rest_server.server_address
    start = time.monotonic()
    with pytest.raises(OSError):  # socket timeout (TimeoutError) or URLError
        serving.rest_predict(serving.rest_url(host, "slow", port=port), np.zeros((1, 1), np.uint8), timeout=0.2)
    assert time.monotonic() - start < 0.9
