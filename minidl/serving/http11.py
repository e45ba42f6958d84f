"""HTTP/1.1 request framing for the built-in server: where a head ends, what it says
(request line, header fields, how the body is framed), and the chunked body.

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

import io
import re
from http import HTTPStatus
from typing import Any

MAX_LINE = 65536     # as http.client._MAXLINE
MAX_HEADERS = 100    # as http.client._MAXHEADERS
MAX_HEAD_BYTES = 256 << 10  # request line and header fields together; more is a 431
MAX_CHUNK_LINE = 1024  # a chunk size line with its extensions, or a trailer line
_HEX = re.compile(rb"[0-9a-fA-F]{1,16}")
_HEAD_END = re.compile(rb"\r?\n\r?\n")


def status_line(code: int) -> str:
    """``"404 Not Found"``: the code and its reason phrase."""
    return f"{code} {HTTPStatus(code).phrase}"


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


def find_head_end(buffer: bytearray, start: int = 0) -> int | None:
    """Where the head at the start of ``buffer`` ends (just after its blank line), or None
    if it has not all arrived. ``start``: how far an earlier call already looked, so that a
    head arriving in many pieces is not scanned again from the start each time. BadRequest
    when what arrived is already too long (414 for the request line, 431 for the head)."""
    end = _HEAD_END.search(buffer, max(start - 3, 0))
    if end is not None:
        return end.end()
    if len(buffer) > MAX_LINE and buffer.find(b"\n", 0, MAX_LINE + 1) < 0:
        raise BadRequest(414, "Request line too long")
    if len(buffer) > MAX_HEAD_BYTES:
        raise BadRequest(431, "Request header fields too large")
    return None


class RequestHead:
    """What a request head says: method, target, version, header fields, whether the
    connection stays open, and how the body is framed (``length``, or ``chunked``)."""

    __slots__ = ("chunked", "expects_continue", "headers", "keep_alive", "length", "method",
                 "target", "version")

    def __init__(self, head: bytes, max_body_bytes: int) -> None:
        request_line, _, header_bytes = head.partition(b"\n")
        self.method, self.target, self.version, number = parse_request_line(
            request_line.decode("latin-1").rstrip("\r"))
        self.headers = read_headers(io.BytesIO(header_bytes))
        connection = (self.headers.get("Connection") or "").lower()
        # HTTP/1.1 keeps the connection open unless told otherwise; 1.0 only when asked
        self.keep_alive = connection != "close" and (
            number >= (1, 1) or connection == "keep-alive")
        self.expects_continue = ((self.headers.get("Expect") or "").lower() == "100-continue"
                                 and number >= (1, 1))
        transfer_encoding = self.headers.get("Transfer-Encoding")
        lengths = self.headers.get_all("Content-Length") or []
        self.chunked: ChunkedDecoder | None = None
        self.length: int | None = None
        if transfer_encoding is not None:
            if transfer_encoding.strip().lower() != "chunked" or lengths:
                raise BadRequest(400, "Only 'Transfer-Encoding: chunked', without "
                                      "Content-Length, is supported")
            self.chunked = ChunkedDecoder(max_body_bytes)
        elif len(lengths) > 1 or (lengths and parse_content_length(lengths[0]) is None):
            raise BadRequest(400, "Invalid Content-Length")
        else:
            self.length = parse_content_length(lengths[0]) if lengths else 0


def parse_content_length(text: str) -> int | None:
    """A Content-Length value as an int, None if it is not plain ASCII digits. Absurdly long
    values are capped (int() refuses over 4300 digits): they only need to be "too large"."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if len(text) <= 18 else 10 ** 18


class ChunkedDecoder:
    """A chunked request body, decoded as its bytes arrive::

        5\r\nhello\r\n0\r\n\r\n      ->  b"hello"

    :meth:`feed` takes what has arrived and returns how much of it was used; ``finished`` is
    set by the last (empty) chunk and its trailer lines. Decoding stops once more than
    ``limit`` bytes were decoded (``too_large``): the server need not read the rest.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.finished = False
        self.too_large = False
        self._state = "size"  # size line, data, the CRLF after data, trailer lines
        self._remaining = 0  # bytes left in the current chunk

    def feed(self, data: bytes | bytearray) -> int:
        """Decode from the start of ``data``; returns the number of bytes used. BadRequest
        (400) for a malformed body."""
        position = 0
        while not (self.finished or self.too_large):
            if self._state == "data":
                taken = min(self._remaining, len(data) - position)
                if taken == 0:
                    break
                self.parts.append(bytes(data[position:position + taken]))
                position += taken
                self.size += taken
                self._remaining -= taken
                self.too_large = self.size > self.limit
                if self._remaining == 0:
                    self._state = "data end"
            elif self._state == "data end":
                if data[position:position + 2] == b"\r\n":
                    position += 2
                elif data[position:position + 1] == b"\n":
                    position += 1
                elif data[position:position + 2] in (b"", b"\r"):
                    break  # not here yet
                else:
                    raise BadRequest(400, "A chunk is not followed by CRLF")
                self._state = "size"
            else:
                end = data.find(b"\n", position)
                if (end if end >= 0 else len(data)) - position > MAX_CHUNK_LINE:
                    raise BadRequest(400, "Chunk size or trailer line too long")
                if end < 0:
                    break
                line = bytes(data[position:end + 1])
                position = end + 1
                if self._state == "trailer":
                    self.finished = line.strip() == b""  # trailer fields are not used
                    continue
                size_text = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
                # hex digits only: int(..., 16) alone would also take "0x1f", "-5" and "1_0"
                if not _HEX.fullmatch(size_text):
                    raise BadRequest(400, f"Invalid chunk size line {line[:40]!r}")
                self._remaining = int(size_text, 16)
                self._state = "data" if self._remaining else "trailer"
        return position

    def body(self) -> bytes:
        return b"".join(self.parts)
