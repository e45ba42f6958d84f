"""Reading a minidl file: everything checked before anything is returned (docs/format.md §4)."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import math
import os
import stat
import zipfile
from collections import Counter
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from minidl.io.spec import (
    _ALLOWED_DTYPES,
    _MAX_NPY_HEADER_BYTES,
    _METADATA_MEMBER,
    _NPY_MAGIC,
    _READ_CHUNK_BYTES,
    _SHA256_HEX,
    FORMAT,
    FORMAT_VERSION,
    METADATA_KEY,
    ModelFormatError,
    _key_problem,
)


class _Unreadable(Exception):
    """Problems that stop reading a file before its arrays (internal; never escapes)."""

    def __init__(self, *problems: str) -> None:
        super().__init__(*problems)
        self.problems = list(problems)


def load_npz(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`save_npz`, after checking all of it.

    Returns ``(meta, arrays)``: ``meta`` is the whole JSON document (the saved meta plus
    format, format_version, minidl_version and the arrays table), ``arrays`` maps each key to
    a writable C-contiguous array, in the order they were saved.

    Raises FileNotFoundError for a missing file and ModelFormatError, naming the file and
    what is wrong where, for anything else: not a zip, truncated, a CRC-32 or SHA-256
    mismatch, missing or malformed ``__minidl__``, a newer format_version, an array missing
    from or not listed in the table, a shape or dtype that differs from the table, or a
    non-numeric (e.g. pickled object) array, which is refused unread.
    """
    try:
        with _opened(path) as (archive, document, file_size):
            arrays, problems = _read_arrays(archive, document, file_size, keep=True)
    except _Unreadable as unreadable:
        raise ModelFormatError(_message(path, unreadable.problems)) from None
    if problems:
        raise ModelFormatError(_message(path, problems))
    return document, arrays


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON document of a file, after the zip, JSON and format checks; arrays unread.

    Cheap even for a large file. Use :func:`verify` to check the arrays too.
    """
    try:
        with _opened(path) as (_, document, _):
            return document
    except _Unreadable as unreadable:
        raise ModelFormatError(_message(path, unreadable.problems)) from None


def verify(path: str | os.PathLike[str]) -> list[str]:
    """Every problem found in a file (empty if it is intact), without stopping at the first.

    Each problem is a sentence naming what is wrong and where (key, expected and found).
    Raises FileNotFoundError for a missing file.
    """
    try:
        with _opened(path) as (archive, document, file_size):
            return _read_arrays(archive, document, file_size, keep=False)[1]
    except _Unreadable as unreadable:
        return unreadable.problems


def _message(path: str | os.PathLike[str], problems: list[str]) -> str:
    shown = "; ".join(problems[:3])
    if len(problems) > 3:
        shown += f"; and {len(problems) - 3} more problems (minidl.io.verify lists them all)"
    return f"{os.fspath(path)}: {shown}"


@contextlib.contextmanager
def _opened(path: str | os.PathLike[str]) -> Iterator[tuple[zipfile.ZipFile, dict, int]]:
    """The open archive and its checked JSON document; _Unreadable if it is not a minidl file."""
    with _open_regular_file(path) as file:
        file_size = os.fstat(file.fileno()).st_size
        if not zipfile.is_zipfile(file):
            raise _Unreadable("not a minidl model file: it is not a zip archive (empty, "
                              "truncated, or another kind of file)")
        try:
            archive = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError) as error:
            raise _Unreadable(f"not a minidl model file: its zip directory is damaged "
                              f"({error})") from None
        with archive:
            names = archive.namelist()
            duplicated = sorted(name for name, count in Counter(names).items() if count > 1)
            if duplicated:
                raise _Unreadable(f"the zip archive holds several members named {duplicated}")
            if _METADATA_MEMBER not in names:
                found = ", ".join(repr(_key_of(name)) for name in names[:20]) or "none"
                if len(names) > 20:
                    found += f" and {len(names) - 20} more"
                raise _Unreadable(f"not a minidl model file: it has no {METADATA_KEY!r} entry "
                                  f"(entries found: {found})")
            try:
                npy = _read_npy(archive, archive.getinfo(_METADATA_MEMBER), file_size,
                                f"the {METADATA_KEY!r} entry")
            except _BadArray as bad:
                raise _Unreadable(str(bad)) from None
            if npy.descr != "|u1" or len(npy.shape) != 1:
                raise _Unreadable(f"the {METADATA_KEY!r} entry has dtype {npy.descr!r} and "
                                  f"shape {npy.shape}; expected a 1-D uint8 array of UTF-8 JSON")
            document = _parse_document(bytes(npy.data[npy.offset:]))
            yield archive, document, file_size


def _open_regular_file(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (a link to one is fine).

    A FIFO would block ``open`` until a writer comes and ``/dev/zero`` never ends, so the
    file is opened without blocking and its kind checked on the opened descriptor: no
    window between the check and the open in which the path could be swapped.
    """
    # O_NOCTTY: a terminal named as a model file must not become the controlling terminal
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
                         | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise _Unreadable(f"not a regular file but {_file_kind(mode)}; a model file must "
                              f"be a regular file")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a folder (a model folder holds model.npz)"),
             (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    return next((kind for test, kind in kinds if test(mode)), f"a file of mode {oct(mode)}")


def _key_of(member_name: str) -> str:
    return member_name.removesuffix(".npy")


class _Npy(NamedTuple):
    """A member read whole: the bytes, and the .npy header fields describing them."""

    data: bytearray
    descr: str
    shape: tuple[int, ...]
    offset: int


class _BadArray(Exception):
    """One array's problem: recorded, and the other arrays are still checked."""


def _read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int,
              label: str) -> _Npy:
    """Read one member whole (its CRC-32 checked by zipfile) and parse its .npy header.

    The header is parsed here, not by numpy: a dtype outside the plain numeric ones is
    refused before a single byte of its data is interpreted.
    """
    if info.compress_type != zipfile.ZIP_STORED:
        raise _BadArray(f"{label} is compressed (zip method {info.compress_type}); minidl files "
                        f"store members uncompressed")
    if info.flag_bits & 0x1:
        raise _BadArray(f"{label} is encrypted")
    if info.file_size != info.compress_size:
        raise _BadArray(f"{label} is corrupted: its zip directory gives two sizes "
                        f"({info.file_size} and {info.compress_size} bytes)")
    if not 0 <= info.header_offset <= file_size - info.compress_size:
        raise _BadArray(f"{label} is corrupted: its zip directory places it outside the file "
                        f"(at byte {info.header_offset}, {info.compress_size} bytes long, in a "
                        f"file of {file_size} bytes)")
    data = bytearray(info.file_size)
    view = memoryview(data)
    filled = 0
    try:
        with archive.open(info) as member:
            while filled < len(data):
                count = member.readinto(view[filled:filled + _READ_CHUNK_BYTES])
                if count == 0:
                    break
                filled += count
            if filled < len(data) or member.read(1):
                raise _BadArray(f"{label} is corrupted: its zip entry does not hold the "
                                f"{len(data)} bytes its directory announces")
    except (zipfile.BadZipFile, EOFError) as failure:
        raise _BadArray(f"{label} is corrupted: {failure}") from None
    return _Npy(data, *_parse_npy_header(data, label))


