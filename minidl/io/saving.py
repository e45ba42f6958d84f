"""Writing a minidl file: checked arrays and JSON, written atomically (docs/format.md §7)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import secrets
import stat
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from minidl.io.spec import (
    _ALLOWED_DTYPES,
    _RESERVED_FIELDS,
    _ZIP_DATE_TIME,
    FORMAT,
    FORMAT_VERSION,
    METADATA_KEY,
    _key_problem,
)


def save_npz(path: str | os.PathLike[str], meta: Mapping[str, Any],
             arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``meta`` (JSON-able) and ``arrays`` atomically to the file ``path``.

    The file is written to a temporary file in the same folder, flushed, fsynced and moved
    over ``path`` with ``os.replace``: readers see the old file or the new one, never a mix,
    and a crash mid-save leaves the previous file intact. The folder must exist
    (FileNotFoundError otherwise: a mistyped folder should not be created silently). ``path``
    is used as given (no ``.npz`` is appended). An existing file keeps its permission bits;
    a new one gets the usual ``0o666 & ~umask``.

    Raises ValueError or TypeError, naming the key or the place in ``meta``, for an array key
    that is empty, contains ``/`` or ``\\``, control characters or starts with ``__``; an
    array that is not bool, (u)int8-64 or float16/32/64; ``meta`` that JSON cannot hold
    exactly (non-str keys, NaN or infinity, objects) or that uses a reserved field
    (format, format_version, minidl_version, arrays).
    """
    target = Path(path)
    contiguous = _checked_arrays(arrays)
    document = _document(meta, contiguous)
    payload = json.dumps(document, ensure_ascii=False, allow_nan=False,
                         separators=(",", ":")).encode("utf-8")
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(
            f"save_npz: folder '{folder}' does not exist; create it first "
            f"(minidl does not create folders)")
    if target.is_dir():
        raise IsADirectoryError(f"save_npz: '{target}' is a folder, not a file name")
    replace_atomically(target, lambda file: _write_archive(file, payload, contiguous))


def replace_atomically(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Make the file ``target`` what ``write(file)`` writes, atomically: into a temporary file
    in the same folder, flushed, fsynced, then moved over ``target`` with ``os.replace``, so
    that readers see the old file or the new one and a failure leaves the old one and no
    temporary file. An existing file keeps its permission bits; a new one gets the usual
    ``0o666 & ~umask`` (tempfile.mkstemp's 0o600 would make a model unreadable to, e.g., a
    server run by another user)."""
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else None
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        # KeyboardInterrupt included: never leave a half-written temporary file behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(target.parent)


def _checked_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(arrays, Mapping):
        raise TypeError(f"save_npz: arrays must be a dict of numpy arrays, "
                        f"got {type(arrays).__name__}")
    contiguous = {}
    for key, value in arrays.items():
        problem = _key_problem(key)
        if problem is not None:
            raise (ValueError if isinstance(key, str) else TypeError)(f"save_npz: array {problem}")
        if not isinstance(value, (np.ndarray, np.generic)):
            raise TypeError(f"save_npz: arrays[{key!r}] is a {type(value).__name__}, "
                            f"not a numpy array")
        array = np.asarray(value, order="C")
        if array.dtype.str not in _ALLOWED_DTYPES:
            raise TypeError(
                f"save_npz: arrays[{key!r}] has dtype {array.dtype} ({array.dtype.str!r}); "
                f"minidl files hold only bool, int8-64, uint8-64 and float16/32/64 arrays")
        contiguous[key] = array
    return contiguous


def _document(meta: Mapping[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    from minidl import __version__

    if not isinstance(meta, Mapping):
        raise TypeError(f"save_npz: meta must be a dict, got {type(meta).__name__}")
    reserved = [field for field in _RESERVED_FIELDS if field in meta]
    if reserved:
        raise ValueError(f"save_npz: meta must not contain {reserved}: save_npz writes "
                         f"these fields itself")
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, "minidl_version": __version__}
    document.update(_json_value(meta, "meta", set()))
    document["arrays"] = {
        key: {"sha256": hashlib.sha256(_data_bytes(array)).hexdigest(),
              "shape": list(array.shape), "dtype": array.dtype.str}
        for key, array in arrays.items()}
    return document


def _json_value(value: object, where: str, open_containers: set[int]) -> Any:
    """``value`` as plain JSON types (numpy scalars become Python numbers, tuples lists).

    Refuses, naming ``where``, anything JSON would not give back as it was.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"save_npz: {where} is {float(value)}: JSON has no NaN or "
                             f"infinity (store it in an array instead)")
        return float(value)
    if isinstance(value, np.ndarray):
        raise TypeError(f"save_npz: {where} is a numpy array: pass arrays in `arrays`, "
                        f"not in meta")
    if not isinstance(value, (Mapping, list, tuple)):
        raise TypeError(f"save_npz: {where} is a {type(value).__name__}, which JSON cannot "
                        f"hold")
    if id(value) in open_containers:
        raise ValueError(f"save_npz: {where} contains itself")
    open_containers.add(id(value))
    if isinstance(value, Mapping):
        converted: Any = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"save_npz: {where} has key {key!r} of type "
                                f"{type(key).__name__}; JSON object keys are str")
            converted[key] = _json_value(item, f"{where}[{key!r}]", open_containers)
    else:
        converted = [_json_value(item, f"{where}[{index}]", open_containers)
                     for index, item in enumerate(value)]
    open_containers.discard(id(value))
    return converted


def _data_bytes(array: np.ndarray) -> np.ndarray:
    """The bytes of a C-contiguous array, as a uint8 view (no copy)."""
    return array.reshape(-1).view(np.uint8)


def _write_archive(file: BinaryIO, payload: bytes, arrays: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED) as archive:
        _write_member(archive, METADATA_KEY, np.frombuffer(payload, dtype=np.uint8))
        for key, array in arrays.items():
            _write_member(archive, key, array)


def _write_member(archive: zipfile.ZipFile, key: str, array: np.ndarray) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": array.dtype.str, "fortran_order": False, "shape": array.shape})
    info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_DATE_TIME)
    info.external_attr = 0o644 << 16
    # the exact size up front: zip64 records only for members that need them
    info.file_size = header.tell() + array.nbytes
    with archive.open(info, "w") as member:
        member.write(header.getbuffer())
        member.write(_data_bytes(array))


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; Windows cannot open a folder for syncing)."""
    if os.name == "nt":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as error:
        # some network and FUSE filesystems cannot sync a folder; the file itself is
        # already synced and in place, so there is nothing more to ask of them
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(descriptor)
