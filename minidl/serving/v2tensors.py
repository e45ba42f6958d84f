"""The tensors of an Open Inference Protocol (V2) infer request and answer (docs/serving.md).

A request body is a JSON object, or with the binary tensor data extension a JSON object of
``Inference-Header-Content-Length`` bytes followed by the binary inputs, in the order of
``inputs``::

    {"id": "42", "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                             "data": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]}],
     "outputs": [{"name": "output", "parameters": {"binary_data": false}}]}

``data`` is flat or nested as ``shape``, row-major; binary data is little-endian, row-major,
one byte per BOOL. Any of FP32, FP64, INT8-64, UINT8-64 and BOOL is read, then converted to
the model's dtype, which must hold every value exactly: booleans as 0 and 1, integers up to
2**24 in magnitude for a float32 model (2**53 for float64), FP64 values that are float32
values for a float32 model. Anything else is refused with a message that names the input,
the value and its row-major index. JSON numbers are read as the datatype's nearest value, and
``NaN``, ``Infinity``, ``-Infinity`` are numbers, as tritonclient's JSON writes them.

An output goes back as JSON (a flat ``data`` list, numbers written so that they read back
bit for bit, non-finite ones as ``NaN``, ``Infinity``, ``-Infinity``) or, when asked with
``binary_data`` (or ``binary_data_output`` for all), as bytes after the JSON answer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from minidl.serving import tfjson
from minidl.serving.errors import InvalidArgument
from minidl.serving.payload import INPUT_NAME, OUTPUT_NAME, RawJSON, encode, shape_text

# the protocol's datatypes minidl reads, as little-endian NumPy dtypes (the binary layout)
DATATYPES = {"BOOL": np.dtype("?"), "INT8": np.dtype("i1"), "INT16": np.dtype("<i2"),
             "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"), "UINT8": np.dtype("u1"),
             "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
             "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
_NOT_READ = ("FP16", "BF16", "BYTES")  # the protocol's other datatypes
_MODEL_DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64"}
_JSON_KINDS = {"b": ({bool}, "true or false"), "i": ({int}, "a JSON integer"),
               "u": ({int}, "a JSON integer"), "f": ({int, float}, "a JSON number")}
_SHARED_MEMORY = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")
_BYTE_COUNT = re.compile(rb"[0-9]{1,19}")
_LINE_BREAK = re.compile(r"\n *")


def _quoted(value: Any) -> str:
    """A JSON value as messages show it: tfjson's quote (cut, safe for deep values), on one
    line."""
    return _LINE_BREAK.sub("", tfjson.quote(value))


def datatype_name(dtype: np.dtype) -> str:
    """The protocol's name of a model's dtype: FP32 or FP64."""
    return _MODEL_DATATYPES[np.dtype(dtype)]


@dataclass(frozen=True)
class RequestedOutput:
    """An output the answer holds, and whether as binary data."""

    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """A validated infer request: its id, the batch in the model's dtype, the outputs."""

    id: str | None
    x: np.ndarray
    outputs: list[RequestedOutput]


# ---------------------------------------------------------------- requests

