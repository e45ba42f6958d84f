"""JSON as TF Serving reads and writes it (rapidjson, in ``json_tensor.cc``).

Reading: orjson (from the serving extra) for a body it reads as rapidjson does, the plain
JSON of nearly every request, in a tenth of the time; otherwise, and without orjson, Python's
C parser, made to answer as rapidjson does with ``kParseNanAndInfFlag``:
``NaN``, ``Infinity`` and ``-Infinity`` are numbers, a number a double cannot hold is an
error (Python's parser makes it inf), the first of repeated keys counts, a NUL byte ends the
document, and errors are rapidjson's texts with its byte offsets (``JSON Parse error: Invalid
value. at offset: 0``). A document nested deeper than Python's parser goes (about 1000
levels, its recursion limit) is refused; rapidjson goes as deep as its stack lasts.

Writing: numbers as TF Serving's WriteDecimal writes them (six significant digits when they
give the number back, else all it takes; ``NaN``, ``Infinity``); values quoted in messages
as rapidjson's pretty writer writes them.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import struct
import sys
from typing import Any

import numpy as np

from minidl.serving.errors import InvalidArgument

try:
    import orjson
except ModuleNotFoundError:  # the serving extra brings it; without it every body is read
    orjson = None  # by Python's parser: the same values and errors, more slowly

# characters of a JSON value quoted in an error message (TF Serving quotes it whole)
MAX_QUOTED = 200
_FLOAT32 = struct.Struct("f")


# ---------------------------------------------------------------- writing

def decimal(value: float, digits: int) -> str:
    """``value`` as TF Serving writes a decimal: six significant digits when they give the
    number back, else ``digits`` (9 for float32, 17 for float64); ``.0`` on whole numbers;
    ``NaN``, ``Infinity``, ``-Infinity``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = f"{value:g}"
    back = float(text)
    if digits == 9:  # the float32 nearest to the text
        try:
            back = _FLOAT32.unpack(_FLOAT32.pack(back))[0]
        except OverflowError:
            back = math.inf
    if back != value:
        text = f"{value:.{digits}g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _decimal_texts(values: np.ndarray) -> list[str]:
    """:func:`decimal` of every value of a float array, vectorised where it can be."""
    floats = values.ravel()
    digits = 9 if floats.dtype == np.float32 else 17
    if floats.dtype not in (np.float32, np.float64):
        floats = floats.astype(np.float64)
    numbers = floats.tolist()
    if len(numbers) <= 64:  # NumPy's calls cost more than they save
        return [decimal(v, digits) for v in numbers]
    texts = [f"{v:g}" for v in numbers]
    with np.errstate(all="ignore"):
        back = np.array(texts, dtype=floats.dtype)
    finite = np.isfinite(floats)
    for i in np.flatnonzero((back != floats) & finite).tolist():
        texts[i] = f"{numbers[i]:.{digits}g}"
    texts = [t if "." in t or "e" in t else t + ".0" for t in texts]
    for i in np.flatnonzero(~finite).tolist():  # "nan", "inf": TF Serving's tokens instead
        texts[i] = decimal(numbers[i], digits)
    return texts


def tensor_json(values: np.ndarray) -> str:
    """A tensor as the JSON text TF Serving writes for it (nested lists)."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        texts = _decimal_texts(values)
    elif values.dtype.kind == "b":
        texts = ["true" if v else "false" for v in values.ravel().tolist()]
    else:
        texts = [str(v) for v in values.ravel().tolist()]
    shape = values.shape
    for axis in range(len(shape) - 1, -1, -1):
        size, groups = shape[axis], math.prod(shape[:axis])
        if size == 0:
            texts = ["[]"] * groups
        else:
            texts = ["[" + ", ".join(texts[i:i + size]) + "]"
                     for i in range(0, len(texts), size)]
    return texts[0]


# ---------------------------------------------------------------- values in messages

def type_name(value: Any) -> str:
    """rapidjson's name for the type of a JSON value."""
    if value is True:
        return "True"
    if value is False:
        return "False"
    if value is None:
        return "Null"
    if isinstance(value, str):
        return "String"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    return "Number"


def _scalar_text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int) and -2 ** 63 <= value < 2 ** 64:
        return str(value)
    return decimal(float(value), 17)  # floats, and integers only a double holds


