"""The Open Inference Protocol v2 (KServe / Triton) over HTTP: request decoding and validation,
response encoding, and the typed errors that map to HTTP status codes.

Implements the JSON tensor format of the protocol (``name``, ``shape``, ``datatype``, ``data`` as
a flattened row-major or nested array, optional ``parameters``, ``outputs`` and ``id``) and
Triton's ``binary_tensor_data`` extension (``Inference-Header-Content-Length`` with
``binary_data_size`` on inputs, ``binary_data`` / ``binary_data_output`` for outputs), which the
``tritonclient`` HTTP client uses by default. Every error is a body ``{"error": "<message>"}``.

Validation happens here, before a request is queued, so a bad input can never reach (or poison)
a batch of other requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

__all__ = [
    "BINARY_HEADER",
    "EXTENSIONS",
    "InferenceFailed",
    "InferRequest",
    "InvalidInput",
    "ModelNotFound",
    "NotReady",
    "PayloadTooLarge",
    "ProtocolError",
    "ServerBusy",
    "TensorSpec",
    "decode_infer_request",
    "encode_infer_response",
    "error_body",
]

BINARY_HEADER = "inference-header-content-length"
"""Request/response header giving the length of the JSON part of a binary-data body."""

EXTENSIONS = ("binary_tensor_data",)
"""Protocol extensions this server implements (reported by ``GET /v2``)."""


class ProtocolError(Exception):
    """An error answered with ``{"error": message}`` and the class's HTTP status."""

    status = 500
    headers: dict[str, str] = {}

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ProtocolError):
    """The request is malformed or does not match the model's inputs (400)."""

    status = 400


class ModelNotFound(ProtocolError):
    """No such model name or version on this server (404)."""

    status = 404


class PayloadTooLarge(ProtocolError):
    """The body or the batch in it exceeds the server's limits (413)."""

    status = 413
    headers = {"connection": "close"}


class ServerBusy(ProtocolError):
    """The request queue is full; the client should retry after ``Retry-After`` seconds (503)."""

    status = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers = {"retry-after": str(retry_after_s)}


class NotReady(ProtocolError):
    """The server or model is loading or shutting down (503)."""

    status = 503


