"""One HTTP request through a WSGI app (PEP 3333), for the built-in server: the ``environ``
built from the request, the app called, its answer turned into the bytes to send.

Nothing is sent before the answer is complete, and every answer carries ``Content-Length``,
so a connection stays usable for the next request. The work comes in two steps,
:meth:`WSGIJob.call` and :meth:`WSGIJob.collect`, because an app may compute its answer
when it is first iterated (minidl's batched predicts do): a server that calls the app for
every request it has received before it collects the first answer lets such an app gather
them into one batch.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from minidl.serving import http11

logger = logging.getLogger("minidl.serving")

SERVER_NAME = "minidl-serving"
_last_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """Now as an HTTP ``Date`` value. It changes once a second, so it is formatted once a
    second rather than per request; one tuple is replaced whole, so no thread sees a
    half-updated pair."""
    global _last_date
    second = int(time.time())
    if _last_date[0] != second:
        _last_date = (second, email.utils.formatdate(second, usegmt=True))
    return _last_date[1]


def error_answer(code: int, message: str, extra_headers: str = "") -> bytes:
    """A whole answer that closes the connection, head and ``{"error": message}``, for an
    error found by the server itself. ``extra_headers``: lines ending in CRLF."""
    body = json.dumps({"error": message}).encode("utf-8")
    return (f"HTTP/1.1 {http11.status_line(code)}\r\nDate: {http_date()}\r\n"
            f"Server: {SERVER_NAME}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra_headers}Connection: close\r\n\r\n"
            ).encode("latin-1") + body


def build_environ(head: http11.RequestHead, body: bytes, server_address: Any,
                  client_address: Any) -> dict[str, Any]:
    """PEP 3333's ``environ`` for a request whose whole body has been received."""
    path, _, query = head.target.partition("?")
    if path.startswith("//"):  # "//host/path" would read as a URL without scheme
        path = "/" + path.lstrip("/")
    host, port = server_address[:2]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": head.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(path, encoding="latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": str(host),
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": head.version,
        "REMOTE_ADDR": str(client_address[0]) if client_address else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,  # slow requests run on threads of their own
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if head.length is not None:
        environ["CONTENT_LENGTH"] = str(head.length)  # normalised: plain digits
    content_type = head.headers.get("Content-Type")
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    for name, value in head.headers.items():
        # "X_API_Key" must not pass for "X-API-Key": drop names with underscores
        if "_" in name or name.lower() in ("content-type", "content-length"):
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


class WSGIJob:
    """One request on its way through the app: :meth:`call` runs the app, :meth:`collect`
    turns its answer into the bytes to send (``output``) and says whether the connection
    closes after them (``close``). Neither raises: an app that fails is answered 500.

    ``body_unread``: the body was refused without being read (over the size limit), so the
    connection cannot carry another request and closes after the answer.
    """

    __slots__ = ("app", "body_unread", "close", "connection", "environ", "head", "output",
                 "result", "status", "written")

    def __init__(self, app: Callable[..., Any], head: http11.RequestHead,
                 environ: dict[str, Any], body_unread: bool, connection: Any) -> None:
        self.app = app
        self.head = head
        self.environ = environ
        self.body_unread = body_unread
        self.connection = connection  # the server's, for it to find the job's connection
        self.result: Iterable[bytes] | None = None
        self.status: tuple[str, list[tuple[str, str]]] | None = None
        self.written: list[bytes] = []
        self.output: bytes | None = None
        self.close = False

    def _start_response(self, status: str, headers: list[tuple[str, str]],
                        exc_info: Any = None) -> Callable[[bytes], None]:
        # nothing is sent before the answer is complete, so a second call (with exc_info,
        # after an error) may always replace the first
        self.status = (status, headers)
        return self.written.append

    @property
    def ready(self) -> bool:
        """Whether the answer is computed already (a list), so collecting it cannot block."""
        return self.output is not None or isinstance(self.result, list | tuple)

    def call(self) -> None:
        try:
            self.result = self.app(self.environ, self._start_response)
        except Exception:  # a bug in the app: answer 500, keep the server up
            self._failed()

    def collect(self, draining: bool) -> None:
        """Build ``output``; ``draining``: the server is stopping, so the connection closes."""
        if self.output is not None:
            return
        try:
            self._collect(draining)
        except Exception:  # the app's iterable or its headers: answer 500
            self._failed()
        finally:
            close = getattr(self.result, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    def _collect(self, draining: bool) -> None:
        content = b"".join([*self.written, *(self.result or ())])
        if self.status is None:
            raise RuntimeError("the WSGI app returned without calling start_response")
        status, headers = self.status
        self.close = (draining or not self.head.keep_alive or self.body_unread
                      or any(k.lower() == "connection" and v.lower() == "close"
                             for k, v in headers))
        lines = [f"HTTP/1.1 {status}", f"Date: {http_date()}", f"Server: {SERVER_NAME}"]
        lines += [f"{name}: {value}" for name, value in headers
                  if name.lower() not in ("connection", "date", "server", "content-length")]
        if self.head.method == "HEAD":  # the length of the body a GET would have had
            announced = [v for k, v in headers if k.lower() == "content-length"]
            lines.append(f"Content-Length: {announced[0] if announced else len(content)}")
            content = b""
        else:
            lines.append(f"Content-Length: {len(content)}")
        if self.close:
            lines.append("Connection: close")
        elif self.head.version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        self.output = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + content
        if logger.isEnabledFor(logging.DEBUG):  # every request passes here: format only if shown
            logger.debug("minidl.serving: %s %s %s -> %s", self.environ["REMOTE_ADDR"],
                         self.head.method, self.head.target, status)

    def _failed(self) -> None:
        logger.exception("minidl.serving: the WSGI app failed on %s %s", self.head.method,
                         self.head.target)
        self.output = error_answer(500, "Internal server error")
        self.close = True
