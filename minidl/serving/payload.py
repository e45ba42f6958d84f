"""Predict request bodies in, predict answers out: TF Serving's JSON forms, with its checks,
in its order and with its messages (``json_tensor.cc``; docs/serving.md).

Row form::

    {"signature_name": "serving_default", "instances": [[0.1, 0.2], [0.3, 0.4]]}
    {"instances": [{"input": [0.1, 0.2]}, {"input": [0.3, 0.4]}]}     # named single input
    -> {"predictions": [[...], [...]]}

Columnar form::

    {"inputs": [[0.1, 0.2], [0.3, 0.4]]}   or   {"inputs": {"input": [[0.1, 0.2], [0.3, 0.4]]}}
    -> {"outputs": [[...], [...]]}

A body is read in two steps, as TF Serving does: :func:`parse_json` (JSON syntax, a
top-level object, ``signature_name`` a string) before the model is looked up, then
:func:`predict_request` against the model found (signature, ``instances``/``inputs``, the
tensor's values, the model's input shape). ``NaN``, ``Infinity`` and ``-Infinity`` are
numbers; a number a double cannot hold is a parse error; a value a float32 input cannot hold
(beyond its range, or an integer above 2**24 - 1) is refused as a loss of precision.

Tensors are checked in two ways that give the same answer. The fast one is vectorised:
``np.array`` on the parsed lists rejects ragged lists and tells numbers (dtype kind i/u/f)
from strings, nulls and objects in C; JSON ``true``/``false`` are its one blind spot, so it
is only taken when the body holds neither. Whenever it cannot vouch for a tensor, the values
are walked in document order as TF Serving walks them, which finds the first problem and
says it in TF Serving's words.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from minidl.serving import tfjson
from minidl.serving.errors import InvalidArgument
from minidl.serving.tfjson import quote

__all__ = ["Document", "InvalidArgument", "PredictRequest", "RawJSON",
           "check_signature", "encode", "parse_json", "parse_predict_request",
           "predict_request", "predict_response"]

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "input"
OUTPUT_NAME = "output"


@dataclass(frozen=True)
class Document:
    """A parsed predict body: the top-level object, and whether a ``true``/``false`` may be
    among its values (the one thing ``np.array`` does not tell)."""

    value: dict[str, Any]
    may_hold_booleans: bool


@dataclass(frozen=True)
class PredictRequest:
    """A validated predict request: the batch as an array and which form to answer in."""

    x: np.ndarray
    columnar: bool


# ---------------------------------------------------------------- answers

class RawJSON(str):
    """JSON text that :func:`encode` writes as it is."""


_ENCODER = json.JSONEncoder(allow_nan=True)  # made once, not per answer as json.dumps does


def encode(answer: Any) -> bytes:
    """An answer as the bytes of its JSON document; NaN and infinities as TF Serving writes
    them (``NaN``, ``Infinity``, ``-Infinity``), :class:`RawJSON` values as they are."""
    if isinstance(answer, dict) and any(isinstance(v, RawJSON) for v in answer.values()):
        members = [_ENCODER.encode(key) + ": " + (value if isinstance(value, RawJSON)
                                                  else _ENCODER.encode(value))
                   for key, value in answer.items()]
        return ("{" + ", ".join(members) + "}").encode("utf-8")
    return _ENCODER.encode(answer).encode("utf-8")


def predict_response(outputs: np.ndarray, columnar: bool) -> dict[str, Any]:
    """The answer body (``predictions`` for the row form, ``outputs`` for the columnar one);
    non-finite outputs are written as TF Serving writes them."""
    return {"outputs" if columnar else "predictions": RawJSON(tfjson.tensor_json(outputs))}


# ---------------------------------------------------------------- documents

def _document(value: Any, body: bytes) -> Document:
    # ParseJson: an object; FillSignature: signature_name, if there, a string
    if not isinstance(value, dict):
        raise InvalidArgument(f"JSON Value: {quote(value)} Is not object")
    if not isinstance(value.get("signature_name", ""), str):
        raise InvalidArgument(f"JSON Value: {quote(value)} not formatted correctly. "
                              "'signature_name' key must be a string value.")
    return Document(value, b"true" in body or b"false" in body)


def parse_json(body: bytes) -> Document:
    """Read a predict body as TF Serving does before it looks the model up: the JSON (see
    :mod:`minidl.serving.tfjson`), a top-level object, ``signature_name`` a string if any.

    Raises InvalidArgument with TF Serving's message.
    """
    return _document(tfjson.loads(body), body)


# ---------------------------------------------------------------- tensors

@dataclass(frozen=True)
class _DType:
    """What TF Serving checks a JSON value against for one input dtype."""

    numpy: np.dtype
    name: str          # DataTypeString: "float", "double"
    max_integer: int   # larger integers lose precision
    max_value: float   # larger magnitudes lose precision


_DTYPES = {np.dtype(np.float32): _DType(np.dtype(np.float32), "float", 2 ** 24 - 1,
                                         float(np.finfo(np.float32).max)),
           np.dtype(np.float64): _DType(np.dtype(np.float64), "double", 2 ** 53 - 1, math.inf)}


def _dtype(dtype: np.dtype) -> _DType:
    found = _DTYPES.get(np.dtype(dtype))
    if found is None:
        raise TypeError(f"minidl serves float32 and float64 models, not {dtype}")
    return found


def _is_b64(value: Any) -> bool:
    return (isinstance(value, dict) and len(value) == 1
            and isinstance(value.get("b64"), str))


def _is_element_object(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _dense_shape(value: Any) -> list[int]:
    """The shape TF Serving reads off a JSON value: the lengths along its first elements."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _shape_string(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _leaf(value: Any, dtype: _DType) -> float | int:
    """One JSON value for a float tensor, or TF Serving's error for it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"JSON Value: {quote(value)} Type: {tfjson.type_name(value)} is not "
                              f"of expected type: {dtype.name}")
    if isinstance(value, int) and -2 ** 63 <= value < 2 ** 64:  # an integer token
        if abs(value) > dtype.max_integer:
            raise InvalidArgument(f"Cannot convert JSON value: {value} to {dtype.name} "
                                  "without loss of precision.")
        return value
    number = float(value)  # a decimal, or an integer only a double holds
    if math.isfinite(number) and abs(number) > dtype.max_value:
        raise InvalidArgument(f"Cannot convert JSON value: {tfjson.decimal(number, 17)} to "
                              f"{dtype.name} without loss of precision.")
    return number


@dataclass(frozen=True)
class _Walked:
    """A tensor's values in order and its shape, before they are an array (which they can
    only be once the shape is known to fit the model: NumPy has at most 64 dimensions)."""

    values: list[float | int]
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.values)

    def array(self, dtype: np.dtype) -> np.ndarray:
        return np.array(self.values, dtype=np.float64).reshape(self.shape).astype(dtype)


def _walk(value: Any, dtype: _DType) -> _Walked:
    """A JSON value as a tensor, walked as TF Serving's FillTensorProto walks it: its shape
    is read along first elements, then every list must have the size of its level and every
    value sit at the last level. Raises TF Serving's error for the first problem."""
    shape = _dense_shape(value)
    rank = len(shape)
    values: list[float | int] = []
    iterators = [iter((value,))]
    while iterators:
        level = len(iterators) - 1
        item = next(iterators[-1], iterators)  # the list of iterators: the end sentinel
        if item is iterators:
            iterators.pop()
        elif isinstance(item, list):
            if level >= rank:
                raise InvalidArgument(f"Encountered list at unexpected level: {level} "
                                      f"expected < {rank}")
            if len(item) != shape[level]:
                raise InvalidArgument(f"Encountered list at unexpected size: {len(item)} at "
                                      f"level: {level} expected size: {shape[level]}")
            iterators.append(iter(item))
        else:
            if level != rank:
                raise InvalidArgument(f"JSON Value: {quote(item)} found at incorrect level: "
                                      f"{level + 1} in the JSON DOM. Expected at level: {rank}")
            values.append(_leaf(item, dtype))
    return _Walked(values, tuple(shape))