class InferenceFailed(ProtocolError):
    """The model raised while computing this request (500); other requests are unaffected."""

    status = 500


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Metadata of one model tensor: ``{"name", "datatype", "shape"}`` with -1 for the batch."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @classmethod
    def from_manifest(cls, spec: dict[str, Any]) -> TensorSpec:
        """Build from a manifest ``inputs``/``outputs`` entry."""
        return cls(str(spec["name"]), str(spec["datatype"]), tuple(int(d) for d in spec["shape"]))

    def metadata(self) -> dict[str, Any]:
        """The protocol's ``$metadata_tensor`` object."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(slots=True)
class InferRequest:
    """A validated inference request for a model with one FP32 ``[-1, F]`` input."""

    x: np.ndarray
    """The input rows, float32 ``[B, F]``, C-contiguous, all finite."""
    id: str | None
    """The request ``id``, echoed in the response when given."""
    outputs: tuple[str, ...] | None
    """Requested output names, or None for all outputs."""
    binary_outputs: frozenset[str]
    """Outputs to return as binary data (binary tensor data extension)."""


_NUMERIC_KINDS = frozenset("iuf")


def _loads(raw: bytes | memoryview) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        hint = ""
        if any(token in bytes(raw) for token in (b"NaN", b"Infinity")):
            hint = " (NaN and Infinity are not JSON, and inputs must be finite FP32 numbers)"
        raise InvalidInput(f"request body is not valid JSON: {exc}{hint}") from None


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _parameters(container: dict[str, Any], where: str) -> dict[str, Any]:
    params = container.get("parameters")
    if params is None:
        return {}
    params = _object(params, f"{where}.parameters")
    for key, value in params.items():
        if not isinstance(value, str | int | float | bool):
            raise InvalidInput(
                f"{where}.parameters.{key} must be a string, number or boolean, got {type(value).__name__}"
            )
    return params


def _flag(params: dict[str, Any], key: str, where: str) -> bool | None:
    value = params.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise InvalidInput(f"{where}.parameters.{key} must be a boolean, got {value!r}")


def _shape(value: Any, spec: TensorSpec, max_rows: int) -> tuple[int, int]:
    where = "inputs[0].shape"
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise InvalidInput(f"{where} must be a list of integers, got {value!r}")
    features = spec.shape[1]
    if len(value) != 2 or value[1] != features or value[0] < 1:
        raise InvalidInput(
            f"{where} {value} does not match the model input {spec.name} {list(spec.shape)}: "
            f"expected [batch, {features}] with batch >= 1"
        )
    if value[0] > max_rows:
        raise PayloadTooLarge(
            f"{where}: batch of {value[0]} rows exceeds this server's limit of {max_rows} "
            "rows per request; split the request"
        )
    return value[0], features


def _has_bool(data: list[Any]) -> bool:
    """Whether a flat or nested (one level) JSON list holds ``true``/``false`` anywhere."""
    for item in data:
        if item is True or item is False:
            return True
        if isinstance(item, list) and any(v is True or v is False for v in item):
            return True
    return False


def _json_data(data: Any, rows: int, features: int, maybe_bools: bool = True) -> np.ndarray:
    where = "inputs[0].data"
    if not isinstance(data, list):
        raise InvalidInput(f"{where} must be a JSON array, got {type(data).__name__}")
    if len(data) == rows * features:
        flat = True
    elif len(data) == rows:
        flat = False
    else:
        raise InvalidInput(
            f"{where} has {len(data)} elements; shape [{rows}, {features}] needs "
            f"{rows * features} flattened or {rows} rows of {features}"
        )
    try:
        arr = np.asarray(data)
    except (ValueError, OverflowError):
        raise InvalidInput(
            f"{where} is ragged or holds non-numbers: use {rows} rows of {features} numbers or one flat list"
        ) from None
    # numpy turns true/false among numbers into 1.0/0.0; FP32 data holds numbers only.
    if arr.dtype.kind in _NUMERIC_KINDS and maybe_bools and _has_bool(data):
        raise InvalidInput(f"{where} holds true/false among its numbers: booleans are not FP32 values")
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise InvalidInput(
            f"{where} must hold only numbers for datatype FP32 (found {arr.dtype.kind!r} "
            "values: strings, booleans, nulls or objects are not accepted)"
        )
    expected = (rows * features,) if flat else (rows, features)
    if arr.shape != expected:
        raise InvalidInput(
            f"{where} has shape {list(arr.shape)}, expected {list(expected)} for shape [{rows}, {features}]"
        )
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(arr, dtype=np.float32).reshape(rows, features)


def decode_infer_request(
    body: bytes,
    *,
    input_spec: TensorSpec,
    output_names: tuple[str, ...],
    max_rows: int,
    json_length: int | None = None,
) -> InferRequest:
    """Parse and validate an inference request body for a one-input FP32 ``[-1, F]`` model.

    ``json_length`` is the ``Inference-Header-Content-Length`` header when the body carries
    binary tensor data after its JSON part. Raises :class:`InvalidInput` (400) or
    :class:`PayloadTooLarge` (413) with a message that names the offending field.
    """
    if json_length is None:
        header, binary = body, b""
    else:
        if not 0 < json_length <= len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length {json_length} is outside the body of {len(body)} bytes"
            )
        view = memoryview(body)
        header, binary = view[:json_length], view[json_length:]
    request = _object(_loads(header), "request body")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput(f"id must be a string, got {type(request_id).__name__}")
    binary_default = _flag(_parameters(request, "request"), "binary_data_output", "request")

    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("inputs must be a non-empty list of input tensors")
    if len(inputs) != 1:
        raise InvalidInput(f"this model has exactly one input ({input_spec.name}), got {len(inputs)}")
    tensor = _object(inputs[0], "inputs[0]")
    name = tensor.get("name")
    if name != input_spec.name:
        raise InvalidInput(f"inputs[0].name must be {input_spec.name!r}, got {name!r}")
    datatype = tensor.get("datatype")
    if datatype != input_spec.datatype:
        raise InvalidInput(f"inputs[0].datatype must be {input_spec.datatype!r} for input {name}, got {datatype!r}")
    rows, features = _shape(tensor.get("shape"), input_spec, max_rows)
    size = _parameters(tensor, "inputs[0]").get("binary_data_size")
    if size is None:
        if "data" not in tensor:
            raise InvalidInput("inputs[0].data is missing (or send binary_data_size and binary data)")
        # The body has no "true"/"false" token at all in the common case: skip the per-value scan.
        maybe_bools = b"true" in body or b"false" in body
        x = _json_data(tensor["data"], rows, features, maybe_bools)
    else:
        expected = rows * features * 4
        if isinstance(size, bool) or not isinstance(size, int) or size != expected:
            raise InvalidInput(
                f"inputs[0].parameters.binary_data_size must be {expected} for FP32 [{rows}, {features}], got {size!r}"
            )
        if len(binary) != size:
            raise InvalidInput(f"binary tensor data is {len(binary)} bytes, binary_data_size says {size}")
        x = np.frombuffer(binary, dtype="<f4").astype(np.float32).reshape(rows, features)
    if not np.isfinite(x).all():
        raise InvalidInput("inputs[0].data holds NaN or infinite values (or numbers outside the FP32 range)")

    outputs: tuple[str, ...] | None = None
    binary_outputs = set(output_names) if binary_default else set()
    requested = request.get("outputs")
    if requested is not None:
        if not isinstance(requested, list):
            raise InvalidInput('outputs must be a list of {"name": ...} objects')
        names = []
        for i, item in enumerate(requested):
            item = _object(item, f"outputs[{i}]")
            out_name = item.get("name")
            if out_name not in output_names:
                raise InvalidInput(
                    f"outputs[{i}].name {out_name!r} is not an output of this model; allowed: {list(output_names)}"
                )
            flag = _flag(_parameters(item, f"outputs[{i}]"), "binary_data", f"outputs[{i}]")
            if flag is not None:
                (binary_outputs.add if flag else binary_outputs.discard)(out_name)
            names.append(out_name)
        outputs = tuple(names)
    return InferRequest(x=x, id=request_id, outputs=outputs, binary_outputs=frozenset(binary_outputs))


def encode_infer_response(
    *,
    model_name: str,
    model_version: str,
    request: InferRequest,
    output_name: str,
    y: np.ndarray,
) -> tuple[bytes, dict[str, str]]:
    """Encode the response body and its extra headers for output ``y`` (float32 ``[B, C]``)."""
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        response["id"] = request.id
    tensors = []
    binary = b""
    if request.outputs is None or output_name in request.outputs:
        tensor: dict[str, Any] = {"name": output_name, "datatype": "FP32", "shape": list(y.shape)}
        if output_name in request.binary_outputs:
            binary = np.ascontiguousarray(y, dtype="<f4").tobytes()
            tensor["parameters"] = {"binary_data_size": len(binary)}
        else:
            tensor["data"] = y.reshape(-1)
        tensors.append(tensor)
    response["outputs"] = tensors
    body = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not binary:
        return body, {"content-type": "application/json"}
    return body + binary, {
        "content-type": "application/octet-stream",
        BINARY_HEADER: str(len(body)),
    }


def error_body(message: str) -> bytes:
    """The protocol's error object ``{"error": message}`` as JSON bytes."""
    return orjson.dumps({"error": message})
