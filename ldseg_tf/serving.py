"""Client helpers for an LDSeg SavedModel served by TensorFlow Serving.

The client helpers (REST and gRPC) depend on nothing else in `ldseg_tf`, so a
thin client can copy this module; only `write_warmup_file`, which the exporter
uses, imports `ldseg_tf.utils` (lazily) for its atomic write. The REST helpers
need only numpy and the standard library; the gRPC and warmup helpers import
`tensorflow` and `tensorflow_serving` (the `tensorflow-serving-api` package)
lazily, and `grpc_predict` imports `grpcio` lazily.

The exported model has these signatures (float32 interface):

* ``serving_default``: ``image`` -> ``labels``, ``probs``, ``std``.
* ``segment``: ``image``, ``steps`` (int32 scalar), ``samples`` (int32 scalar),
  ``seed`` (int64 scalar) -> same outputs.
* ``segment_any_size``: ``image`` of any spatial size -> outputs at that size.

``image`` is a batch ``(B, H, W, C)`` or ``(B, D, H, W, C)``, uint8 or float32;
``labels`` is int32 ``(B, *spatial)``, ``probs`` float32
``(B, *spatial, num_classes)``, ``std`` float32 ``(B, *spatial)``.

REST formats follow TF Serving's RESTful API document
(tensorflow_serving/g3doc/api_rest.md, https://www.tensorflow.org/tfx/serving/api_rest)
and, where the document is silent, the server's JSON codec
(tensorflow_serving/util/json_tensor.cc). Warmup files follow
https://www.tensorflow.org/tfx/serving/saved_model_warmup.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = [
    "DEFAULT_INPUT_DTYPES",
    "DEFAULT_OUTPUT_DTYPES",
    "MAX_WARMUP_RECORDS",
    "ServingError",
    "ServingResponseError",
    "WARMUP_FILE_RELPATH",
    "grpc_predict",
    "grpc_predict_request",
    "parse_grpc_response",
    "parse_rest_response",
    "prediction_log_bytes",
    "read_warmup_file",
    "rest_predict",
    "rest_predict_body",
    "rest_url",
    "warmup_records",
    "write_warmup_file",
]

Inputs = Union[Mapping[str, Any], np.ndarray]

# Name under which a bare (unnamed) array is sent: the image input of every signature.
DEFAULT_INPUT_NAME = "image"

# Dtypes of the scalar inputs of the `segment` signature. JSON carries no dtype, but a
# gRPC TensorProto does and TF Serving rejects a mismatch ("Expects arg[i] to be int32
# but int64 is provided"), and numpy turns a Python int into int64.
DEFAULT_INPUT_DTYPES: Dict[str, Any] = {
    "steps": np.int32,
    "samples": np.int32,
    "seed": np.int64,
}

# REST responses carry no dtype either; outputs not listed here come back float32.
DEFAULT_OUTPUT_DTYPES: Dict[str, Any] = {"labels": np.int32}

# assets.extra/tf_serving_warmup_requests, at most 1000 records: more fails the model
# load with "Number of warmup records exceeds the maximum" (saved_model_warmup_util.cc).
WARMUP_FILE_RELPATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000

ROW_FORMAT = "instances"
COLUMNAR_FORMAT = "inputs"


class ServingError(RuntimeError):
    """The model server answered with an error.

    Attributes:
        message: the server's error message (the ``"error"`` value of a REST
            response, or the gRPC status details).
        status: the HTTP status code (int) for REST, the `grpc.StatusCode` name
            (str) for gRPC, or None when the error came in a 200 response body.
    """

    def __init__(self, message: str, status: Union[int, str, None] = None):
        self.message = message
        self.status = status
        prefix = f"TF Serving error ({status}): " if status is not None else "TF Serving error: "
        super().__init__(prefix + message)


class ServingResponseError(ServingError, ValueError):
    """A reply that is not a usable predict response: not JSON, too deeply
    nested, not an object, or outputs that are not rectangular arrays of
    numbers. A `ServingError` (the server misbehaved) and, as before, a
    `ValueError`."""


# --------------------------------------------------------------------------- helpers


def _normalize_inputs(inputs: Inputs) -> Dict[str, Any]:
    """A single array means the ``image`` input; a mapping is kept in order."""
    if isinstance(inputs, Mapping):
        if not inputs:
            raise ValueError("`inputs` is empty; give at least one named input.")
        for name in inputs:
            if not isinstance(name, str) or not name:
                raise ValueError(f"Input names must be non-empty strings, got {name!r}.")
        return dict(inputs)
    return {DEFAULT_INPUT_NAME: inputs}


def _to_json_value(name: str, array: np.ndarray) -> Any:
    """Nested lists (or a bare value for a 0-d array) of numbers, TF Serving's JSON
    mapping of integer/float tensors (api_rest.md "JSON mapping"). LDSeg's
    signatures take numbers only (no strings or bytes)."""
    if array.dtype.kind not in "iuf":
        raise TypeError(f"Input {name!r} has dtype {array.dtype}; LDSeg's signatures take "
                        f"integer or float tensors.")
    # `tolist()` turns float32 into the Python float of the same value, so the
    # server's float parse gives back the exact float32. NaN/Inf become the NaN /
    # Infinity tokens TF Serving accepts (api_rest.md "JSON conformance").
    return array.tolist()


# ------------------------------------------------------------------------------ REST


def rest_url(
    host: str,
    model_name: str = "ldseg",
    version: Optional[int] = None,
    port: int = 8501,
    label: Optional[str] = None,
) -> str:
    """The predict URL
    ``http://host:port/v1/models/${MODEL_NAME}[/versions/${VERSION}|/labels/${LABEL}]:predict``
    (api_rest.md, "Predict API"). Without a version or label the server uses the
    latest version.

    `host` may carry its own scheme (``https://...``); `version` and `label` are
    mutually exclusive.
    """
    if version is not None and label is not None:
        raise ValueError("Give either `version` or `label`, not both.")
    base = host if "://" in host else f"http://{host}"
    base = base.rstrip("/")
    # Keep an explicit port in `host`; otherwise add `port`.
    if urllib.parse.urlsplit(base).port is None:
        base = f"{base}:{int(port)}"
    path = f"/v1/models/{urllib.parse.quote(model_name, safe='')}"
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += f"/labels/{urllib.parse.quote(label, safe='')}"
    return f"{base}{path}:predict"


def rest_predict_body(
    inputs: Inputs,
    signature_name: Optional[str] = "serving_default",
    format: str = COLUMNAR_FORMAT,
) -> Dict[str, Any]:
    """A TF Serving REST ``predict`` request body (a JSON-ready dict).

    The formats are those of api_rest.md, "Predict API / Request format":

    * row format, ``format="instances"``:
      ``{"signature_name": s, "instances": [...]}``. With one named input the list
      holds that input's per-example values (``"instances": [[[1, 2]], [[3, 4]]]``
      for a ``(2, 1, 2)`` array); with several inputs it holds one object per example,
      ``[{"a": a[0], "b": b[0]}, {"a": a[1], "b": b[1]}, ...]``. The server stacks
      the instances along a new 0-th dimension, so every named input must have the
      same 0-th (batch) dimension ("Use this format if all named input tensors have
      the same 0-th dimension. If they don't, use the columnar format"); scalar
      inputs therefore raise ValueError here.
    * columnar format, ``format="inputs"`` (default, as it carries the scalar
      ``steps``/``samples``/``seed`` of the ``segment`` signature):
      ``{"signature_name": s, "inputs": {"a": a, "b": b}}``, or
      ``{"signature_name": s, "inputs": a}`` when there is one input. Each input has
      its own shape; scalars are plain JSON values.

    Args:
        inputs: name -> array-like; a single array is the ``image`` input. Images are
            ``(B, H, W, C)``/``(B, D, H, W, C)`` uint8 or float32 (sent as JSON
            integers / numbers), ``steps``/``samples``/``seed`` scalars.
        signature_name: put in the body; None leaves it out (server default
            signature).
        format: ``"instances"`` (row) or ``"inputs"`` (columnar).

    Returns:
        A dict to serialize with `json.dumps` (which writes NaN/Infinity tokens, as
        TF Serving accepts).
    """
    named = _normalize_inputs(inputs)
    arrays = {name: np.asarray(value) for name, value in named.items()}
    body: Dict[str, Any] = {}
    if signature_name is not None:
        body["signature_name"] = signature_name

    if format == COLUMNAR_FORMAT:
        values = {name: _to_json_value(name, a) for name, a in arrays.items()}
        # One named input: "inputs" is that input's value (api_rest.md: "The value for
        # inputs key can either a single input tensor or a map of input name to
        # tensors").
        body[COLUMNAR_FORMAT] = next(iter(values.values())) if len(values) == 1 else values
        return body

    if format != ROW_FORMAT:
        raise ValueError(f"format must be {ROW_FORMAT!r} (row) or {COLUMNAR_FORMAT!r} (columnar), got {format!r}.")

    scalars = [name for name, a in arrays.items() if a.ndim == 0]
    if scalars:
        raise ValueError(
            f"Input(s) {scalars} are scalars, but TF Serving's row format (\"instances\") "
            "stacks every named input along a shared 0-th (batch) dimension, so a scalar "
            "cannot be expressed in it (api_rest.md: use the columnar format when named "
            "inputs do not share the same 0-th dimension). Use format='inputs'."
        )
    batch_sizes = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(batch_sizes.values())) != 1:
        raise ValueError(
            f"Row format (\"instances\") needs every named input to have the same 0-th "
            f"dimension, got {batch_sizes}; use format='inputs' (columnar)."
        )
    batch = next(iter(batch_sizes.values()))
    if batch == 0:
        # The server rejects an empty list ("No values in 'instances' array").
        raise ValueError("Row format needs at least one instance; the inputs have batch size 0.")

    values = {name: _to_json_value(name, a) for name, a in arrays.items()}
    if len(values) == 1:
        body[ROW_FORMAT] = next(iter(values.values()))
    else:
        body[ROW_FORMAT] = [{name: values[name][i] for name in values} for i in range(batch)]
    return body


def _first_leaf(value: Any) -> Any:
    while isinstance(value, list):
        if not value:
            return None
        value = value[0]
    return value


def _json_to_array(name: str, value: Any, dtypes: Mapping[str, Any]) -> np.ndarray:
    leaf = _first_leaf(value)
    if name in dtypes:
        dtype = np.dtype(dtypes[name])
    elif isinstance(leaf, bool):
        dtype = np.dtype(np.bool_)
    else:
        dtype = np.dtype(np.float32)
    try:
        raw = np.asarray(value)
    except (ValueError, RecursionError) as err:  # ragged or absurdly deep nesting
        raise ServingResponseError(
            f"Output {name!r} is not a rectangular nested list: {str(err)[:200]}") from None
    if raw.dtype.kind not in "biuf":
        raise ServingResponseError(
            f"Output {name!r} is not a rectangular nested list of numbers (got "
            f"{'ragged lists' if raw.dtype == object else raw.dtype.name + ' values'}).")
    if dtype.kind in "iu" and raw.dtype.kind == "f":
        # Integer outputs come back as JSON integers; refuse to truncate fractions.
        if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
            raise ServingResponseError(
                f"Output {name!r} should hold integers ({dtype}) but has fractional values.")
    return raw.astype(dtype, copy=False)


def parse_rest_response(
    json_obj: Union[Mapping[str, Any], str, bytes],
    dtypes: Optional[Mapping[str, Any]] = None,
    single_output_name: Optional[str] = None,
) -> Dict[str, np.ndarray]:
    """Numpy outputs of a TF Serving REST ``predict`` response (api_rest.md,
    "Predict API / Response format").

    * Row format: ``{"predictions": [...]}``, a list of per-instance objects
      ``{"labels": ..., "probs": ..., "std": ...}`` when the signature has several
      outputs (each output is stacked over the instances), or a list of
      per-instance values when it has one.
    * Columnar format: ``{"outputs": {"labels": ..., ...}}``, or
      ``{"outputs": value}`` for a single output.
    * ``{"error": "..."}`` raises `ServingError`.

    With a single output the server omits its name; it is then returned under
    `single_output_name` (default: the response key, ``"predictions"`` or
    ``"outputs"``).

    Args:
        json_obj: the decoded JSON object, or its text.
        dtypes: output name -> numpy dtype, merged over `DEFAULT_OUTPUT_DTYPES`
            (``labels`` int32). Other numeric outputs are float32, true/false outputs
            bool.

    Returns:
        name -> array; for LDSeg ``labels`` int32 ``(B, *spatial)``, ``probs``
        float32 ``(B, *spatial, num_classes)``, ``std`` float32 ``(B, *spatial)``.
    """
    if isinstance(json_obj, (str, bytes, bytearray)):
        try:
            json_obj = json.loads(json_obj)
        except (ValueError, RecursionError) as err:  # JSONDecodeError, bad UTF-8, nesting
            raise ServingResponseError(
                f"the reply is not a JSON predict response ({type(err).__name__}: "
                f"{str(err)[:200]}).") from None
    if not isinstance(json_obj, Mapping):
        raise ServingResponseError(
            f"A TF Serving response is a JSON object, got {type(json_obj).__name__}.")
    if "error" in json_obj:
        raise ServingError(str(json_obj["error"]))
    dtype_map = dict(DEFAULT_OUTPUT_DTYPES)
    if dtypes:
        dtype_map.update(dtypes)

    if "predictions" in json_obj:
        key, preds = "predictions", json_obj["predictions"]
        if isinstance(preds, list) and preds and isinstance(preds[0], dict):
            names = list(preds[0].keys())
            for i, item in enumerate(preds):
                if not isinstance(item, dict) or set(item.keys()) != set(names):
                    raise ServingResponseError(
                        f"Prediction {i} does not have the same named outputs as prediction 0 ({names})."
                    )
            return {
                name: _json_to_array(name, [item[name] for item in preds], dtype_map) for name in names
            }
        name = single_output_name or key
        return {name: _json_to_array(name, preds, dtype_map)}

    if "outputs" in json_obj:
        key, outputs = "outputs", json_obj["outputs"]
        if isinstance(outputs, dict):
            return {name: _json_to_array(name, value, dtype_map) for name, value in outputs.items()}
        name = single_output_name or key
        return {name: _json_to_array(name, outputs, dtype_map)}

    raise ServingResponseError(
        f"Not a TF Serving predict response (no 'predictions', 'outputs' or 'error' key): keys {sorted(json_obj)}."
    )


def _error_message(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError):
        obj = json.loads(text)
        if isinstance(obj, Mapping) and "error" in obj:
            return str(obj["error"])
    return text.strip() or "(empty response body)"


def rest_predict(
    url: str,
    inputs: Inputs,
    signature_name: Optional[str] = "serving_default",
    timeout: float = 60.0,
    format: str = COLUMNAR_FORMAT,
    dtypes: Optional[Mapping[str, Any]] = None,
    single_output_name: Optional[str] = None,
    headers: Optional[Mapping[str, str]] = None,
) -> Dict[str, np.ndarray]:
    """POSTs a predict request to `url` (see `rest_url`) and returns numpy outputs.

    The body is `rest_predict_body(inputs, signature_name, format)`
    and the response is read with `parse_rest_response(..., dtypes,
    single_output_name)`.

    Raises:
        ServingError: the server answered with an HTTP error status (``status`` is
            the code, ``message`` the ``"error"`` text of the JSON body, or the raw
            body) or with a 200 ``{"error": ...}`` body.
        urllib.error.URLError / OSError: the server could not be reached (including
            `timeout`, in seconds).
    """
    body = rest_predict_body(inputs, signature_name=signature_name, format=format)
    # allow_nan: TF Serving parses NaN/Infinity tokens (api_rest.md "JSON conformance").
    data = json.dumps(body, allow_nan=True, separators=(",", ":")).encode("utf-8")
    request_headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if headers:
        request_headers.update(headers)
    request = urllib.request.Request(url, data=data, headers=request_headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as err:
        try:
            message = _error_message(err.read())
        finally:
            err.close()
        raise ServingError(message, status=err.code) from None
    return parse_rest_response(payload, dtypes=dtypes, single_output_name=single_output_name)


# ------------------------------------------------------------------------------ gRPC


def _import_tf():
    try:
        import tensorflow as tf
    except ImportError as err:  # pragma: no cover - tensorflow is a project dependency
        raise ImportError("The gRPC and warmup helpers need TensorFlow (`tf.make_tensor_proto`).") from err
    return tf


def import_serving_apis():
    """`(model_pb2, predict_pb2, prediction_log_pb2)` of `tensorflow-serving-api`,
    or an ImportError that says how to install it."""
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError as err:
        raise ImportError(
            "The gRPC and warmup helpers need the TF Serving protos: "
            'pip install --no-deps "tensorflow-serving-api==2.21.*" (without --no-deps it '
            "pulls the full `tensorflow` package next to tensorflow-cpu)."
        ) from err
    return model_pb2, predict_pb2, prediction_log_pb2


def _to_typed_array(name: str, value: Any, input_dtypes: Mapping[str, Any]) -> np.ndarray:
    array = np.asarray(value)
    if name in input_dtypes:
        dtype = np.dtype(input_dtypes[name])
        if array.dtype != dtype:
            cast = array.astype(dtype)
            if not np.array_equal(cast.astype(array.dtype), array):
                raise ValueError(f"Input {name!r} = {array!r} does not fit in {dtype} without loss.")
            array = cast
    elif not isinstance(value, (np.ndarray, np.generic)) and not hasattr(value, "dtype") and array.dtype == np.float64:
        # A Python float (list) becomes float64 in numpy; the model's interface is float32.
        array = array.astype(np.float32)
    return array


def grpc_predict_request(
    inputs: Inputs,
    model_name: str = "ldseg",
    signature_name: str = "serving_default",
    version: Optional[int] = None,
    input_dtypes: Optional[Mapping[str, Any]] = None,
):
    """A `predict_pb2.PredictRequest` for TF Serving's gRPC ``Predict``.

    Each input becomes a TensorProto via `tf.make_tensor_proto`, keeping the array's
    dtype (uint8/float32 images, int32/int64 scalars) and shape (``()`` for scalars).
    Inputs named in `input_dtypes` (default `DEFAULT_INPUT_DTYPES`: ``steps``/
    ``samples`` int32, ``seed`` int64) are cast to that dtype first, refusing lossy
    casts, because TF Serving rejects a dtype that differs from the signature's;
    other Python floats (not numpy values) become float32.

    Args:
        inputs: name -> array-like; a single array is the ``image`` input.
        model_name: ``model_spec.name``.
        signature_name: ``model_spec.signature_name``.
        version: ``model_spec.version`` (None: the latest version).
        input_dtypes: overrides `DEFAULT_INPUT_DTYPES` (pass ``{}`` for no casts).
    """
    tf = _import_tf()
    _, predict_pb2, _ = import_serving_apis()
    dtypes = DEFAULT_INPUT_DTYPES if input_dtypes is None else input_dtypes
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    if signature_name:
        request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in _normalize_inputs(inputs).items():
        array = _to_typed_array(name, value, dtypes)
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    return request


def parse_grpc_response(response) -> Dict[str, np.ndarray]:
    """name -> numpy array of a `predict_pb2.PredictResponse`, via `tf.make_ndarray`
    (dtypes and shapes as the server sent them: ``labels`` int32, ``probs``/``std``
    float32 for LDSeg)."""
    tf = _import_tf()
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def grpc_predict(
    target: str,
    request,
    timeout: float = 60.0,
    max_message_bytes: int = 2**31 - 1,
    parse: bool = True,
):
    """Sends `request` (a PredictRequest) to TF Serving's gRPC endpoint `target`
    (``"host:8500"``) over an insecure channel.

    `max_message_bytes` raises gRPC's 4 MiB default on both directions: a float32
    ``probs`` of a 3D volume easily exceeds it (TF Serving itself accepts up to
    INT32_MAX). Returns the parsed outputs (`parse_grpc_response`), or the raw
    PredictResponse with ``parse=False``.

    Raises:
        ImportError: grpcio or tensorflow-serving-api is missing.
        ServingError: the call failed (``status`` is the `grpc.StatusCode` name,
            e.g. ``"INVALID_ARGUMENT"``, ``"DEADLINE_EXCEEDED"``, ``"UNAVAILABLE"``).
    """
    try:
        import grpc
    except ImportError as err:
        raise ImportError("grpc_predict needs grpcio: pip install grpcio") from err
    import_serving_apis()
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    options = [
        ("grpc.max_send_message_length", int(max_message_bytes)),
        ("grpc.max_receive_message_length", int(max_message_bytes)),
    ]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None
            details = err.details() if hasattr(err, "details") else str(err)
            raise ServingError(details or str(err), status=getattr(code, "name", None)) from None
    return parse_grpc_response(response) if parse else response


# ---------------------------------------------------------------------------- warmup


def warmup_records(
    example_inputs: Sequence[Inputs],
    model_name: str = "ldseg",
    signature_names: Union[str, Sequence[str]] = ("serving_default",),
    input_dtypes: Optional[Mapping[str, Any]] = None,
) -> List[bytes]:
    """Serialized `PredictionLog` records for ``assets.extra/tf_serving_warmup_requests``.

    One record per (signature, example) pair, signature-major: each is a
    ``PredictionLog(predict_log=PredictLog(request=PredictRequest))`` as in TF
    Serving's SavedModel Warmup guide, the request equal to `grpc_predict_request`'s,
    serialized by `prediction_log_bytes` (no ``tensorflow-serving-api`` needed).

    Every example must match every listed signature's inputs exactly: a warmup
    request that fails makes TF Serving fail to load the model. For LDSeg, call once
    for ``["serving_default", "segment_any_size"]`` with ``{"image": x}`` examples and
    once for ``["segment"]`` with ``{"image", "steps", "samples", "seed"}`` examples,
    and concatenate the lists. Warmup inputs should be representative: the model's
    image size and dtype, and the batch sizes used in serving.

    Raises:
        ValueError: no examples or signatures, or more than `MAX_WARMUP_RECORDS`
            (1000) records (TF Serving refuses to load the model then).
    """
    if isinstance(signature_names, str):
        signature_names = [signature_names]
    signature_names = list(signature_names)
    examples = list(example_inputs)
    if not examples or not signature_names:
        raise ValueError("warmup_records needs at least one example and one signature name.")
    count = len(examples) * len(signature_names)
    if count > MAX_WARMUP_RECORDS:
        raise ValueError(f"{count} warmup records; TF Serving accepts at most {MAX_WARMUP_RECORDS}.")
    return [prediction_log_bytes(example, model_name, signature_name, input_dtypes)
            for signature_name in signature_names for example in examples]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _message_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (a string, bytes or a sub-message)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log_bytes(
    inputs: Inputs,
    model_name: str = "ldseg",
    signature_name: str = "serving_default",
    input_dtypes: Optional[Mapping[str, Any]] = None,
) -> bytes:
    """A serialized ``PredictionLog(predict_log=PredictLog(request=PredictRequest))``,
    equal to the message `grpc_predict_request` builds (same inputs, dtypes and
    casts), written without ``tensorflow-serving-api``.

    That package is not a dependency (installing it pulls a second TensorFlow),
    and the message is small: four nested length-delimited fields around
    TensorFlow's own `TensorProto`s (field numbers of tensorflow_serving/apis:
    PredictionLog.predict_log = 6, PredictLog.request = 1, PredictRequest
    .model_spec = 1 and .inputs = 2 (a map: entries with key = 1, value = 2),
    ModelSpec.name = 1 and .signature_name = 3)."""
    tf = _import_tf()
    dtypes = DEFAULT_INPUT_DTYPES if input_dtypes is None else input_dtypes
    spec = _message_field(1, model_name.encode("utf-8"))
    if signature_name:
        spec += _message_field(3, signature_name.encode("utf-8"))
    request = _message_field(1, spec)
    for name, value in sorted(_normalize_inputs(inputs).items()):
        tensor = tf.make_tensor_proto(_to_typed_array(name, value, dtypes)).SerializeToString()
        request += _message_field(2, _message_field(1, name.encode("utf-8"))
                                  + _message_field(2, tensor))
    return _message_field(6, _message_field(1, request))


def write_warmup_file(path: str, records: Iterable[Union[bytes, Any]]) -> str:
    """Writes `records` (serialized or `PredictionLog` messages) as a TFRecord file
    at `path` (normally ``<saved_model>/assets.extra/tf_serving_warmup_requests``,
    see `WARMUP_FILE_RELPATH`; the folder is created).

    The file is written in a temporary dot-folder next to it and renamed into place
    with `os.replace` (`ldseg_tf.utils.atomic_path`), so TF Serving never loads a
    half-written file; it gets the mode `open()` gives a new file (0666 minus the
    umask), so a server running as another user can read it. When
    ``tensorflow-serving-api`` is installed, every record is first checked to
    parse as a PredictionLog with a request, because an unparsable record fails
    the model load. Local paths only. Returns `path`.

    Raises:
        ValueError: no records, more than 1000, or a record that is not a
            PredictionLog.
    """
    tf = _import_tf()
    try:
        _, _, prediction_log_pb2 = import_serving_apis()
    except ImportError:  # records of `warmup_records` are checked by construction
        prediction_log_pb2 = None
    serialized = []
    for i, record in enumerate(records):
        if not isinstance(record, (bytes, bytearray)):
            record = record.SerializeToString()
        if prediction_log_pb2 is not None:
            try:
                log = prediction_log_pb2.PredictionLog.FromString(bytes(record))
            except Exception as err:  # protobuf's DecodeError
                raise ValueError(f"Warmup record {i} is not a serialized PredictionLog: "
                                 f"{err}") from None
            if log.WhichOneof("log_type") is None:
                raise ValueError(f"Warmup record {i} is a PredictionLog without a request.")
        serialized.append(bytes(record))
    if not serialized:
        raise ValueError("No warmup records to write.")
    if len(serialized) > MAX_WARMUP_RECORDS:
        raise ValueError(f"{len(serialized)} warmup records; TF Serving accepts at most {MAX_WARMUP_RECORDS}.")

    from ldseg_tf.utils import atomic_path

    path = os.path.abspath(path)
    # TFRecordWriter creates the temporary file itself, as open(..., "w") does.
    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(tmp) as writer:
            for record in serialized:
                writer.write(record)
        # Make the content durable before the rename publishes it.
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def read_warmup_file(path: str) -> list:
    """The `prediction_log_pb2.PredictionLog` records of a warmup TFRecord file."""
    tf = _import_tf()
    _, _, prediction_log_pb2 = import_serving_apis()
    return [
        prediction_log_pb2.PredictionLog.FromString(record)
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator()
    ]