def _vectorised(value: Any, dtype: _DType, may_hold_booleans: bool) -> np.ndarray | None:
    """The tensor of a JSON value when ``np.array`` can vouch that TF Serving accepts it
    (rectangular, numbers only, none losing precision), else None: walk it then."""
    if may_hold_booleans:
        return None
    shape = _dense_shape(value)
    if len(shape) > 32:
        return None
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return None
    if array.shape != tuple(shape) or array.dtype.kind not in "iuf" or not array.size:
        return None
    if array.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            magnitude = np.abs(array)
            big = magnitude > dtype.max_integer
            # beyond max_integer an integer token loses precision, a decimal may not: walk
            if big.any() and np.isfinite(magnitude[big]).any():
                return None
    elif array.max() > dtype.max_integer or array.min() < -dtype.max_integer:
        return None
    with np.errstate(over="ignore"):
        return array.astype(dtype.numpy)


def _tensor(value: Any, dtype: _DType, may_hold_booleans: bool) -> np.ndarray | _Walked:
    array = _vectorised(value, dtype, may_hold_booleans)
    return _walk(value, dtype) if array is None else array


def _instances(instances: list[Any], dtype: _DType,
               may_hold_booleans: bool) -> np.ndarray | _Walked:
    """The batch of the row form, as TF Serving's FillTensorMapFromInstancesList builds it."""
    named = _is_element_object(instances[0])
    if named:
        if all(type(item) is dict and len(item) == 1 and INPUT_NAME in item
               for item in instances):
            batch = _vectorised([item[INPUT_NAME] for item in instances], dtype,
                                may_hold_booleans)
            if batch is not None:
                return batch
    elif not any(_is_element_object(item) for item in instances):
        batch = _vectorised(instances, dtype, may_hold_booleans)
        if batch is not None and batch.ndim >= 1:
            return batch
    # walk the instances one by one, as TF Serving does, to find the first problem
    tensors: list[_Walked] = []

    def add(value: Any) -> None:
        tensor = _walk(value, dtype)
        if tensors and tensors[0].size != tensor.size:
            raise InvalidArgument(f"Expecting tensor size: {tensors[0].size} but got: "
                                  f"{tensor.size}")
        if tensors and tensors[0].shape != tensor.shape:
            raise InvalidArgument(f"Expecting shape {_shape_string(tensors[0].shape)} but "
                                  f"got: {_shape_string(tensor.shape)}")
        tensors.append(tensor)

    for n, item in enumerate(instances):
        if named:
            if not _is_element_object(item):
                raise InvalidArgument(f"Expecting object but got list at item {n} of input "
                                      "list")
            for key, value in item.items():
                try:
                    if key != INPUT_NAME:
                        raise InvalidArgument(f"JSON object: does not have named input: {key}")
                    add(value)
                except InvalidArgument as error:
                    raise InvalidArgument(f"Failed to process element: {n} key: {key} of "
                                          "'instances' list. Error: INVALID_ARGUMENT: "
                                          f"{error}") from None
            if set(item) != {INPUT_NAME}:
                raise InvalidArgument(f"Failed to process element: {n} of 'instances' list. "
                                      f"JSON object: {quote(item)} must only have keys: "
                                      f"{INPUT_NAME}")
        else:
            if _is_element_object(item):
                raise InvalidArgument(f"Expecting value/list but got object at item {n} of "
                                      "input list")
            try:
                add(item)
            except InvalidArgument as error:
                raise InvalidArgument(f"Failed to process element: {n} of 'instances' list. "
                                      f"Error: INVALID_ARGUMENT: {error}") from None
    return _Walked([v for tensor in tensors for v in tensor.values],
                   (len(tensors), *tensors[0].shape))


