"""The built-in server: HTTP/1.1 for a WSGI app from one event loop, standard library only.

**Why an event loop.** A thread per connection hands the GIL from thread to thread at every
system call: on 2 cores at 8 keep-alive clients that is 15-20 ``futex`` calls per request and a
p99 latency twice the median's worth of 5 ms switch intervals (benchmarks/SERVING.md). Here
one thread owns a ``selectors`` loop: it accepts connections, reads what clients send into a
buffer per connection, parses complete requests (:mod:`minidl.serving.http11`), calls the app
and writes the answers without blocking. A fast request never waits for another thread.

**Slow requests** (a big model, a big batch) must not stall everyone else. A standby thread
looks every ``TAKEOVER_AFTER`` seconds: when the loop's owner has been inside the app longer
than that, the standby takes the loop over and a new standby is started; the old owner
finishes its request, hands the answer to the loop and ends ("leader/followers"). So the
server runs one thread while requests are fast, and one more per request that is slow.

**Batching without a thread per request.** In each turn of the loop the app is first called
for every request received (which queues a batched predict's rows), then the answers are
collected, so the rows of every predict that arrived together form one batch
(:mod:`minidl.serving.batching`).

**HTTP.** Keep-alive and pipelining (answers in order, one request per connection at a
time), ``Content-Length`` on every answer, chunked request bodies, ``Expect: 100-continue``
(the ``100`` is sent only for a body within the limit), 413 for a body over the app's
``max_body_bytes`` before it is read, and a lingering close (the rest of an unread body is
read and dropped for up to ``LINGER_SECONDS``, so the client sees the answer rather than a
reset). ``TCP_NODELAY`` is set on every connection, and each answer leaves in one ``send``:
with Nagle's algorithm a small write waiting for a delayed ACK costs ~40 ms per keep-alive
request.

**Limits.** At most ``max_connections`` connections (one more is answered 503 and closed); a
connection idle, or stalled in the middle of a request or an answer, for
``keep_alive_timeout`` seconds is closed. :meth:`ServingHTTPServer.shutdown` stops accepting,
closes idle connections and lets requests in progress finish; :meth:`~ServingHTTPServer.drain`
waits for them and cuts off what is left after a grace period.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import json
import logging
import re
import selectors
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from minidl.serving import http11

logger = logging.getLogger("minidl.serving")

TAKEOVER_AFTER = 0.005  # seconds in the app before a standby thread takes the loop over
STANDBY_IDLE_POLL = 0.05  # the standby's pause when no request entered the app for a second
LINGER_SECONDS = 2.0    # after answering without reading a body, read and drop it this long
MAX_HEAD_BYTES = 256 << 10  # request line and header fields; larger is a 431
READ_SIZE = 1 << 16
SERVER_NAME = "minidl-serving"
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
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


def _status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Error"


def _error_answer(code: int, message: str, extra_headers: str = "") -> bytes:
    """A whole answer, head and JSON body, for an error found by the server itself."""
    body = json.dumps({"error": message}).encode("utf-8")
    return (f"HTTP/1.1 {_status_line(code)}\r\nDate: {http_date()}\r\nServer: {SERVER_NAME}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra_headers}Connection: close\r\n\r\n").encode("latin-1") + body


class _Connection:
    """One client connection and what the loop knows about it."""

    __slots__ = ("address", "busy", "close_after", "deadline", "eof", "inbox", "lingering",
                 "outbox", "pending_head", "sock", "unread", "watching")

    def __init__(self, sock: socket.socket, address: Any, deadline: float) -> None:
        self.sock = sock
        self.address = address
        self.inbox = bytearray()   # received, not yet parsed
        self.outbox = bytearray()  # answers not yet sent
        self.busy = False          # a request of this connection is in the app
        self.close_after = False   # close once the answer in progress is sent
        self.lingering = False     # answered and shut for writing; dropping what still comes
        self.eof = False           # the client will send nothing more
        self.unread = False        # input was refused unread: linger when closing
        self.watching = 0          # the selector events registered for it
        self.pending_head: _Head | None = None  # parsed head whose body is still arriving
        self.deadline = deadline   # closed if nothing moves before this (monotonic)


class _Head:
    """A parsed request head, and its body while it arrives."""

    __slots__ = ("chunked", "expects_continue", "headers", "keep_alive", "length", "method",
                 "target", "version")

    def __init__(self, method: str, target: str, version: str, headers: http11.Headers,
                 keep_alive: bool, length: int | None,
                 chunked: http11.ChunkedDecoder | None) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.length = length
        self.chunked = chunked
        self.expects_continue = False


class _Job:
    """One request on its way through the app: ``call`` runs the app, ``collect`` turns its
    answer into bytes (``output``). Neither raises: an app failure is a 500."""

    __slots__ = ("app", "body_unread", "close", "conn", "environ", "head", "output", "result",
                 "status", "written")

    def __init__(self, conn: _Connection, head: _Head, environ: dict[str, Any],
                 app: Callable[..., Any], body_unread: bool) -> None:
        self.conn = conn
        self.head = head
        self.environ = environ
        self.app = app
        self.body_unread = body_unread  # the body was refused, not read: close afterwards
        self.result: Iterable[bytes] | None = None
        self.status: tuple[str, list[tuple[str, str]]] | None = None
        self.written: list[bytes] = []
        self.output: bytes | None = None
        self.close = False  # the connection closes after this answer

    def _start_response(self, status: str, headers: list[tuple[str, str]],
                        exc_info: Any = None) -> Callable[[bytes], None]:
        # nothing is sent before the answer is complete, so a second call (with exc_info,
        # after an error) may always replace the first
        self.status = (status, headers)
        return self.written.append

    def call(self, draining: bool) -> None:
        try:
            self.result = self.app(self.environ, self._start_response)
        except Exception:  # a bug in the app: answer 500, keep the server up
            self._failed()

    def collect(self, draining: bool) -> None:
        if self.output is not None:
            return
        try:
            content = b"".join([*self.written, *(self.result or ())])
        except Exception:
            self._failed()
            return
        finally:
            close = getattr(self.result, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        if self.status is None:
            logger.error("minidl.serving: the WSGI app returned no status for %s %s",
                         self.head.method, self.head.target)
            self.output = _error_answer(500, "Internal server error")
            self.close = True
            return
        status, headers = self.status
        close = self.close = (
            draining or not self.head.keep_alive or self.body_unread
            or any(k.lower() == "connection" and v.lower() == "close" for k, v in headers))
        lines = [f"HTTP/1.1 {status}", f"Date: {http_date()}", f"Server: {SERVER_NAME}"]
        lines += [f"{name}: {value}" for name, value in headers
                  if name.lower() not in ("connection", "date", "server", "content-length")]
        if self.head.method == "HEAD":  # the length of the body a GET would have had
            announced = [v for k, v in headers if k.lower() == "content-length"]
            lines.append(f"Content-Length: {announced[0] if announced else len(content)}")
            content = b""
        else:
            lines.append(f"Content-Length: {len(content)}")
        if close:
            lines.append("Connection: close")
        elif self.head.version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        self.output = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + content
        if logger.isEnabledFor(logging.DEBUG):  # every request passes here: format only if shown
            logger.debug("minidl.serving: %s %s %s -> %s", self.conn.address[0],
                         self.head.method, self.head.target, status)

    def _failed(self) -> None:
        logger.exception("minidl.serving: the WSGI app failed on %s %s", self.head.method,
                         self.head.target)
        self.output = _error_answer(500, "Internal server error")
        self.close = True


class ServingHTTPServer:
    """An HTTP/1.1 server running a WSGI app from one event loop (see the module docstring).

    ``serve_forever()`` runs it in the calling thread; ``shutdown()`` (from another thread)
    stops accepting and returns; ``drain(grace_seconds)`` then waits for the requests in
    progress; ``serve_forever`` returns once every connection is closed.
    """

    def __init__(self, address: tuple[str, int], app: Callable[..., Any], *,
                 max_connections: int = 64, keep_alive_timeout: float = 15.0,
                 max_body_bytes: int | None = None) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self.max_connections = max_connections
        self.keep_alive_timeout = keep_alive_timeout
        self.max_body_bytes = (max_body_bytes if max_body_bytes is not None
                               else getattr(app, "max_body_bytes", _DEFAULT_MAX_BODY_BYTES))
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(address)
            self.socket.listen(128)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self._connections: dict[int, _Connection] = {}  # by id()
        self._pipelined: list[_Connection] = []  # answered, with more requests received
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._loop_lock = threading.Lock()  # held by the thread running the loop
        self._in_app_since: float | None = None  # when the loop's owner entered the app
        self._last_app_entry = 0.0
        # jobs of the turn, shared so that a thread taking the loop over finds them
        self._to_call: deque[_Job] = deque()     # the app is to be called
        self._to_collect: deque[_Job] = deque()  # the answer is to be read
        self._to_send: deque[_Job] = deque()     # answered by a thread that lost the loop
        self._jobs_lock = threading.Lock()
        self._stopping = False
        self._listening = True
        self._running = False
        self._stopped_accepting = threading.Event()
        self._finished = threading.Event()
        self._next_timeout_check = 0.0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    # ------------------------------------------------------------------ life cycle

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until :meth:`shutdown` and every connection is closed. ``poll_interval``:
        the longest the loop sleeps between checks of its timeouts."""
        self._poll_interval = poll_interval
        self._selector.register(self.socket, selectors.EVENT_READ, None)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, None)
        self._running = True
        self._start_standby()
        self._loop_lock.acquire()
        self._own_loop()
        self._finished.wait()

    def shutdown(self) -> None:
        """Stop accepting connections (waits until the loop has stopped listening) and close
        idle ones; requests in progress go on. Returns at once if the loop is not running."""
        self._stopping = True
        self._wake()
        if self._running:
            self._stopped_accepting.wait(10)

    def server_close(self) -> None:
        """Close the listening socket (the loop does it itself when it is running)."""
        if not self._running and self._listening:
            self._listening = False
            self.socket.close()

    def drain(self, grace_seconds: float) -> bool:
        """After :meth:`shutdown`: wait up to ``grace_seconds`` for the requests in progress,
        then cut off the connections left. True if every connection closed in time."""
        deadline = time.monotonic() + grace_seconds
        while self._connections and time.monotonic() < deadline:
            time.sleep(0.01)
        leftovers = list(self._connections.values())
        for conn in leftovers:
            with contextlib.suppress(OSError):  # already closed by the loop
                conn.sock.shutdown(socket.SHUT_RDWR)
        return not leftovers

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: the loop is awake anyway
            self._wake_writer.send(b"\0")

    # ------------------------------------------------------------------ who runs the loop

    def _start_standby(self) -> None:
        threading.Thread(target=self._standby, name="minidl-serving-standby",
                         daemon=True).start()

    def _standby(self) -> None:
        """Wait to take the loop over from an owner stuck in the app. It looks every
        ``TAKEOVER_AFTER`` seconds while requests come, less often when none came for a
        second: a sleeping thread costs nothing, while waking it from the loop at each
        request would be the thread switch the loop exists to avoid."""
        while not self._finished.is_set():
            since = self._in_app_since
            now = time.monotonic()
            if since is None or now - since < TAKEOVER_AFTER:
                busy = now - self._last_app_entry < 1.0
                time.sleep(TAKEOVER_AFTER if busy else STANDBY_IDLE_POLL)
                continue
            if self._loop_lock.acquire(blocking=False):
                if self._finished.is_set():
                    self._loop_lock.release()
                    return
                self._in_app_since = None  # the loop's owner (this thread) is not in the app
                self._start_standby()
                self._own_loop()
                return

    def _in_app(self, step: Callable[[_Job, bool], None], job: _Job) -> bool:
        """Run ``step(job, stopping)`` with the loop free for a standby to take; True if this
        thread still owns the loop afterwards. Only the owner writes ``_in_app_since``."""
        self._in_app_since = self._last_app_entry = time.monotonic()
        self._loop_lock.release()
        step(job, self._stopping)  # never raises: a job turns errors into answers
        if not self._loop_lock.acquire(blocking=False):
            return False
        self._in_app_since = None
        return True

    def _own_loop(self) -> None:
        """Run the loop (``_loop_lock`` held) until it ends or another thread takes it."""
        try:
            while True:
                if self._stopping:
                    self._stop_accepting()
                    if not self._connections:
                        self._finish()
                        return
                waiting = self._to_call or self._to_collect or self._to_send or self._pipelined
                timeout = 0.0 if waiting else self._select_timeout()
                jobs = self._handle_events(self._selector.select(timeout))
                self._check_timeouts()
                with self._jobs_lock:
                    self._to_call += jobs
                if not self._run_jobs():
                    return  # another thread owns the loop now
        except BaseException:
            logger.exception("minidl.serving: the server loop failed")
            self._finish()
            raise

    def _finish(self) -> None:
        for conn in list(self._connections.values()):
            self._close(conn)
        self._stop_accepting()
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()
        self._running = False
        self._finished.set()
        self._loop_lock.release()

    def _run_jobs(self) -> bool:
        """Call the app for every job, then collect every answer and send it; False if another
        thread took the loop meanwhile (it finds the jobs left in the shared queues). Calling
        first lets a batching app queue the rows of all of them before the first waits."""
        while True:
            with self._jobs_lock:
                if self._to_send:
                    job, step, then = self._to_send.popleft(), None, None
                elif self._to_call:
                    job, step, then = self._to_call.popleft(), _Job.call, self._to_collect
                elif self._to_collect:
                    job, step, then = self._to_collect.popleft(), _Job.collect, self._to_send
                else:
                    return True
            if step is None:
                self._answered(job)
                continue
            owner = self._in_app(step, job)
            with self._jobs_lock:
                then.append(job)
            if not owner:
                self._wake()  # the loop's new owner may be waiting in select()
                return False

    # ------------------------------------------------------------------ events

    def _select_timeout(self) -> float:
        return max(0.0, min(self._poll_interval, self._next_timeout_check - time.monotonic()))

    def _handle_events(self, events: list[tuple[selectors.SelectorKey, int]]) -> list[_Job]:
        jobs = []
        for key, mask in events:
            if key.fileobj is self.socket:
                self._accept()
            elif key.fileobj is self._wake_reader:
                with contextlib.suppress(OSError):
                    self._wake_reader.recv(4096)
            else:
                conn = key.data
                if mask & selectors.EVENT_WRITE:
                    self._flush(conn)
                if mask & selectors.EVENT_READ and conn.sock.fileno() >= 0:
                    job = self._read(conn)
                    if job is not None:
                        jobs.append(job)
        # requests received behind an answer: one per connection per turn
        pipelined, self._pipelined = self._pipelined, []
        for conn in pipelined:
            if id(conn) in self._connections and not conn.busy and not conn.outbox:
                job = self._parse(conn)
                if job is not None:
                    jobs.append(job)
                elif conn.eof and not conn.outbox:
                    self._close(conn)  # what is left can never be completed
        return jobs

    def _accept(self) -> None:
        for _ in range(self.max_connections):
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # out of file descriptors: try again next turn
                logger.warning("minidl.serving: accept failed: %s", error)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self._connections) >= self.max_connections:
                with contextlib.suppress(OSError):  # a best effort: the client may be gone
                    sock.send(_error_answer(
                        503, f"Server busy: all {self.max_connections} connections are in use "
                             "(--rest_api_num_threads); retry later", "Retry-After: 1\r\n"))
                    sock.shutdown(socket.SHUT_WR)
                    sock.recv(READ_SIZE)  # closing with its request unread would reset it
                sock.close()
                continue
            conn = _Connection(sock, address, time.monotonic() + self.keep_alive_timeout)
            self._connections[id(conn)] = conn
            self._watch(conn, selectors.EVENT_READ)

    def _read(self, conn: _Connection) -> _Job | None:
        if conn.busy:  # its request is in the app (on another thread): read later
            self._watch(conn, 0)
            return None
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            self._close(conn)
            return None
        if not data:  # the client has sent all it will send
            conn.eof = True
            self._watch(conn, 0)
            job = None if conn.lingering else self._parse(conn)
            if job is None and not conn.outbox:
                self._close(conn)  # a request cut short is never answered
            return job
        if conn.lingering:
            return None  # dropped
        conn.deadline = time.monotonic() + self.keep_alive_timeout
        conn.inbox += data
        return self._parse(conn)

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        if now < self._next_timeout_check and not self._stopping:
            return
        self._next_timeout_check = now + min(1.0, self.keep_alive_timeout / 4)
        for conn in list(self._connections.values()):
            if not conn.busy and now > conn.deadline:
                self._close(conn)  # idle, stalled in a request or answer, or done lingering
            elif (self._stopping and not conn.busy and not conn.inbox and not conn.outbox
                  and not conn.lingering):
                self._close(conn)  # idle

    def _stop_accepting(self) -> None:
        if self._listening:
            self._listening = False
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self.socket)
            self.socket.close()
        self._stopped_accepting.set()

    # ------------------------------------------------------------------ requests

    def _parse(self, conn: _Connection) -> _Job | None:
        """The next complete request in ``conn.inbox`` as a job, or None (not all here yet,
        or refused: then the error answer is on its way and the connection closes)."""
        try:
            head = conn.pending_head
            if head is None:
                head = self._parse_head(conn)
                if head is None:
                    return None
            return self._take_body(conn, head)
        except http11.BadRequest as error:
            conn.pending_head = None
            conn.inbox.clear()
            self._refuse(conn, error.code, error.message)
            return None

    def _parse_head(self, conn: _Connection) -> _Head | None:
        inbox = conn.inbox
        while inbox[:2] == b"\r\n" or inbox[:1] == b"\n":  # blank lines before a request
            del inbox[:2 if inbox[:1] == b"\r" else 1]
        line_end = inbox.find(b"\n", 0, http11.MAX_LINE + 1)
        if line_end < 0:
            if len(inbox) > http11.MAX_LINE:
                raise http11.BadRequest(414, "Request line too long")
            return None
        end = _HEAD_END.search(inbox, line_end - 1 if line_end else 0)
        if end is None:
            if len(inbox) > MAX_HEAD_BYTES:
                raise http11.BadRequest(431, "Request header fields too large")
            return None
        head_bytes = bytes(inbox[:end.end()])
        del inbox[:end.end()]
        request_line, _, header_bytes = head_bytes.partition(b"\n")
        method, target, version, number = http11.parse_request_line(
            request_line.decode("latin-1").rstrip("\r"))
        headers = http11.read_headers(io.BytesIO(header_bytes))
        connection = (headers.get("Connection") or "").lower()
        # HTTP/1.1 keeps the connection open unless told otherwise; 1.0 only when asked
        keep_alive = connection != "close" and (number >= (1, 1) or connection == "keep-alive")
        transfer_encoding = headers.get("Transfer-Encoding")
        lengths = headers.get_all("Content-Length") or []
        chunked = None
        if transfer_encoding is not None:
            if transfer_encoding.strip().lower() != "chunked" or lengths:
                raise http11.BadRequest(400, "Only 'Transfer-Encoding: chunked', without "
                                             "Content-Length, is supported")
            length = None
            chunked = http11.ChunkedDecoder(self.max_body_bytes)
        elif len(lengths) > 1 or (lengths and http11.parse_content_length(lengths[0]) is None):
            raise http11.BadRequest(400, "Invalid Content-Length")
        else:
            length = http11.parse_content_length(lengths[0]) if lengths else 0
        head = _Head(method, target, version, headers, keep_alive, length, chunked)
        head.expects_continue = ((headers.get("Expect") or "").lower() == "100-continue"
                                 and number >= (1, 1))
        return head

    def _take_body(self, conn: _Connection, head: _Head) -> _Job | None:
        inbox = conn.inbox
        if head.length is not None and head.length > self.max_body_bytes:
            # refused unread (and no "100 Continue"): the app answers 413 from the length
            return self._job(conn, head, b"", body_unread=True)
        if head.chunked is not None:
            used = head.chunked.feed(inbox)
            del inbox[:used]
            if head.chunked.too_large:  # the app sees more than its limit and answers 413
                return self._job(conn, head, head.chunked.body(), body_unread=True)
            if head.chunked.finished:
                return self._job(conn, head, head.chunked.body(), body_unread=False)
        elif len(inbox) >= head.length:
            body = bytes(inbox[:head.length])
            del inbox[:head.length]
            return self._job(conn, head, body, body_unread=False)
        if head.expects_continue and conn.pending_head is None:
            conn.pending_head = head
            self._send(conn, _CONTINUE)
        conn.pending_head = head  # the rest of the body is on its way
        return None

    def _job(self, conn: _Connection, head: _Head, body: bytes, body_unread: bool) -> _Job:
        conn.pending_head = None
        conn.busy = True
        if body_unread:
            conn.inbox.clear()
            conn.unread = True
        path, _, query = head.target.partition("?")
        if path.startswith("//"):  # "//host/path" would read as a URL without scheme
            path = "/" + path.lstrip("/")
        host, port = self.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": head.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": head.version,
            "REMOTE_ADDR": str(conn.address[0]) if conn.address else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,  # slow requests run on other threads
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
        return _Job(conn, head, environ, self.app, body_unread)

    def _answered(self, job: _Job) -> None:
        conn = job.conn
        conn.busy = False
        conn.close_after = conn.close_after or job.close
        if id(conn) not in self._connections:
            return  # closed meanwhile
        self._watch(conn, selectors.EVENT_READ)
        assert job.output is not None
        self._send(conn, job.output)

    def _refuse(self, conn: _Connection, code: int, message: str) -> None:
        conn.close_after = conn.unread = True
        self._send(conn, _error_answer(code, message))

    # ------------------------------------------------------------------ writing, closing

    def _send(self, conn: _Connection, data: bytes) -> None:
        conn.deadline = time.monotonic() + self.keep_alive_timeout
        if conn.outbox:
            conn.outbox += data
        else:
            try:
                sent = conn.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close(conn)
                return
            if sent < len(data):
                conn.outbox += data[sent:]
                self._watch(conn, selectors.EVENT_WRITE)
                return
        if not conn.outbox:
            self._sent(conn)

    def _flush(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        del conn.outbox[:sent]
        conn.deadline = time.monotonic() + self.keep_alive_timeout
        if not conn.outbox:
            self._watch(conn, selectors.EVENT_READ)
            self._sent(conn)

    def _sent(self, conn: _Connection) -> None:
        """Everything queued for ``conn`` has left: close it if its answer said so, else
        look at what it sent meanwhile."""
        if conn.close_after:
            if conn.unread or conn.inbox or conn.pending_head is not None:
                self._linger(conn)
            else:
                self._close(conn)
        elif conn.inbox and conn.pending_head is None:
            self._pipelined.append(conn)
        elif conn.eof:
            self._close(conn)

    def _linger(self, conn: _Connection) -> None:
        """Close gracefully: shut the sending side (the client reads the answer, then the end)
        and read and drop what the client still sends until it closes or ``LINGER_SECONDS``
        pass, so that closing does not reset the connection before the client has read the
        answer (a "lingering close", as nginx does)."""
        if conn.lingering:
            return
        if conn.eof:
            self._close(conn)
            return
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.inbox.clear()
        conn.pending_head = None
        conn.lingering = True
        conn.deadline = time.monotonic() + LINGER_SECONDS

    def _watch(self, conn: _Connection, events: int) -> None:
        """Register ``conn`` for these selector events (0: none). Once the client has sent
        everything, reading is never watched again (the end of input stays readable)."""
        if conn.eof:
            events &= ~selectors.EVENT_READ
        if events == conn.watching:
            return
        if not events:
            self._selector.unregister(conn.sock)
        elif not conn.watching:
            self._selector.register(conn.sock, events, conn)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.watching = events

    def _close(self, conn: _Connection) -> None:
        if conn.busy:  # its job still runs: closed when it is answered
            conn.close_after = True
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            return
        if self._connections.pop(id(conn), None) is not None:
            self._watch(conn, 0)
            conn.sock.close()


def make_server(app: Callable[..., Any], host: str = "127.0.0.1", port: int = 8501, *,
                max_connections: int = 64, keep_alive_timeout: float = 15.0) -> ServingHTTPServer:
    """Bind (port 0 picks a free port: see ``server.server_address``) without serving yet."""
    if (isinstance(max_connections, bool) or not isinstance(max_connections, int)
            or max_connections < 1):
        raise ValueError(f"max_connections must be a positive integer, got {max_connections!r}")
    return ServingHTTPServer((host, port), app, max_connections=max_connections,
                             keep_alive_timeout=keep_alive_timeout)


def serve(app: Callable[..., Any], host: str = "127.0.0.1", port: int = 8501, *,
          max_connections: int = 64, grace_seconds: float = 10.0) -> int:
    """Serve ``app`` until SIGTERM or SIGINT, then stop gracefully; returns 0.

    Loads the models first (``app.start()``, when the app has it), then prints one line,
    ``minidl serving on http://HOST:PORT``, and flushes it: scripts can wait for it.
    """
    server = make_server(app, host, port, max_connections=max_connections)
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
                                name="minidl-serving-loop", daemon=True)
        loop.start()
        print(f"minidl serving on {server.url}", flush=True)
        while not stop.wait(0.5):
            pass
        logger.info("minidl.serving: stopping: finishing requests in progress (up to %gs)",
                    grace_seconds)
        server.shutdown()
        if not server.drain(grace_seconds):
            logger.warning("minidl.serving: requests still running after %gs were cut off",
                           grace_seconds)
        loop.join(5)
    finally:
        close = getattr(app, "close", None)
        if close is not None:
            close()
        server.server_close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