def quote(value: Any, limit: int = MAX_QUOTED) -> str:
    """A JSON value as TF Serving quotes it in messages (rapidjson's pretty writer: four
    spaces a level), cut after ``limit`` characters. Iterative: values may be deep."""
    out: list[str] = []
    length = 0
    stack: list[Any] = [(value, 0)]
    while stack and length <= limit:
        item, indent = stack.pop()
        if isinstance(item, str) and indent < 0:  # punctuation queued below
            text = item
        elif isinstance(item, (list, dict)) and item:
            pad = "\n" + " " * 4 * (indent + 1)
            close = ("\n" + " " * 4 * indent + ("]" if isinstance(item, list) else "}"), -1)
            # each entry takes two characters at least: more than limit cannot be shown
            entries = itertools.islice(item.items() if isinstance(item, dict)
                                       else enumerate(item), limit + 1)
            queued: list[Any] = []
            for n, (key, child) in enumerate(entries):
                lead = ("[" if isinstance(item, list) else "{") if n == 0 else ","
                prefix = lead + pad + (json.dumps(key, ensure_ascii=False) + ": "
                                       if isinstance(item, dict) else "")
                queued += [(prefix, -1), (child, indent + 1)]
            stack.append(close)
            stack.extend(reversed(queued))
            continue
        elif isinstance(item, list):
            text = "[]"
        elif isinstance(item, dict):
            text = "{}"
        else:
            text = _scalar_text(item)
        out.append(text)
        length += len(text)
    text = "".join(out)
    return text if length <= limit and not stack else text[:limit] + "..."


# ---------------------------------------------------------------- reading

_WHITESPACE = " \t\n\r"
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?', re.DOTALL)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)

# rapidjson's texts (GetParseError_En) for the errors Python's parser reports
_MISS_NAME = "Missing a name for object member."
_INVALID_VALUE = "Invalid value."
_TOO_BIG = "Number too big to be stored in double."
_PARSE_ERRORS = [
    ("Expecting property name enclosed in double quotes", _MISS_NAME),
    ("Illegal trailing comma before end of object", _MISS_NAME),
    ("Illegal trailing comma before end of array", _INVALID_VALUE),
    ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid control character", "Invalid encoding in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
    ("Invalid \\uXXXX escape", "Incorrect hex digit after \\u escape in string."),
    ("Extra data", "The document root must not be followed by other values."),
]


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # rapidjson's FindMember finds the first of repeated keys; Python's dict keeps the last
    result: dict[str, Any] = {}
    for key, value in pairs:
        result.setdefault(key, value)
    return result


_DECODER = json.JSONDecoder(object_pairs_hook=_first_wins)


class _ParseError(Exception):
    def __init__(self, kind: str, offset: int) -> None:
        super().__init__(kind)
        self.kind = kind
        self.offset = offset


def _innermost_container(text: str, pos: int) -> str:
    """``[`` or ``{``: the innermost container still open at ``pos`` (in C: strings are cut
    out by a regex and the brackets counted with NumPy)."""
    head = _STRING.sub(b"", text[:pos].encode("utf-8", "surrogateescape"))
    marks = np.frombuffer(head, dtype=np.uint8)
    opening = (marks == ord("[")) | (marks == ord("{"))
    closing = (marks == ord("]")) | (marks == ord("}"))
    steps = opening.astype(np.int64) - closing
    depth = np.cumsum(steps)
    if not len(depth):
        return "["
    final = depth[-1]
    openers = np.flatnonzero(opening & (depth == final))
    return "[" if not len(openers) else chr(marks[openers[-1]])


def _rapidjson_error(message: str, text: str, pos: int) -> _ParseError:
    """rapidjson's error (text, character position) for an error of Python's parser."""
    char = text[pos] if pos < len(text) else ""
    before = text[pos - 1] if pos > 0 else ""
    if message.startswith(("Extra data", "Expecting ',' delimiter")) and before.isdigit():
        if char == ".":
            return _ParseError("Miss fraction part in number.", pos + 1)
        if char in ("e", "E"):
            return _ParseError("Miss exponent in number.", pos + 1)
    if message.startswith("Expecting value"):
        if pos >= len(text) and not text[:pos].strip(_WHITESPACE):
            return _ParseError("The document is empty.", pos)
        return _ParseError(_INVALID_VALUE, pos)
    if message.startswith("Expecting ',' delimiter"):
        if _innermost_container(text, pos) == "{":
            return _ParseError("Missing a comma or '}' after an object member.", pos)
        return _ParseError("Missing a comma or ']' after an array element.", pos)
    if message.startswith("Unterminated string"):
        return _ParseError("Missing a closing quotation mark in string.", len(text))
    for start, kind in _PARSE_ERRORS:
        if message.startswith(start):
            return _ParseError(kind, pos)
    return _ParseError(_INVALID_VALUE, pos)


# bytes of numbers reduced to four kinds: a digit "0", an exponent mark "e", a sign "+",
# anything else " "; searching the reduced bytes is C-speed (a regex takes 40 ns a byte)
_NUMBER_KINDS = bytes((ord("0") if chr(b).isdigit() and b < 128 else
                       ord("e") if b in b"eE" else ord("+") if b in b"+-" else ord(" "))
                      for b in range(256))