def _parse_npy_header(data: bytearray, label: str) -> tuple[str, tuple[int, ...], int]:
    if len(data) < 10 or bytes(data[:6]) != _NPY_MAGIC:
        raise _BadArray(f"{label} is not a .npy array (no .npy magic string)")
    version = (data[6], data[7])
    if version == (1, 0):
        start, length = 10, int.from_bytes(data[8:10], "little")
    elif version == (2, 0) and len(data) >= 12:
        start, length = 12, int.from_bytes(data[8:12], "little")
    else:
        raise _BadArray(f"{label} uses .npy version {version[0]}.{version[1]}; minidl reads "
                        f"versions 1.0 and 2.0")
    end = start + length
    if length > _MAX_NPY_HEADER_BYTES:
        raise _BadArray(f"{label} announces a .npy header of {length} bytes; minidl reads "
                        f"headers of up to {_MAX_NPY_HEADER_BYTES} bytes")
    if end > len(data):
        raise _BadArray(f"{label} announces a .npy header of {length} bytes, but only "
                        f"{len(data) - start} bytes follow")
    text = bytes(data[start:end]).decode("latin-1")
    try:
        # literal_eval evaluates literals only: no names, calls or imports
        header = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        header = None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise _BadArray(f"{label} has an invalid .npy header {text.strip()[:200]!r}")
    descr, fortran_order, shape = header["descr"], header["fortran_order"], header["shape"]
    if not isinstance(descr, str) or descr not in _ALLOWED_DTYPES:
        raise _BadArray(f"{label} has dtype {descr!r}, not a plain numeric dtype: refused unread "
                        f"(minidl files never hold Python objects)")
    if fortran_order is not False:
        raise _BadArray(f"{label} is stored in Fortran order; minidl files store C order")
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise _BadArray(f"{label} has an invalid .npy shape {shape!r}")
    return descr, shape, end