def infer_request(body: bytes, header_length: bytes | None, input_shape: tuple[int, ...],
                  dtype: np.dtype) -> InferRequest:
    """Read an infer request's body (``header_length``: the Inference-Header-Content-Length
    header, None without it) for a model taking batches of ``input_shape`` in ``dtype``.

    Raises InvalidArgument naming the first problem.
    """
    header, binary = _split(body, header_length)
    # as TF Serving's bodies are read: orjson's speed where it agrees with rapidjson
    request = tfjson.loads(header)
    if not isinstance(request, dict):
        raise InvalidArgument("The infer request must be a JSON object ({\"inputs\": [...]}), "
                              f"got {_quoted(request)}")
    request_id = request.get("id")
    if "id" in request and not isinstance(request_id, str):
        raise InvalidArgument(f"The request's id must be a string, got {_quoted(request_id)}")
    binary_output = _flag(_parameters(request, "the request"), "binary_data_output",
                          "the request")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise InvalidArgument("The request's 'inputs' must be a list of input tensors "
                              f"({{'name', 'shape', 'datatype', 'data'}}), got {_quoted(inputs)}")
    names = [entry.get("name") for entry in inputs]
    if len(names) != 1:
        raise InvalidArgument(f"The model takes one input, named {INPUT_NAME!r}; the request "
                              f"has {len(names)}: {', '.join(_quoted(n) for n in names)}")
    if names[0] != INPUT_NAME:
        raise InvalidArgument(f"Unknown input {_quoted(names[0])}: the model's input is named "
                              f"{INPUT_NAME!r}")
    where = f"Input {INPUT_NAME!r}"
    x, used = _input(inputs[0], where, input_shape, dtype, binary, header_length is not None)
    if used != len(binary):
        raise InvalidArgument(f"The body holds {len(binary)} bytes after its JSON header "
                              f"(Inference-Header-Content-Length), but the inputs' "
                              f"binary_data_size add up to {used}")
    return InferRequest(request_id, x, _requested_outputs(request.get("outputs"),
                                                          binary_output))


