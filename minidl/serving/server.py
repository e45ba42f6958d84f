"""The built-in server: the standard library's threaded HTTP server running a WSGI app.

``wsgiref``'s handler speaks HTTP/1.0 and closes every connection; this bridge speaks
HTTP/1.1 with keep-alive, ``Content-Length`` on every answer, chunked request bodies and
``Expect: 100-continue`` (the ``100`` is sent only when the app starts reading the body, so a
body refused with 413 is never sent). It sets ``TCP_NODELAY`` on every connection: without
it, Nagle's algorithm holding back a small write while the client delays its ACK costs about
40 ms per keep-alive request. Two choices are made for speed, each explained where it is made:
request heads are parsed by :mod:`minidl.serving.http11` rather than the ``email`` package, and
idle connections are timed out by the kernel (:func:`set_idle_timeout`).

Limits: at most ``num_threads`` connections are served at once (one more is answered 503 and
closed); a connection idle for ``keep_alive_timeout`` seconds is closed. :meth:`drain` stops
gracefully: no new connection, idle ones closed, requests in progress finished within a grace
period.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import json
import logging
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import unquote

from minidl.serving import http11

logger = logging.getLogger("minidl.serving")

MAX_REQUEST_LINE = 65536
LINGER_SECONDS = 2.0        # after answering without reading a body, read and drop it this long
LINGER_BYTES = 64 << 20
_DRAIN_UNREAD_BYTES = 1 << 16  # an unread body up to this size is read and dropped: keep-alive
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


def set_idle_timeout(sock: socket.socket, seconds: float) -> None:
    """Make a read or write on ``sock`` give up after ``seconds`` without progress.

    The kernel does it (``SO_RCVTIMEO``, ``SO_SNDTIMEO``). ``sock.settimeout`` would do it
    in Python, by calling poll() before every recv and send: two more system calls per
    request, and each system call releases the GIL, which under load from many connections
    is a switch to another thread and back (measured: 10-20% more throughput without them,
    8 keep-alive clients). A read or write that times out raises an OSError, as with
    ``settimeout``.
    """
    if sys.platform == "win32":  # takes milliseconds there, not a timeval
        sock.settimeout(seconds)
        return
    timeval = struct.pack("@ll", int(seconds), int(seconds % 1 * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


class _SocketReader(io.RawIOBase):
    """A socket's bytes, for a buffered ``rfile``, with a receive timeout set by
    :func:`set_idle_timeout` raised as TimeoutError, as ``socket.settimeout`` raises it
    (``socket.makefile``'s reader turns it into "no more data", which would cut a request
    short instead of dropping it)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._sock.recv_into(buffer)
        except BlockingIOError:  # EAGAIN from a blocking socket: SO_RCVTIMEO ran out
            raise TimeoutError("the client sent nothing for too long") from None


