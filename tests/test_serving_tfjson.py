"""tfjson reads a body with orjson when orjson reads it as rapidjson does, and with Python's
parser made to answer as rapidjson otherwise: the two must never give different values.

The oracle is the slow path itself (``_rapidjson_loads``, checked against TF Serving's own
cases in test_serving_tfserving.py); the documents are written as text, so that they can
repeat keys, hold integers beyond 64 bits, long mantissas, NaN and odd spacing.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minidl.serving import tfjson
from minidl.serving.errors import InvalidArgument

_SPACE = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])


def _number_texts() -> st.SearchStrategy[str]:
    floats = st.floats(allow_nan=False, allow_infinity=False).map(repr)
    singles = st.floats(width=32, allow_nan=False, allow_infinity=False).map(repr)
    integers = st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str)
    # about 64 bits and beyond, where orjson makes an integer a float
    long_integers = st.builds(lambda sign, size: sign * (2 ** size), st.sampled_from([1, -1]),
                              st.integers(min_value=60, max_value=110)).map(str)
    digits = st.text("0123456789", min_size=1, max_size=30)
    decimals = st.builds(lambda sign, whole, fraction, exponent: f"{sign}{int(whole)}"
                         f"{'.' + fraction if fraction else ''}{exponent}",
                         st.sampled_from(["", "-"]), digits,
                         st.text("0123456789", max_size=25),
                         st.sampled_from(["", "e5", "E-7", "e+300", "e-320", "e400", "e-400"]))
    tokens = st.sampled_from(["NaN", "Infinity", "-Infinity", "-0", "-0.0", "0e0"])
    return st.one_of(floats, singles, integers, long_integers, decimals, tokens)


_SCALARS = st.one_of(
    _number_texts(),
    st.sampled_from(["true", "false", "null"]),
    st.text(max_size=8).map(lambda s: json.dumps(s, ensure_ascii=False)),
    st.text(max_size=8).map(json.dumps),
)


def _containers(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    arrays = st.builds(lambda space, items: "[" + f",{space}".join(items) + "]",
                       _SPACE, st.lists(children, max_size=5))
    # few key names, so that keys repeat often
    members = st.tuples(st.sampled_from(["instances", "inputs", "a", "b", "x:y"]), _SPACE,
                        children)
    objects = st.builds(lambda items: "{" + ",".join(f"{json.dumps(k)}{s}:{s}{v}"
                                                     for k, s, v in items) + "}",
                        st.lists(members, max_size=4))
    return st.one_of(arrays, objects)


DOCUMENTS = st.recursive(_SCALARS, _containers, max_leaves=20)


def _exactly(value):
    """``value`` with every float as its bits, so that equal means the very same value
    (NaN equals NaN, -0.0 differs from 0.0, 1 differs from 1.0)."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, list):
        return [_exactly(item) for item in value]
    if isinstance(value, dict):
        return {key: _exactly(item) for key, item in value.items()}
    return (type(value).__name__, value)


def _read(read, body: bytes):
    try:
        return _exactly(read(body))
    except InvalidArgument as error:
        return ("error", str(error))


@given(DOCUMENTS, _SPACE, _SPACE)
def test_the_fast_path_reads_every_document_as_the_rapidjson_path_does(document, before,
                                                                        after):
    body = (before + document + after).encode("utf-8", "surrogatepass")
    assert _read(tfjson.loads, body) == _read(tfjson._rapidjson_loads, body)


@pytest.mark.parametrize("body, expected", [
    (b'{"a": 1, "a": 2}', {"a": 1}),  # the first of repeated keys counts
    (b'{"inputs": {"x": [1], "x": [2]}}', {"inputs": {"x": [1]}}),
    (b'{"instances": [{"a": 1, "a": 2}]}', {"instances": [{"a": 1}]}),
    (b"[123456789012345678901234567890]", [123456789012345678901234567890]),  # an int
    (b"[-9223372036854775809]", [-9223372036854775809]),
    (b"[NaN, -Infinity]", [math.nan, -math.inf]),
    (b"[1] x", None),  # bytes after the value: TF Serving's message
])
def test_what_orjson_reads_otherwise_is_read_as_rapidjson_reads_it(body, expected):
    if expected is None:
        with pytest.raises(InvalidArgument, match="The document root must not be followed"):
            tfjson.loads(body)
    else:
        assert _exactly(tfjson.loads(body)) == _exactly(expected)


def test_a_predict_body_takes_the_fast_path():
    # what keeps minidl's predicts fast (benchmarks/SERVING.md): a TF Serving client's rows,
    # columns and signature name are read by orjson
    rows = np.random.default_rng(0).random((3, 64), dtype=np.float32).tolist()
    for document in ({"instances": rows}, {"signature_name": "serving_default", "inputs": rows},
                     {"inputs": {"x": rows}}):
        body = json.dumps(document).encode()
        assert tfjson._plain_loads(body) is not tfjson._NOT_PLAIN
        assert tfjson.loads(body) == document


def test_without_orjson_the_same_values_are_read(monkeypatch):
    body = json.dumps({"instances": [[0.1, -2.5e-8, 3]], "signature_name": "s"}).encode()
    fast = _exactly(tfjson.loads(body))
    monkeypatch.setattr(tfjson, "orjson", None)
    assert tfjson._plain_loads(body) is tfjson._NOT_PLAIN
    assert _exactly(tfjson.loads(body)) == fast
