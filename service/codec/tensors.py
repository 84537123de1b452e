"""Tensors on the wire of the Open Inference Protocol (KServe's "V2" REST protocol, which Triton, MLServer and
KServe serve): an inference request's JSON header and its tensors, as JSON `data` or, with Triton's binary tensor
data extension, as raw little-endian bytes after the JSON (`Inference-Header-Content-Length` says where the JSON
ends, each tensor's `binary_data_size` how many bytes are its own); and the answer written the same way.

Every size is checked from the header before anything is allocated: a tensor's element count against the caller's
cap, a binary part's size against its shape and datatype, and the parts against the body, exactly. Binary tensors
are viewed in place (`np.frombuffer`), not copied. BYTES tensors (strings) are refused: no operation takes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from models.networks import SIDE
from service.codec.errors import ApiError, invalid
from service.codec.inputs import check_json_shape
from service.settings import Settings
from service.wire import json_bytes

HEADER_LENGTH = "inference-header-content-length"  # the extension's header (HTTP header names are case-insensitive)
BINARY_TYPE = "application/octet-stream"  # an answer with binary tensors after its JSON header
JSON_TYPE = "application/json"

DATATYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(code).newbyteorder("<")
    for name, code in {
        "BOOL": "bool",
        "UINT8": "uint8",
        "UINT16": "uint16",
        "UINT32": "uint32",
        "UINT64": "uint64",
        "INT8": "int8",
        "INT16": "int16",
        "INT32": "int32",
        "INT64": "int64",
        "FP16": "float16",
        "FP32": "float32",
        "FP64": "float64",
    }.items()
}
_DATATYPE_OF = {dtype.name: name for name, dtype in DATATYPES.items()}
# The datatypes an input may have: images are UINT8 (0-255) or FP32 (0-1), a latent FP32 (outputs use others too).
InputDatatype = Literal["UINT8", "FP32"]
MAX_TENSORS = 16  # inputs, or requested outputs, in one request: no operation has more
MAX_DIMENSIONS = 8


class RequestInput(BaseModel):
    """One input tensor: its values as JSON `data` (flat or nested, row-major), or after the JSON header as binary
    (`parameters.binary_data_size` bytes, with the Inference-Header-Content-Length header)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(max_length=64)
    shape: list[int] = Field(max_length=MAX_DIMENSIONS)
    datatype: InputDatatype = Field(description="UINT8 or FP32, as the model's metadata says for this input")
    parameters: dict[str, Any] | None = None
    data: Any = None


class RequestOutput(BaseModel):
    """An output to compute and send; `parameters.binary_data` (true) sends it binary after the JSON header."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(max_length=64)
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """An inference request of the Open Inference Protocol (its JSON part); `parameters.binary_data_output` (true)
    sends the outputs not named in `outputs` binary."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1, max_length=MAX_TENSORS)
    outputs: list[RequestOutput] | None = Field(None, max_length=MAX_TENSORS)


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1: any size (N, the rows)")
    parameters: dict[str, Any] | None = Field(None, description="`description`: what it is, what it comes from")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(description="the one version served (as X-Model-Version and /readyz name it)")
    platform: str
    inputs: list[TensorMetadata] = Field(description="alternatives: a request sends exactly one of them")
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = Field(None, description="the values, flat, row-major (when not sent binary)")
    parameters: dict[str, Any] | None = Field(None, description="`binary_data_size`: its bytes after the header")


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


class ProtocolError(BaseModel):
    """Every error on /v2: the protocol's shape, a message a person can act on (the request id is in X-Request-ID)."""

    error: str


@dataclass(frozen=True, slots=True)
class InputTensor:
    name: str
    datatype: str
    array: np.ndarray  # in its shape and datatype (little-endian), viewed in place when it came binary


@dataclass(frozen=True, slots=True)
class InferRequest:
    id: str | None
    inputs: list[InputTensor]
    outputs: dict[str, bool] | None  # the requested outputs -> whether each is sent binary; None: all of them
    binary_by_default: bool  # `binary_data_output`: how outputs not named are sent

    def binary(self, output: str) -> bool:
        return self.outputs[output] if self.outputs is not None else self.binary_by_default


def _flag(parameters: dict[str, Any] | None, name: str, where: str) -> bool:
    value = (parameters or {}).get(name, False)
    if not isinstance(value, bool):
        raise ApiError(422, f"{where}parameters.{name}: true or false; got {type(value).__name__}")
    return value