def _split(body: bytes, header_length: bytes | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary data after it."""
    if header_length is None:
        return body, memoryview(b"")
    if not _BYTE_COUNT.fullmatch(header_length):
        raise InvalidArgument("Inference-Header-Content-Length must be the JSON header's "
                              f"length in bytes, got {_quoted(header_length.decode('latin-1'))}")
    length = int(header_length)
    if length > len(body):
        raise InvalidArgument(f"Inference-Header-Content-Length is {length} but the body "
                              f"holds {len(body)} bytes")
    return body[:length], memoryview(body)[length:]


def _parameters(owner: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = owner.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidArgument(f"The parameters of {where} must be a JSON object, got "
                              f"{_quoted(parameters)}")
    return parameters


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise InvalidArgument(f"Parameter {key!r} of {where} must be true or false, got "
                              f"{_quoted(value)}")
    return value


def _refuse_shared_memory(parameters: dict[str, Any], where: str) -> None:
    for key in _SHARED_MEMORY:
        if key in parameters:
            raise InvalidArgument(f"Parameter {key!r} of {where}: the shared memory "
                                  "extensions are not implemented; send the data in the body")


def _requested_outputs(outputs: Any, binary_output: bool) -> list[RequestedOutput]:
    if outputs is None or outputs == []:  # all outputs, with the request's default form
        return [RequestedOutput(OUTPUT_NAME, binary_output)]
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise InvalidArgument("The request's 'outputs' must be a list of {'name', "
                              f"'parameters'}} objects, got {_quoted(outputs)}")
    requested = []
    for entry in outputs:
        name = entry.get("name")
        if name != OUTPUT_NAME:
            raise InvalidArgument(f"Unknown output {_quoted(name)}: the model has one output, "
                                  f"named {OUTPUT_NAME!r}")
        if requested:
            raise InvalidArgument(f"Output {OUTPUT_NAME!r} is asked for twice")
        where = f"output {OUTPUT_NAME!r}"
        parameters = _parameters(entry, where)
        _refuse_shared_memory(parameters, where)
        if "classification" in parameters:
            raise InvalidArgument(f"Parameter 'classification' of {where}: the classification "
                                  "extension is not implemented; ask for the output and take "
                                  "its top classes on your side")
        binary = _flag(parameters, "binary_data", where) if "binary_data" in parameters \
            else binary_output
        requested.append(RequestedOutput(name, binary))
    return requested


def _input(entry: dict[str, Any], where: str, input_shape: tuple[int, ...], dtype: np.dtype,
           binary: memoryview, has_binary: bool) -> tuple[np.ndarray, int]:
    """One input tensor in the model's dtype, and the bytes of ``binary`` it took."""
    datatype = entry.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidArgument(f"{where}: datatype must be a string such as "
                              f"{datatype_name(dtype)!r}, got {_quoted(datatype)}")
    if datatype in _NOT_READ:
        raise InvalidArgument(f"{where}: datatype {datatype} is not supported; minidl reads "
                              f"{', '.join(DATATYPES)} (the model computes in "
                              f"{datatype_name(dtype)})")
    if datatype not in DATATYPES:
        raise InvalidArgument(f"{where}: unknown datatype {_quoted(datatype)}; minidl reads "
                              f"{', '.join(DATATYPES)}")
    shape = entry.get("shape")
    if (not isinstance(shape, list)
            or not all(type(d) is int and 0 <= d < 2 ** 63 for d in shape)):
        raise InvalidArgument(f"{where}: shape must be a list of non-negative integers, got "
                              f"{_quoted(shape)}")
    expected = (-1, *input_shape)
    if len(shape) != len(expected) or tuple(shape[1:]) != tuple(input_shape) or not shape[0]:
        raise InvalidArgument(f"{where} has shape {shape_text(shape)} but the model expects "
                              f"{shape_text(expected)} (a batch of at least one input of shape "
                              f"{shape_text(input_shape)})")
    parameters = _parameters(entry, where.lower())
    _refuse_shared_memory(parameters, where.lower())
    if "binary_data_size" in parameters:
        if "data" in entry:
            raise InvalidArgument(f"{where} has both 'data' and a binary_data_size: give one")
        if not has_binary:
            raise InvalidArgument(f"{where} has a binary_data_size but the request has no "
                                  "Inference-Header-Content-Length header giving the length "
                                  "of its JSON part")
        values, used = _binary_data(parameters["binary_data_size"], binary, datatype, shape,
                                    where)
    elif "data" in entry:
        values, used = _json_data(entry["data"], datatype, shape, where), 0
    else:
        raise InvalidArgument(f"{where} has no data: give 'data', or binary data and its "
                              "parameters.binary_data_size")
    return _in_model_dtype(values.reshape(shape), datatype, dtype, where), used


def _json_data(data: Any, datatype: str, shape: list[int], where: str) -> np.ndarray:
    """A JSON ``data`` value as a flat array of the datatype."""
    count = math.prod(shape)
    if not isinstance(data, list):
        raise InvalidArgument(f"{where}: data must be a list (flat, or nested as the shape), "
                              f"got {_quoted(data)}")
    try:
        nested = np.array(data, dtype=object)  # C: the nesting's shape, leaves left as they are
    except (ValueError, RecursionError):
        nested = None
    leaves = [] if nested is None else nested.ravel().tolist()
    kinds = set(map(type, leaves))  # C speed: no Python loop over the values
    if nested is None or list in kinds:
        raise InvalidArgument(f"{where}: data is neither flat nor nested as the shape "
                              f"{shape_text(shape)}: its lists differ in length or nest too "
                              "deep")
    if nested.size != count:
        raise InvalidArgument(f"{where}: data holds {nested.size} values but shape "
                              f"{shape_text(shape)} holds {count}")
    if nested.shape not in ((count,), tuple(shape)):
        raise InvalidArgument(f"{where}: data is nested as {shape_text(nested.shape)} but the "
                              f"shape is {shape_text(shape)}: give it flat or nested as the "
                              "shape")
    numpy_dtype = DATATYPES[datatype]
    allowed, wanted = _JSON_KINDS[numpy_dtype.kind]
    if not kinds <= allowed:
        index, value = next((i, v) for i, v in enumerate(leaves) if type(v) not in allowed)
        raise InvalidArgument(f"{where}: data value {_quoted(value)} at index {index} is not "
                              f"{wanted}, as {datatype} needs")
    if numpy_dtype.kind in "iu" and leaves:
        info = np.iinfo(numpy_dtype)
        if min(leaves) < info.min or max(leaves) > info.max:
            index, value = next((i, v) for i, v in enumerate(leaves)
                                if not info.min <= v <= info.max)
            raise InvalidArgument(f"{where}: data value {value} at index {index} is outside "
                                  f"{datatype}'s range [{info.min}, {info.max}]")
    if numpy_dtype.kind != "f":
        return np.array(leaves, dtype=numpy_dtype)
    doubles = np.array(leaves, dtype=np.float64)  # tfjson refused numbers beyond a double
    with np.errstate(over="ignore"):
        values = doubles.astype(numpy_dtype)
    beyond = np.isfinite(doubles) & ~np.isfinite(values)
    if beyond.any():
        index = int(np.argmax(beyond))
        largest = np.finfo(numpy_dtype).max.item()
        raise InvalidArgument(f"{where}: data value {_quoted(leaves[index])} at index {index} "
                              f"is beyond {datatype}'s range (±{largest:.8g})")
    return values


def _binary_data(size: Any, binary: memoryview, datatype: str, shape: list[int],
                 where: str) -> tuple[np.ndarray, int]:
    """An input's binary data, taken from the start of ``binary``."""
    numpy_dtype = DATATYPES[datatype]
    count = math.prod(shape)
    if type(size) is not int or size < 0:
        raise InvalidArgument(f"{where}: binary_data_size must be a byte count, got "
                              f"{_quoted(size)}")
    if size != count * numpy_dtype.itemsize:
        raise InvalidArgument(f"{where}: binary_data_size is {size} but shape "
                              f"{shape_text(shape)} of {datatype} takes "
                              f"{count * numpy_dtype.itemsize} bytes ({numpy_dtype.itemsize} "
                              "a value)")
    if size > len(binary):
        raise InvalidArgument(f"{where}: binary_data_size is {size} but only {len(binary)} "
                              "bytes follow the JSON header")
    if datatype != "BOOL":
        return np.frombuffer(binary, dtype=numpy_dtype, count=count), size
    octets = np.frombuffer(binary, dtype=np.uint8, count=count)
    if octets.size and octets.max() > 1:
        index = int(np.argmax(octets > 1))
        raise InvalidArgument(f"{where}: BOOL byte {octets[index]} at index {index} is "
                              "neither 0 (false) nor 1 (true)")
    return octets.astype(bool), size


def _in_model_dtype(values: np.ndarray, datatype: str, dtype: np.dtype,
                    where: str) -> np.ndarray:
    """``values`` in the model's dtype, or an error when one of them would change."""
    target = np.dtype(dtype)
    name = datatype_name(target)
    flat = values.ravel()
    if values.dtype.kind in "iu":
        limit = 2 ** (np.finfo(target).nmant + 1)  # every integer up to it is exact
        changed = (flat > limit) | (flat < -limit)
        hint = f"integers up to 2**{np.finfo(target).nmant + 1} in magnitude are"
    elif values.dtype.kind == "f" and values.dtype.itemsize > target.itemsize:
        with np.errstate(over="ignore"):
            converted = flat.astype(target)
        changed = (converted != flat) & ~np.isnan(flat)
        hint = f"round to {name} on your side: values that are {name} values are"
    else:
        return values.astype(target)  # booleans, and floats no wider than the model's
    if changed.any():
        index = int(np.argmax(changed))
        raise InvalidArgument(f"{where}: {datatype} value {flat[index].item()!r} at index "
                              f"{index} has no exact {name} value, the model's datatype "
                              f"({hint} accepted)")
    return values.astype(target)


# ---------------------------------------------------------------- answers

def infer_response(model_name: str, version: int, request: InferRequest,
                   outputs: np.ndarray) -> tuple[dict[str, Any], bytes | None]:
    """The answer's JSON object, and the binary outputs that follow it (None: none asked)."""
    datatype = datatype_name(outputs.dtype)
    entries, blobs = [], []
    for requested in request.outputs:
        entry: dict[str, Any] = {"name": requested.name, "datatype": datatype,
                                 "shape": list(outputs.shape)}
        if requested.binary:
            # little-endian, row-major, as the extension says (tobytes copies in C order)
            blob = outputs.astype(outputs.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = RawJSON(tfjson.tensor_json(outputs.ravel()))
        entries.append(encode(entry).decode("utf-8"))
    answer: dict[str, Any] = {"model_name": model_name, "model_version": str(version)}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = RawJSON("[" + ", ".join(entries) + "]")
    return answer, (b"".join(blobs) if blobs else None)
