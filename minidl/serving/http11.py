"""HTTP/1.1 request framing for the built-in server: the head (request line and header
fields) and the body (``Content-Length`` or chunked).

A request head is a few lines of latin-1 text::

    POST /v1/models/m:predict HTTP/1.1\\r\\n
    Host: 127.0.0.1:8501\\r\\n
    Content-Length: 1310\\r\\n
    \\r\\n

The standard library's ``BaseHTTPRequestHandler`` hands the header lines to the ``email``
package, a general MIME parser that costs as much as all the rest of the server's work on a
small request (measured: 45 of the 90 µs it took to answer a no-op). Request headers need far
less: one ``name: value`` per line, looked up without regard to case. :func:`read_headers`
does only that, with the same limits as ``http.client`` (lines of 64 KiB, 100 fields).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

MAX_LINE = 65536     # as http.client._MAXLINE
MAX_HEADERS = 100    # as http.client._MAXHEADERS
_HEX = re.compile(rb"[0-9a-fA-F]{1,16}")


class BadRequest(ValueError):
    """A request the server cannot parse: answered with ``code`` and the connection closed."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Headers:
    """The header fields of a request, in the order received; names are case-insensitive.

    ``get``, ``get_all``, ``[name]``, ``in`` and ``items`` answer like the
    ``email.message.Message`` the standard library's handler would give.
    """

    __slots__ = ("_by_name", "_fields")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        self._by_name: dict[str, list[str]] = {}
        for name, value in fields:
            self._by_name.setdefault(name.lower(), []).append(value)

    def get(self, name: str, default: Any = None) -> Any:
        values = self._by_name.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str, default: Any = None) -> Any:
        return list(self._by_name.get(name.lower(), ())) or default

    def __getitem__(self, name: str) -> str | None:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)


def parse_request_line(line: str) -> tuple[str, str, str, tuple[int, int]]:
    """``(method, target, version, (major, minor))`` of a request line such as
    ``POST /v1/models/m:predict HTTP/1.1``, checked as the standard library checks it.

    ``GET /path`` alone is HTTP/0.9. BadRequest: 400 for bad syntax, 505 for HTTP/2 and later
    (which do not send request lines).
    """
    words = line.split()
    if len(words) == 2:
        if words[0] != "GET":
            raise BadRequest(400, f"Bad HTTP/0.9 request type ({words[0][:40]!r})")
        return words[0], words[1], "HTTP/0.9", (0, 9)
    if len(words) != 3:
        raise BadRequest(400, f"Bad request syntax ({line[:100]!r})")
    method, target, version = words
    numbers = version[5:].split(".") if version.startswith("HTTP/") else []
    if len(numbers) != 2 or not all(n.isascii() and n.isdigit() and len(n) <= 10
                                    for n in numbers):
        raise BadRequest(400, f"Bad request version ({version[:40]!r})")
    number = (int(numbers[0]), int(numbers[1]))
    if number >= (2, 0):
        raise BadRequest(505, f"Invalid HTTP version ({version[5:40]})")
    return method, target, version, number


def read_headers(rfile: Any) -> Headers:
    """Read header lines up to the blank line that ends the head.

    A line that begins with a space or a tab continues the previous field (obsolete line
    folding, which RFC 9112 lets a server replace by a space). A line without a colon, or a
    name with white space, is a 400; a line over ``MAX_LINE`` bytes or more than
    ``MAX_HEADERS`` fields is a 431, as with the standard library.
    """
    fields: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise BadRequest(431, "Line too long")
        if line in (b"\r\n", b"\n", b""):
            return Headers(fields)
        if len(fields) >= MAX_HEADERS:
            raise BadRequest(431, f"Too many headers: more than {MAX_HEADERS}")
        text = line.decode("latin-1").rstrip("\r\n")
        if text[:1] in (" ", "\t"):
            if not fields:
                raise BadRequest(400, "The first header line is a continuation line")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {text.strip()}")
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip() or " " in name or "\t" in name:
            raise BadRequest(400, f"Bad header line {text[:40]!r}")
        fields.append((name, value.strip(" \t")))


def parse_content_length(text: str) -> int | None:
    """A Content-Length value as an int, None if it is not plain ASCII digits. Absurdly long
    values are capped (int() refuses over 4300 digits): they only need to be "too large"."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if len(text) <= 18 else 10 ** 18


class BodyReader:
    """``wsgi.input`` for a body of known length, or chunked when ``length`` is None."""

    def __init__(self, rfile: Any, length: int | None, send_continue: Callable[[], None]) -> None:
        self._rfile = rfile
        self._chunked = length is None
        self._remaining = 0 if length is None else length  # in the current chunk when chunked
        self._send_continue = send_continue
        self.finished = length == 0

    def _next_chunk(self) -> None:
        line = self._rfile.readline(1026)
        size_text = line.split(b";", 1)[0].strip()  # chunk extensions after ";" are ignored
        # hex digits only: int(..., 16) alone would also take "0x1f", "-5" and "1_0"
        if not _HEX.fullmatch(size_text) or not line.endswith(b"\n"):
            raise ValueError(f"invalid chunk size line {line[:40]!r}")
        size = int(size_text, 16)
        if size == 0:
            while self._rfile.readline(1026) not in (b"\r\n", b"\n", b""):
                pass  # trailer fields: not used
            self.finished = True
        self._remaining = size

    def read(self, size: int | None = -1) -> bytes:
        if self.finished:
            return b""
        self._send_continue()
        parts = []
        wanted = sys.maxsize if size is None or size < 0 else size
        while wanted > 0 and not self.finished:
            if self._chunked and self._remaining == 0:
                self._next_chunk()
                continue
            data = self._rfile.read(min(wanted, self._remaining))
            if not data:
                raise ConnectionError("the client closed the connection in the middle of the body")
            parts.append(data)
            wanted -= len(data)
            self._remaining -= len(data)
            if self._remaining == 0:
                if self._chunked:
                    if self._rfile.readline(3) not in (b"\r\n", b"\n"):
                        raise ValueError("a chunk is not followed by CRLF")
                else:
                    self.finished = True
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        line = []
        while not self.finished and (size is None or size < 0 or len(line) < size):
            byte = self.read(1)
            line.append(byte)
            if byte == b"\n":
                break
        return b"".join(line)

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def drop_rest(self, limit: int) -> bool:
        """Read and drop what is left of the body, up to ``limit`` bytes; True if all read."""
        if self._chunked or self._remaining > limit:
            return self.finished
        while not self.finished:
            self.read(1 << 16)
        return True