def parse_infer_request(body: bytes, header_length: str | None, settings: Settings) -> InferRequest:
    """The request in `body`: all JSON, or (`header_length`, the Inference-Header-Content-Length header) a JSON
    header then the binary tensors. 422 naming the problem; 413 for a tensor over max_bulk rows of 28 x 28.
    The JSON is held to /v1's JSON caps (about a full batch of pixel arrays: more goes binary, as .npy on /v1)."""
    max_elements = settings.max_bulk * SIDE * SIDE
    if header_length is None:
        json_part, binary = body, memoryview(b"")
    else:
        length = int(header_length) if header_length.isascii() and header_length.isdigit() else -1
        if not 0 < length <= len(body):
            raise ApiError(
                422,
                f"Inference-Header-Content-Length: a whole number of bytes from 1 to the body's {len(body):,}; "
                f"got {header_length[:32]!r}",
            )
        json_part, binary = body[:length], memoryview(body)[length:]
    check_json_shape(json_part, settings)
    try:
        header = InferenceRequest.model_validate_json(json_part)
    except ValidationError as exc:
        raise invalid(exc) from None
    inputs, offset = [], 0
    for index, tensor in enumerate(header.inputs):
        where = f"inputs[{index}] ({tensor.name})"
        dtype = DATATYPES.get(tensor.datatype)
        if dtype is None:
            raise ApiError(422, f"{where}: datatype {tensor.datatype[:16]!r} is not one of {', '.join(DATATYPES)}")
        if any(size < 0 for size in tensor.shape):
            raise ApiError(422, f"{where}: shape {tensor.shape} has a negative dimension")
        elements = math.prod(tensor.shape)
        if elements > max_elements:
            raise ApiError(
                413, f"{where}: shape {tensor.shape} has {elements:,} elements; the limit is {max_elements:,} "
                "(DIGITAE_MAX_BULK rows of 28 x 28)",
            )  # fmt: skip
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            if tensor.data is not None:
                raise ApiError(422, f"{where}: send either data or parameters.binary_data_size, not both")
            if not isinstance(size, int) or isinstance(size, bool) or size != elements * dtype.itemsize:
                raise ApiError(
                    422, f"{where}: binary_data_size is {size!r}; shape {tensor.shape} of {tensor.datatype} takes "
                    f"{elements * dtype.itemsize:,} bytes",
                )  # fmt: skip
            if offset + size > len(binary):
                raise ApiError(
                    422, f"{where}: the binary data ends after {len(binary) - offset:,} of its {size:,} bytes"
                )
            array = np.frombuffer(binary, dtype=dtype, count=elements, offset=offset).reshape(tensor.shape)
            offset += size
        elif tensor.data is not None:
            array = _from_json(tensor.data, dtype, tensor.shape, elements, where)
        else:
            raise ApiError(422, f"{where}: no data: send data, or binary_data_size with the binary tensor data")
        inputs.append(InputTensor(tensor.name, tensor.datatype, array))
    if offset != len(binary):
        raise ApiError(
            422, f"the body has {len(binary) - offset:,} bytes after the JSON header that no input's binary_data_size "
            "accounts for",
        )  # fmt: skip
    outputs = None
    if header.outputs is not None:
        outputs = {}
        for index, output in enumerate(header.outputs):
            outputs[output.name] = _flag(output.parameters, "binary_data", f"outputs[{index}].")
    binary_by_default = _flag(header.parameters, "binary_data_output", "")
    return InferRequest(header.id, inputs, outputs, binary_by_default)


def _from_json(data: Any, dtype: np.dtype[Any], shape: list[int], elements: int, where: str) -> np.ndarray:
    """JSON `data` (flat, or nested row-major) as an array of `shape`: numbers only, each fitting the datatype."""
    try:
        values = np.asarray(data)
    except ValueError:
        raise ApiError(422, f"{where}: data must be a list of numbers (nested lists of one length, or flat)") from None
    if values.dtype.kind not in "biuf":
        raise ApiError(422, f"{where}: data must hold numbers only (booleans for BOOL)")
    if (values.dtype.kind == "b") != (dtype.kind == "b"):
        raise ApiError(422, f"{where}: data must hold {'booleans' if dtype.kind == 'b' else 'numbers'}")
    if values.size != elements:
        raise ApiError(422, f"{where}: data has {values.size:,} values; shape {shape} takes {elements:,}")
    if dtype.kind in "iu":
        if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
            raise ApiError(422, f"{where}: data for {_DATATYPE_OF[dtype.name]} must be whole numbers")
        info = np.iinfo(dtype)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise ApiError(422, f"{where}: data for {_DATATYPE_OF[dtype.name]} must be within {info.min} to {info.max}")
    return values.astype(dtype).reshape(shape)


def datatype_of(array: np.ndarray) -> str:
    return _DATATYPE_OF[array.dtype.name]


def infer_response(
    model_name: str, model_version: str, request_id: str | None, outputs: dict[str, tuple[np.ndarray, bool]]
) -> Response:
    """The answer: `outputs` maps each output's name to its array and whether it goes binary (after the JSON
    header, its `binary_data_size` in its parameters) or as JSON `data` (flat, row-major)."""
    described, blobs = [], []
    for name, (array, binary) in outputs.items():
        tensor: dict[str, Any] = {"name": name, "datatype": datatype_of(array), "shape": list(array.shape)}
        if binary:
            blob = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = array.ravel().tolist()
        described.append(tensor)
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": described}
    if request_id is not None:
        answer["id"] = request_id
    header = json_bytes(answer)
    if not blobs:
        return Response(header, media_type=JSON_TYPE)
    return Response(b"".join([header, *blobs]), media_type=BINARY_TYPE, headers={HEADER_LENGTH: str(len(header))})
