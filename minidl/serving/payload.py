"""Predict request bodies in, predict answers out: TF Serving's JSON forms, validated.

Row form::

    {"signature_name": "serving_default", "instances": [[0.1, 0.2], [0.3, 0.4]]}
    {"instances": [{"input": [0.1, 0.2]}, {"input": [0.3, 0.4]}]}     # named single input
    -> {"predictions": [[...], [...]]}

Columnar form::

    {"inputs": [[0.1, 0.2], [0.3, 0.4]]}   or   {"inputs": {"input": [[0.1, 0.2], [0.3, 0.4]]}}
    -> {"outputs": [[...], [...]]}

Validation is vectorised where it can be exact: ``np.array`` on the parsed lists rejects ragged
rows and tells numbers (dtype kind i/u/f) from strings, nulls and objects (kinds U/O) in C.
Its one blind spot is JSON ``true``/``false``, which it silently turns into 1/0 among numbers;
booleans can only come from those two literals, so the body is searched for them as bytes (a
C-speed substring search) and only when one occurs are the values walked in Python. The walk
also runs on the error path, to say exactly what is wrong.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "input"
OUTPUT_NAME = "output"
MAX_DEPTH = 32


class InvalidArgument(ValueError):
    """The request is malformed or does not fit the model: answered with HTTP 400."""


@dataclass(frozen=True)
class PredictRequest:
    """A validated predict request: the batch as an array and which form to answer in."""

    x: np.ndarray
    columnar: bool


def _reject_constant(name: str) -> float:
    raise InvalidArgument(f"JSON Parse error: {name} is not allowed: inputs must be finite numbers")


# NaN, Infinity and -Infinity are refused while parsing, as TF Serving does
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"a string ({json.dumps(value[:20])}{'...' if len(value) > 20 else ''})"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def find_problem(data: Any, where: str) -> str | None:
    """What makes ``data`` not a rectangular array of finite numbers, or None.

    Level by level, without recursion (the JSON may be nested as deep as the parser allows).
    """
    level = [data]
    depth = 0
    while level:
        are_lists = [isinstance(item, list) for item in level]
        if any(are_lists):
            if not all(are_lists):
                return (f"{where} is ragged: lists and single values are mixed at depth "
                        f"{depth}; every instance must have the same shape")
            lengths = sorted({len(item) for item in level})
            if len(lengths) > 1:
                return (f"{where} is ragged: lists of lengths {lengths[:4]} at depth {depth}; "
                        "every instance must have the same shape")
            depth += 1
            if depth > MAX_DEPTH:
                return f"{where} is nested deeper than {MAX_DEPTH} levels"
            level = [value for item in level for value in item]
            continue
        for value in level:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"{where} contains {_json_type(value)}; every value must be a number"
            if isinstance(value, int) and abs(value) > sys.float_info.max:
                return f"{where} contains an integer too large for a float64"
        return None
    return None


def to_array(data: Any, where: str, *, may_hold_booleans: bool = True) -> np.ndarray:
    """``data`` (parsed JSON) as a float64 array, or InvalidArgument saying what is wrong."""
    if may_hold_booleans:
        problem = find_problem(data, where)
        if problem is not None:
            raise InvalidArgument(problem)
    try:
        array = np.array(data)
    except (ValueError, TypeError, OverflowError):
        raise InvalidArgument(find_problem(data, where)
                              or f"{where} is not a rectangular array of numbers") from None
    if array.dtype.kind not in "iuf":
        # strings, nulls, objects: say which; or integers beyond int64, which are fine
        problem = find_problem(data, where)
        if problem is not None:
            raise InvalidArgument(problem)
        array = np.array(data, dtype=np.float64)
    return array.astype(np.float64, copy=False)


def _shape_text(shape: Sequence[int]) -> str:
    if len(shape) > 8:
        return "[" + ", ".join(str(d) for d in shape[:6]) + f", ... ({len(shape)} dimensions)]"
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _cast(array: np.ndarray, where: str, input_shape: tuple[int, ...],
          dtype: np.dtype) -> np.ndarray:
    if array.ndim == 0:
        raise InvalidArgument(f"{where} is a single value, but the model expects a batch of "
                              f"shape {_shape_text((-1, *input_shape))}")
    if array.shape[0] == 0:
        raise InvalidArgument(f"{where} is empty: send at least one instance of shape "
                              f"{_shape_text(input_shape)}")
    if array.shape[1:] != tuple(input_shape):
        raise InvalidArgument(
            f"{where} has shape {_shape_text(array.shape)} but the model expects "
            f"{_shape_text((-1, *input_shape))} (a batch of inputs of shape "
            f"{_shape_text(input_shape)}): each instance has shape "
            f"{_shape_text(array.shape[1:])}")
    # a float64 beyond float32's range becomes inf in the cast, so one check after the cast
    # finds both kinds of bad value; which one it was is only worked out for the error
    with np.errstate(over="ignore"):
        converted = array.astype(dtype, copy=False)
    if not np.isfinite(converted).all():
        if not np.isfinite(array).all():
            raise InvalidArgument(f"{where} contains a value too large to be finite; "
                                  "inputs must be finite numbers")
        raise InvalidArgument(f"{where} contains a value outside the range of {dtype.name} "
                              f"(largest magnitude {np.finfo(dtype).max:.4g})")
    return converted


def _named_input(value: dict[str, Any], where: str) -> Any:
    if set(value) != {INPUT_NAME}:
        names = ", ".join(repr(k) for k in sorted(value)) or "nothing"
        raise InvalidArgument(f"{where} names {names}, but the model has one input, "
                              f"named '{INPUT_NAME}'")
    return value[INPUT_NAME]


def parse_predict_request(body: bytes, input_shape: tuple[int, ...],
                          dtype: np.dtype) -> PredictRequest:
    """Parse and validate a predict body against the model's input shape and dtype."""
    if not body.strip():
        raise InvalidArgument("JSON Parse error: the request body is empty; send "
                              '{"instances": [...]} or {"inputs": ...}')
    try:
        # what json.loads does with bytes, with one decoder made once instead of per call
        request = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except InvalidArgument:
        raise
    except RecursionError:
        raise InvalidArgument("JSON Parse error: the document is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, bad UTF-8, integer with too many digits
        raise InvalidArgument(f"JSON Parse error: {error}") from None
    if not isinstance(request, dict):
        raise InvalidArgument('the request body must be a JSON object: {"instances": [...]} '
                              'or {"inputs": ...}')
    signature = request.get("signature_name", "")
    if not isinstance(signature, str):
        raise InvalidArgument("signature_name must be a string")
    if signature not in ("", SIGNATURE_NAME):
        raise InvalidArgument(f'Serving signature name: "{signature}" not found in signature def '
                              f"(this model has only '{SIGNATURE_NAME}')")
    has_instances, has_inputs = "instances" in request, "inputs" in request
    if has_instances and has_inputs:
        raise InvalidArgument("the request has both 'instances' and 'inputs': "
                              "send one of them (row or columnar form)")
    if not has_instances and not has_inputs:
        raise InvalidArgument("missing 'inputs' or 'instances' key in the request")
    may_hold_booleans = b"true" in body or b"false" in body
    dtype = np.dtype(dtype)
    if has_instances:
        instances = request["instances"]
        if not isinstance(instances, list):
            raise InvalidArgument("'instances' must be a list, one entry per example")
        are_objects = [isinstance(item, dict) for item in instances]
        if any(are_objects):
            if not all(are_objects):
                raise InvalidArgument("'instances' mixes objects and plain values: use one form")
            instances = [_named_input(item, "an instance") for item in instances]
        array = to_array(instances, "instances", may_hold_booleans=may_hold_booleans)
        return PredictRequest(_cast(array, "instances", input_shape, dtype), columnar=False)
    inputs = request["inputs"]
    if isinstance(inputs, dict):
        inputs = _named_input(inputs, "'inputs'")
    array = to_array(inputs, "inputs", may_hold_booleans=may_hold_booleans)
    return PredictRequest(_cast(array, "inputs", input_shape, dtype), columnar=True)


def predict_response(outputs: np.ndarray, columnar: bool) -> dict[str, Any]:
    """The answer body; InvalidArgument if the model produced inf/NaN for these inputs."""
    if not np.isfinite(outputs).all():
        raise InvalidArgument("the model's output is not finite (inf or NaN) for these inputs; "
                              "check that they are in the range the model was trained on")
    values = outputs.tolist()
    return {"outputs": values} if columnar else {"predictions": values}


def dtype_name(dtype: np.dtype) -> str:
    """TensorFlow's name for a NumPy dtype, as metadata reports it."""
    names = {"float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE",
             "int32": "DT_INT32", "int64": "DT_INT64"}
    return names.get(np.dtype(dtype).name, "DT_INVALID")


def signature_def(input_shape: tuple[int, ...], output_shape: tuple[int, ...],
                  dtype: np.dtype) -> dict[str, Any]:
    """The ``serving_default`` signature of a model, in TF Serving's metadata layout."""

    def tensor(name: str, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"dtype": dtype_name(dtype), "name": name,
                "tensor_shape": {"dim": [{"size": str(d)} for d in (-1, *shape)],
                                 "unknown_rank": False}}

    return {"signature_def": {SIGNATURE_NAME: {
        "inputs": {INPUT_NAME: tensor(INPUT_NAME, tuple(input_shape))},
        "outputs": {OUTPUT_NAME: tensor(OUTPUT_NAME, tuple(output_shape))},
        "method_name": "tensorflow/serving/predict"}}}
