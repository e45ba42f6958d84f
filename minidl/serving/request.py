"""One HTTP request as the routes see it (:class:`Request`), and what its answer carries
besides the body (:class:`Exchange`): the extra headers, the content type, and the model,
version and rows that the metrics and the access log report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from minidl.serving.errors import ClientGone, HTTPError

JSON = b"application/json"
REQUEST_ID_HEADER = b"x-request-id"
# a caller's id is kept when it is printable ASCII without spaces, and not too long to log
_CALLERS_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")


def request_id(headers: dict[bytes, bytes]) -> str:
    """The request's id: the caller's ``X-Request-ID`` when it is one, else 128 random bits
    as 32 hex digits (what ``uuid4().hex`` gives, at a fifth of its cost)."""
    given = headers.get(REQUEST_ID_HEADER)
    if given is not None and _CALLERS_REQUEST_ID.fullmatch(given):
        return given.decode("ascii")
    return os.urandom(16).hex()


class Exchange:
    """What the routes tell the app about one answer besides its status and body."""

    __slots__ = ("content_type", "headers", "model", "request_id", "rows", "version")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.headers: list[tuple[bytes, bytes]] = []  # added to the answer's headers
        self.content_type = JSON
        self.model = ""    # a configured model's name, once the URL names one
        self.version = ""  # the version that answered
        self.rows: int | None = None  # rows predicted


class Request:
    """What the routes read of an HTTP request: method, path, headers, and the body."""

    def __init__(self, scope: dict[str, Any], receive: Any, max_body_bytes: int,
                 on_body_done: Callable[[], None] | None = None) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        # as sent (percent-encoded), and the query: the URL TF Serving's routes match
        self.raw_path: bytes | None = scope.get("raw_path")
        self.query_string: bytes = scope.get("query_string", b"")
        # the first of repeated headers counts: the last written into the dict wins
        self.headers: dict[bytes, bytes] = dict(reversed(list(scope["headers"])))
        client = scope.get("client")  # the socket's peer: proxy headers are not read
        self.client: str = client[0] if client else ""
        self._receive = receive
        self._max_body_bytes = max_body_bytes
        self._on_body_done = on_body_done

    def body_done(self) -> None:
        """Say (once) that this request's body is read, or will never be."""
        if self._on_body_done is not None:
            self._on_body_done()
            self._on_body_done = None

    async def body(self) -> bytes:
        """The body, refused with 413 before reading when it is declared too large, and while
        reading when it has no declared length (chunked)."""
        try:
            return await self._read_body()
        finally:
            self.body_done()

    async def _read_body(self) -> bytes:
        limit = self._max_body_bytes
        too_large = HTTPError(413, f"Request body is larger than the limit of {limit} bytes "
                                   "(--max_body_bytes)", [(b"connection", b"close")])
        declared = self.headers.get(b"content-length")
        if declared is not None and int(declared) > limit:  # the engine checked its digits
            raise too_large
        chunks, total, more = [], 0, True
        while more:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise too_large
            chunks.append(chunk)
            more = message.get("more_body", False)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