def _parse_document(payload: bytes) -> dict[str, Any]:
    where = f"the {METADATA_KEY!r} entry"
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _Unreadable(f"{where} is not UTF-8 text ({error})") from None
    try:
        document = json.loads(text, object_pairs_hook=_object_without_duplicates,
                              parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise _Unreadable(f"{where} is not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise _Unreadable(f"{where} holds a JSON {type(document).__name__}, not an object")
    if "format" not in document:
        raise _Unreadable(f"not a minidl model file: {where} has no 'format' field")
    if document["format"] != FORMAT:
        raise _Unreadable(f"not a minidl model file: format is {document['format']!r}, "
                          f"expected {FORMAT!r}")
    version = document.get("format_version")
    if type(version) is not int or version < 1:
        raise _Unreadable(f"format_version is {version!r}; expected an integer from 1 to "
                          f"{FORMAT_VERSION}")
    if version > FORMAT_VERSION:
        from minidl import __version__

        raise _Unreadable(
            f"written by minidl {document.get('minidl_version', '(unknown version)')} with "
            f"format_version {version}; this minidl ({__version__}) reads up to version "
            f"{FORMAT_VERSION}: upgrade minidl")
    if not isinstance(document.get("minidl_version"), str):
        raise _Unreadable(f"minidl_version is {document.get('minidl_version')!r}; expected "
                          f"a version string")
    table = document.get("arrays")
    if not isinstance(table, dict):
        raise _Unreadable(f"the array table 'arrays' is {table!r}; expected an object")
    problems = [problem for key, entry in table.items()
                if (problem := _table_entry_problem(key, entry)) is not None]
    if problems:
        raise _Unreadable(*problems)
    return document


def _table_entry_problem(key: str, entry: object) -> str | None:
    key_problem = _key_problem(key)
    if key_problem is not None:
        return f"the array table has an invalid {key_problem}"
    where = f"the array table's entry for {key!r}"
    if not isinstance(entry, dict) or set(entry) != {"sha256", "shape", "dtype"}:
        return f"{where} is {entry!r}; expected an object with sha256, shape and dtype"
    if not isinstance(entry["sha256"], str) or not _SHA256_HEX.fullmatch(entry["sha256"]):
        return f"{where} has sha256 {entry['sha256']!r}; expected 64 lowercase hex digits"
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        return f"{where} has shape {shape!r}; expected a list of non-negative integers"
    if entry["dtype"] not in _ALLOWED_DTYPES:
        return f"{where} has dtype {entry['dtype']!r}, not a plain numeric dtype"
    return None


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        raise ValueError(f"duplicate keys {sorted(k for k, n in counts.items() if n > 1)}")
    return document


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _read_arrays(archive: zipfile.ZipFile, document: dict[str, Any], file_size: int,
                 keep: bool) -> tuple[dict[str, np.ndarray], list[str]]:
    """Check every member against the table; the arrays (if ``keep``) and all problems."""
    table = document["arrays"]
    members = {info.filename: info for info in archive.infolist()}
    problems = []
    for name in members:
        if not name.endswith(".npy"):
            problems.append(f"unexpected member {name!r} in the archive (not a .npy array)")
        elif name != _METADATA_MEMBER and _key_of(name) not in table:
            problems.append(f"unexpected array {_key_of(name)!r} in the archive: not listed "
                            f"in the metadata")
    arrays = {}
    for key, entry in table.items():
        info = members.get(key + ".npy")
        if info is None:
            problems.append(f"array {key!r} is listed in the metadata but missing from the "
                            f"archive")
            continue
        try:
            array = _checked_array(archive, info, file_size, key, entry)
        except _BadArray as bad:
            problems.append(str(bad))
            continue
        if keep:
            arrays[key] = array
    return arrays, problems


def _checked_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int, key: str,
                   entry: dict[str, Any]) -> np.ndarray:
    label = f"array {key!r}"
    npy = _read_npy(archive, info, file_size, label)
    if npy.descr != entry["dtype"]:
        raise _BadArray(f"{label} has dtype {npy.descr!r} but the metadata says "
                        f"{entry['dtype']!r}")
    if list(npy.shape) != entry["shape"]:
        raise _BadArray(f"{label} has shape {npy.shape} but the metadata says "
                        f"{tuple(entry['shape'])}")
    dtype = np.dtype(npy.descr)
    count = math.prod(npy.shape)
    found_bytes = len(npy.data) - npy.offset
    if found_bytes != count * dtype.itemsize:
        raise _BadArray(f"{label} holds {found_bytes} bytes of data, but shape {npy.shape} "
                        f"of dtype {npy.descr!r} needs {count * dtype.itemsize}")
    digest = hashlib.sha256(memoryview(npy.data)[npy.offset:]).hexdigest()
    if digest != entry["sha256"]:
        raise _BadArray(f"{label} is corrupted: sha256 mismatch (expected "
                        f"{entry['sha256'][:12]}…, found {digest[:12]}…)")
    # frombuffer over the bytearray: a writable array, no second copy of the data
    return np.frombuffer(npy.data, dtype=dtype, count=count, offset=npy.offset).reshape(npy.shape)