def _may_hold_big_numbers(raw: bytes) -> bool:
    """Whether ``raw`` holds 200 digits in a row or an exponent of 3 digits or more: what a
    number needs to be beyond a double (over 1.8e308)."""
    kinds = raw.translate(_NUMBER_KINDS)
    if b"0" * 200 in kinds:
        return True
    marks = kinds.count(b"e")
    if marks <= 1000:  # one look after each exponent mark; beyond, NumPy is faster
        at = kinds.find(b"e")
        while at >= 0:
            digits = at + 1 + (kinds[at + 1:at + 2] == b"+")
            if kinds[digits:digits + 3] == b"000":
                return True
            at = kinds.find(b"e", at + 1)
        return False
    data = np.frombuffer(kinds + b"    ", dtype=np.uint8)
    marks = np.flatnonzero(data[:-4] == ord("e"))
    marks += 1 + (data[marks + 1] == ord("+"))
    digit = ord("0")
    return bool(((data[marks] == digit) & (data[marks + 1] == digit)
                 & (data[marks + 2] == digit)).any())


def _too_big_number(text: str, raw: bytes) -> int | None:
    """Where the first number a double cannot hold starts in ``text`` (rapidjson refuses it
    while parsing; Python's parser makes it inf or a long int), or None. ``raw``: bytes
    holding those of ``text``, searched first: nearly always no number can be too big."""
    if not _may_hold_big_numbers(raw):
        return None
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] != '"' and math.isinf(float(token)):
            return match.start()
    return None


def _decode_body(body: bytes) -> tuple[str, bytes, int]:
    """The body as text, its bytes, and the bytes skipped before them (a UTF-8 byte order
    mark).

    As rapidjson reads a buffer: a NUL byte ends it, bytes that are not UTF-8 pass
    (inside strings; anywhere else they are an invalid value)."""
    raw = body.split(b"\0", 1)[0]
    skipped = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    raw = raw[skipped:]
    return raw.decode("utf-8", "surrogateescape"), raw, skipped


def loads(body: bytes) -> Any:
    """The JSON value of a body, read as rapidjson reads it. Raises InvalidArgument with
    TF Serving's message."""
    if not body:
        raise InvalidArgument("JSON Parse error: The document is empty")
    value = _plain_loads(body)
    return _rapidjson_loads(body) if value is _NOT_PLAIN else value


_NOT_PLAIN = object()


def _plain_loads(body: bytes) -> Any:
    """orjson's value of ``body`` when it is the one rapidjson reads, else ``_NOT_PLAIN``.

    orjson reads RFC 8259 JSON and refuses the rest, which rapidjson reads its own way (NaN
    and infinities, a number beyond a double, a byte order mark, a NUL, bytes after the
    value, bytes not UTF-8). Two things it reads differently from rapidjson are ruled out by
    counting: a repeated key (orjson keeps the last: a body with no more colons than the
    keys of the objects it read at the top two levels repeats none, and holds no other
    object), and an integer beyond 64 bits (orjson makes it a float: such an integer takes
    19 digits or more in a row).
    """
    if orjson is None:
        return _NOT_PLAIN
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _NOT_PLAIN
    keys = 0
    if type(value) is dict:
        keys = len(value) + sum(len(member) for member in value.values()
                                if type(member) is dict)
    if body.count(b":") != keys or b"0" * 19 in body.translate(_NUMBER_KINDS):
        return _NOT_PLAIN
    return value


def _rapidjson_loads(body: bytes) -> Any:
    """Python's parser answering as rapidjson does (see the module's docstring)."""
    text, raw, skipped = _decode_body(body)
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise InvalidArgument("JSON Parse error: the document is nested too deeply (minidl "
                              f"reads up to about {sys.getrecursionlimit()} levels)") from None
    except json.JSONDecodeError as error:
        raise _parse_error(error, text, raw, skipped) from None
    except ValueError:  # an integer of more digits than int() converts
        big = _too_big_number(text, raw)
        raise _error(_ParseError(_TOO_BIG, big or 0), text, skipped) from None
    _check_numbers(text, raw, skipped)
    return value


def _parse_error(error: json.JSONDecodeError, text: str, raw: bytes,
                 skipped: int) -> InvalidArgument:
    problem = _rapidjson_error(error.msg, text, error.pos)
    big = _too_big_number(text[:error.pos], raw)  # an error of rapidjson's before Python's
    if big is not None:
        problem = _ParseError(_TOO_BIG, big)
    return _error(problem, text, skipped)


def _check_numbers(text: str, raw: bytes, skipped: int) -> None:
    big = _too_big_number(text, raw)
    if big is not None:
        raise _error(_ParseError(_TOO_BIG, big), text, skipped)


def _error(problem: _ParseError, text: str, skipped: int) -> InvalidArgument:
    offset = len(text[:problem.offset].encode("utf-8", "surrogateescape")) + skipped
    return InvalidArgument(f"JSON Parse error: {problem.kind} at offset: {offset}")
