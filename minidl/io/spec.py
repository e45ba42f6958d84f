"""What a minidl file is made of: its names, its versions, the dtypes it may hold, and the
error for a file that is not one (docs/format.md)."""

from __future__ import annotations

import re

import numpy as np

FORMAT = "minidl.npz"
# 2: a layer's arrays may be state as well as parameters (Normalization's mean and
# variance), each under its own dotted name; version 1 files read the same way
FORMAT_VERSION = 2
METADATA_KEY = "__minidl__"

_METADATA_MEMBER = METADATA_KEY + ".npy"
_RESERVED_FIELDS = ("format", "format_version", "minidl_version", "arrays")
# A fixed timestamp makes the same meta and arrays give byte-identical files.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_NPY_MAGIC = b"\x93NUMPY"
_MAX_NPY_HEADER_BYTES = 65535
_READ_CHUNK_BYTES = 1 << 24
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Plain numbers only, in either byte order: every language can read these, none hides an
# object. float128 is refused because its layout differs between platforms.
_ALLOWED_DTYPES = frozenset(
    np.dtype(name).newbyteorder(order).str
    for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                 "uint64", "float16", "float32", "float64")
    for order in "<>")


class ModelFormatError(ValueError):
    """A file that is not a valid minidl file: the message names the file and the problem."""


def _key_problem(key: object) -> str | None:
    """What is wrong with an array key, or None: keys become zip member names ``key.npy``."""
    if not isinstance(key, str):
        return f"key {key!r} is a {type(key).__name__}, not a str"
    if not key:
        return "key '' is empty"
    if "/" in key or "\\" in key:
        return f"key {key!r} contains '/' or '\\', which zip tools read as folders"
    if key.startswith("__"):
        return f"key {key!r} starts with '__', which minidl reserves for {METADATA_KEY!r}"
    if not key.isprintable():
        return f"key {key!r} contains control characters"
    return None