def shape_text(shape: Sequence[int]) -> str:
    """A shape as messages show it, ``[2, 3]``; past 8 dimensions, the first 6 and a count."""
    if len(shape) > 8:
        return "[" + ", ".join(str(d) for d in shape[:6]) + f", ... ({len(shape)} dimensions)]"
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _fit(batch: np.ndarray | _Walked, where: str, input_shape: tuple[int, ...],
         dtype: _DType) -> np.ndarray:
    """The batch as an array if it has the model's input shape; else minidl's message (TF
    Serving's would come from the model's graph)."""
    shape = batch.shape
    if not shape:
        raise InvalidArgument(f"{where} is a single value, but the model expects a batch of "
                              f"shape {shape_text((-1, *input_shape))}")
    if shape[1:] != tuple(input_shape):
        raise InvalidArgument(
            f"{where} has shape {shape_text(shape)} but the model expects "
            f"{shape_text((-1, *input_shape))} (a batch of inputs of shape "
            f"{shape_text(input_shape)}): each instance has shape "
            f"{shape_text(shape[1:])}")
    return batch.array(dtype.numpy) if isinstance(batch, _Walked) else batch


def check_signature(document: Document) -> None:
    """TF Serving's check of the signature name, made once the model is found."""
    signature = document.value.get("signature_name", "") or SIGNATURE_NAME
    if signature != SIGNATURE_NAME:
        raise InvalidArgument(f'Serving signature name: "{signature}" not found in signature '
                              "def")


def predict_request(document: Document, input_shape: tuple[int, ...],
                    dtype: np.dtype) -> PredictRequest:
    """The checks TF Serving makes once the model is found, in its order: the signature,
    ``instances`` or ``inputs``, the tensor's values; then the model's input shape."""
    check_signature(document)
    request = document.value
    kind = _dtype(dtype)
    if "instances" in request:
        if "inputs" in request:
            raise InvalidArgument(f"JSON Value: {quote(request)} Not formatted correctly "
                                  "expecting only one of 'inputs' or 'instances' keys to exist ")
        instances = request["instances"]
        if not isinstance(instances, list):
            raise InvalidArgument(f"JSON Value: {quote(request)} Excepting 'instances' to be "
                                  "an list/array")
        if not instances:
            raise InvalidArgument(f"JSON Value: {quote(request)} No values in 'instances' "
                                  "array")
        batch = _instances(instances, kind, document.may_hold_booleans)
        return PredictRequest(_fit(batch, "instances", input_shape, kind), columnar=False)
    if "inputs" in request:
        inputs = request["inputs"]
        if _is_element_object(inputs):
            if INPUT_NAME not in inputs:  # other names are ignored, as TF Serving does
                raise InvalidArgument(f"Missing named input: {INPUT_NAME} in 'inputs' object.")
            inputs = inputs[INPUT_NAME]
        batch = _tensor(inputs, kind, document.may_hold_booleans)
        return PredictRequest(_fit(batch, "inputs", input_shape, kind), columnar=True)
    raise InvalidArgument("Missing 'inputs' or 'instances' key")


def parse_predict_request(body: bytes, input_shape: tuple[int, ...],
                          dtype: np.dtype) -> PredictRequest:
    """:func:`parse_json` then :func:`predict_request`, for a body known to be for this
    model."""
    return predict_request(parse_json(body), input_shape, dtype)