class WSGIRequestHandler(BaseHTTPRequestHandler):
    """Runs each HTTP/1.1 request through ``server.app``; JSON errors for protocol faults."""

    protocol_version = "HTTP/1.1"
    server_version = "minidl-serving"
    sys_version = ""
    disable_nagle_algorithm = True  # TCP_NODELAY: see the module docstring
    server: ServingHTTPServer

    def setup(self) -> None:
        super().setup()  # self.timeout stays None: the kernel times out reads and writes
        set_idle_timeout(self.connection, self.server.keep_alive_timeout)
        self.rfile.close()  # its SocketIO would read a timeout as the end of the stream
        self.rfile = io.BufferedReader(_SocketReader(self.connection))

    def handle(self) -> None:
        self.server.connection_opened(self)
        try:
            super().handle()
        except OSError:
            pass  # the client went away, stayed silent, or was cut off by a drain
        finally:
            self.server.connection_closed(self)

    def handle_one_request(self) -> None:
        self.close_connection = True
        self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if not self.raw_requestline:
            return
        self.server.request_started(self)
        try:
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.requestline = ""
                self.request_version = "HTTP/1.1"
                self.command = ""
                self.send_error(414, "Request line too long")
                return
            if not self.parse_request():
                return
            self._run_wsgi()
        finally:
            self.server.request_finished(self)

    def parse_request(self) -> bool:
        """Read the request line and the header fields (``command``, ``path``,
        ``request_version``, ``headers``); on a malformed head, answer the error and return
        False. The standard library's checks, with :mod:`http11`'s header parser instead of
        the ``email`` package's (see there why)."""
        self.command = None  # send_error and logging read these
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "latin-1").rstrip("\r\n")
        if not self.requestline.strip():
            return False
        try:
            self.command, path, self.request_version, version = http11.parse_request_line(
                self.requestline)
            # "//host/path" would read as a URL without scheme to a client: keep one slash
            self.path = "/" + path.lstrip("/") if path.startswith("//") else path
            self.headers = http11.read_headers(self.rfile)
        except http11.BadRequest as error:
            self.send_error(error.code, error.message)
            return False
        connection = self.headers.get("Connection", "").lower()
        # HTTP/1.1 keeps the connection open unless told otherwise; 1.0 only when asked
        self.close_connection = connection == "close" or (
            version < (1, 1) and connection != "keep-alive")
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        body = json.dumps({"error": message or explain or "bad request"}).encode("utf-8")
        self.close_connection = True
        self._write(f"{code} {self.responses.get(code, ('Error',))[0]}",
                    [("Content-Type", "application/json")], body)

    def log_message(self, format: str, *args: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):  # every request passes here: format only if shown
            logger.debug("minidl.serving: %s %s", self.address_string(), format % args)

    # ------------------------------------------------------------------ WSGI bridge

    def _run_wsgi(self) -> None:
        transfer_encoding = self.headers.get("Transfer-Encoding")
        lengths = self.headers.get_all("Content-Length") or []
        if transfer_encoding is not None:
            if transfer_encoding.strip().lower() != "chunked" or lengths:
                self.send_error(400, "Only 'Transfer-Encoding: chunked', without "
                                     "Content-Length, is supported")
                return
            length = None
        elif len(lengths) > 1 or (lengths and http11.parse_content_length(lengths[0]) is None):
            self.send_error(400, "Invalid Content-Length")
            return
        else:
            length = http11.parse_content_length(lengths[0]) if lengths else 0
        expects_continue = (self.headers.get("Expect", "").lower() == "100-continue"
                            and self.request_version != "HTTP/1.0")
        continue_sent = [not expects_continue]

        def send_continue() -> None:
            if not continue_sent[0]:
                continue_sent[0] = True
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.wfile.flush()

        body = http11.BodyReader(self.rfile, length, send_continue)
        environ = self._environ(body, length)
        response: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            # nothing is sent before the app returns, so a second call (with exc_info, after
            # an error) may always replace the first
            response["status"], response["headers"] = status, headers
            return lambda data: response.setdefault("written", []).append(data)

        try:
            result = self.server.app(environ, start_response)
            try:
                content = b"".join([*response.pop("written", []), *result])
            finally:
                if hasattr(result, "close"):
                    result.close()
        except Exception:  # a bug in the app: answer 500, keep the server up
            logger.exception("minidl.serving: the WSGI app failed on %s %s",
                             self.command, self.path)
            self.send_error(500, "Internal server error")
            return
        if "status" not in response:
            self.send_error(500, "The app returned no status")
            return
        headers = response["headers"]
        if self.command != "HEAD" or not any(k.lower() == "content-length" for k, _ in headers):
            # the length of what is sent; a HEAD answer keeps the length the app announced
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(content))))
        if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers):
            self.close_connection = True
        linger = False
        if not body.finished and (not continue_sent[0]
                                  or not body.drop_rest(_DRAIN_UNREAD_BYTES)):
            # an unread body (refused, or too large to drop) leaves the connection unusable;
            # a client still waiting for "100 Continue" sent none: nothing to linger for
            self.close_connection = True
            linger = continue_sent[0]
        if self.server.draining:
            self.close_connection = True
        self._write(response["status"], headers, b"" if self.command == "HEAD" else content)
        self.log_request(response["status"].split(" ", 1)[0], len(content))
        if linger:
            self._linger()

    def _environ(self, body: http11.BodyReader, length: int | None) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": body,
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if length is not None:
            environ["CONTENT_LENGTH"] = str(length)  # normalised: plain digits
        if "Content-Type" in self.headers:
            environ["CONTENT_TYPE"] = self.headers["Content-Type"]
        for name, value in self.headers.items():
            # "X_API_Key" must not pass for "X-API-Key": drop names with underscores
            if "_" in name or name.lower() in ("content-type", "content-length"):
                continue
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _write(self, status: str, headers: list[tuple[str, str]], content: bytes) -> None:
        lines = [f"HTTP/1.1 {status}", f"Date: {http_date()}",
                 f"Server: {self.server_version}"]
        lines += [f"{name}: {value}" for name, value in headers
                  if name.lower() not in ("connection", "date", "server")]
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        if not any(name.lower() == "content-length" for name, _ in headers):
            lines.append(f"Content-Length: {len(content)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # one write: headers and body leave in the same segment
        self.wfile.write(head + content)
        self.wfile.flush()

    def _linger(self) -> None:
        """Read and drop what the client still sends, so that closing does not reset the
        connection before it has read the answer (a "lingering close", as nginx does)."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            dropped = 0
            while dropped < LINGER_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.connection.settimeout(remaining)
                data = self.connection.recv(1 << 16)
                if not data:
                    break
                dropped += len(data)
        except OSError:
            pass  # the client closed first: that is what lingering waits for


class ServingHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a bounded number of connections and a graceful drain."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: Callable[..., Any], *,
                 num_threads: int = 64, keep_alive_timeout: float = 15.0) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.keep_alive_timeout = keep_alive_timeout
        self.num_threads = num_threads
        self.draining = False
        self._slots = threading.BoundedSemaphore(num_threads)
        self._state = threading.Condition()
        self._connections: dict[WSGIRequestHandler, bool] = {}  # handler -> busy
        super().__init__(address, WSGIRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN: a DNS lookup we do not need
        TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.draining or not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        body = json.dumps({"error": f"Server busy: all {self.num_threads} connections are in "
                                   "use (--rest_api_num_threads); retry later"}).encode()
        head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Retry-After: 1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n")
        try:
            request.settimeout(1.0)
            request.sendall(head.encode() + body)
        except OSError:
            pass  # the client left already
        self.shutdown_request(request)

    # ------------------------------------------------------------------ bookkeeping

    def connection_opened(self, handler: WSGIRequestHandler) -> None:
        with self._state:
            self._connections[handler] = False

    def connection_closed(self, handler: WSGIRequestHandler) -> None:
        with self._state:
            self._connections.pop(handler, None)
            self._state.notify_all()

    def request_started(self, handler: WSGIRequestHandler) -> None:
        with self._state:
            self._connections[handler] = True

    def request_finished(self, handler: WSGIRequestHandler) -> None:
        with self._state:
            self._connections[handler] = False
            self._state.notify_all()
        if self.draining:
            handler.close_connection = True

    def drain(self, grace_seconds: float) -> bool:
        """Close idle connections, wait up to ``grace_seconds`` for requests in progress,
        then close what is left. True if every request finished in time. Call after
        ``shutdown()`` (no more accepting)."""
        self.draining = True
        deadline = time.monotonic() + grace_seconds
        with self._state:
            while True:
                for handler, busy in list(self._connections.items()):
                    if not busy:
                        _shutdown_socket(handler.connection)
                if not any(self._connections.values()):
                    finished = True
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    finished = False
                    break
                self._state.wait(min(remaining, 0.05))
            leftovers = list(self._connections)
        for handler in leftovers:
            _shutdown_socket(handler.connection)
        return finished


def _shutdown_socket(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by its handler
        connection.shutdown(socket.SHUT_RDWR)


def make_server(app: Callable[..., Any], host: str = "127.0.0.1", port: int = 8501, *,
                num_threads: int = 64, keep_alive_timeout: float = 15.0) -> ServingHTTPServer:
    """Bind (port 0 picks a free port: see ``server.server_address``) without serving yet."""
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}")
    return ServingHTTPServer((host, port), app, num_threads=num_threads,
                             keep_alive_timeout=keep_alive_timeout)


def serve(app: Callable[..., Any], host: str = "127.0.0.1", port: int = 8501, *,
          num_threads: int = 64, grace_seconds: float = 10.0) -> int:
    """Serve ``app`` until SIGTERM or SIGINT, then stop gracefully; returns 0.

    Loads the models first (``app.start()``, when the app has it), then prints one line,
    ``minidl serving on http://HOST:PORT``, and flushes it: scripts can wait for it.
    """
    server = make_server(app, host, port, num_threads=num_threads)
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        start = getattr(app, "start", None)
        if start is not None:
            start()
        loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                name="minidl-serving-accept", daemon=True)
        loop.start()
        print(f"minidl serving on {server.url}", flush=True)
        while not stop.wait(0.5):
            pass
        logger.info("minidl.serving: stopping: finishing requests in progress (up to %gs)",
                    grace_seconds)
        server.shutdown()
        server.server_close()
        if not server.drain(grace_seconds):
            logger.warning("minidl.serving: requests still running after %gs were cut off",
                           grace_seconds)
    finally:
        close = getattr(app, "close", None)
        if close is not None:
            close()
        server.server_close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
