"""The built-in server: HTTP/1.1 for a WSGI app from one event loop, standard library only.

**Why an event loop.** A thread per connection hands the GIL from thread to thread at every
system call: on 2 cores at 8 keep-alive clients that is 15-20 ``futex`` calls per request and a
p99 latency twice the median's worth of 5 ms switch intervals (benchmarks/SERVING.md). Here
one thread owns a ``selectors`` loop: it accepts connections, reads what clients send into a
buffer per connection, parses complete requests (:mod:`minidl.serving.http11`), calls the app
(:mod:`minidl.serving.wsgi`) and writes the answers without blocking. A fast request never
waits for another thread.

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
import functools
import logging
import selectors
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from minidl.serving import http11
from minidl.serving.wsgi import WSGIJob, build_environ, error_answer

logger = logging.getLogger("minidl.serving")

TAKEOVER_AFTER = 0.005  # seconds in the app before a standby thread takes the loop over
STANDBY_IDLE_POLL = 0.05  # the standby's pause when no request entered the app for a second
LINGER_SECONDS = 2.0    # after answering without reading a body, read and drop it this long
READ_SIZE = 1 << 16
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


class _Connection:
    """One client connection and what the loop knows about it."""

    __slots__ = ("address", "busy", "close_after", "deadline", "eof", "inbox", "lingering",
                 "outbox", "pending_head", "scanned", "sock", "unread", "watching")

    def __init__(self, sock: socket.socket, address: Any, deadline: float) -> None:
        self.sock = sock
        self.address = address
        self.inbox = bytearray()   # received, not yet parsed
        self.scanned = 0           # how much of the inbox was searched for a head's end
        self.outbox = bytearray()  # answers not yet sent
        self.busy = False          # a request of this connection is in the app
        self.close_after = False   # close once the answer in progress is sent
        self.lingering = False     # answered and shut for writing; dropping what still comes
        self.eof = False           # the client will send nothing more
        self.unread = False        # input was refused unread: linger when closing
        self.watching = 0          # the selector events registered for it
        self.pending_head: http11.RequestHead | None = None  # its body is still arriving
        self.deadline = deadline   # closed if nothing moves before this (monotonic)


class ServingHTTPServer:
    """An HTTP/1.1 server running a WSGI app from one event loop (see the module docstring).

    ``serve_forever()`` runs it in the calling thread; ``shutdown()`` (from another thread)
    stops accepting and returns; ``drain(grace_seconds)`` then waits for the requests in
    progress; ``serve_forever`` returns once every connection is closed.
    """

    def __init__(self, address: tuple[str, int], app: Callable[..., Any], *,
                 max_connections: int = 64, keep_alive_timeout: float = 15.0) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self.max_connections = max_connections
        self.keep_alive_timeout = keep_alive_timeout
        # bodies over the app's limit are refused before they are read (413)
        self.max_body_bytes = getattr(app, "max_body_bytes", _DEFAULT_MAX_BODY_BYTES)
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
        self._to_call: deque[WSGIJob] = deque()     # the app is to be called
        self._to_collect: deque[WSGIJob] = deque()  # the answer is to be read
        self._to_send: deque[WSGIJob] = deque()     # the answer is ready to send
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
                if self._in_app_since != since:  # that call ended; the owner is in another
                    self._loop_lock.release()
                    continue
                self._in_app_since = None  # the loop's owner (this thread) is not in the app
                self._start_standby()
                self._own_loop()
                return

    def _in_app(self, work: Callable[[], None]) -> bool:
        """Run ``work`` with the loop free for a standby to take; True if this thread still
        owns the loop afterwards. Only the owner writes ``_in_app_since``."""
        self._in_app_since = self._last_app_entry = time.monotonic()
        self._loop_lock.release()
        work()  # never raises: a job turns errors into answers
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
        first lets a batching app queue the rows of all of them before the first waits;
        answers already computed are collected before those that may wait for a batch."""
        while True:
            with self._jobs_lock:
                if self._to_send:
                    job = self._to_send.popleft()
                    work = None
                elif self._to_call:
                    job = self._to_call.popleft()
                    work = job.call
                elif self._to_collect:
                    job = self._to_collect.popleft()
                    work = functools.partial(job.collect, self._stopping)
                else:
                    return True
            if work is None:
                self._answered(job)
                continue
            owner = self._in_app(work)
            with self._jobs_lock:
                if job.output is not None:
                    self._to_send.append(job)
                elif job.ready:
                    self._to_collect.appendleft(job)
                else:
                    self._to_collect.append(job)
            if not owner:
                self._wake()  # the loop's new owner may be waiting in select()
                return False

    # ------------------------------------------------------------------ events

    def _select_timeout(self) -> float:
        return max(0.0, min(self._poll_interval, self._next_timeout_check - time.monotonic()))

    def _handle_events(self, events: list[tuple[selectors.SelectorKey, int]]
                       ) -> list[WSGIJob]:
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
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # reset before it was accepted
                sock.close()
                continue
            if len(self._connections) >= self.max_connections:
                with contextlib.suppress(OSError):  # a best effort: the client may be gone
                    sock.send(error_answer(
                        503, f"Server busy: all {self.max_connections} connections are in use "
                             "(--rest_api_num_threads); retry later", "Retry-After: 1\r\n"))
                    sock.shutdown(socket.SHUT_WR)
                    sock.recv(READ_SIZE)  # closing with its request unread would reset it
                sock.close()
                continue
            conn = _Connection(sock, address, time.monotonic() + self.keep_alive_timeout)
            self._connections[id(conn)] = conn
            self._watch(conn, selectors.EVENT_READ)

    def _read(self, conn: _Connection) -> WSGIJob | None:
        if conn.busy:  # its request is in the app (on another thread): read later
            self._watch(conn, 0)
            return None
        if conn.inbox and conn.pending_head is None and not conn.lingering:
            # a request received behind the last answer comes first: reading only when
            # the inbox holds no whole request bounds what a pipelining client can pile up
            job = self._parse(conn)
            if job is not None or conn.close_after:
                return job
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
                  and not conn.lingering and conn.pending_head is None):
                self._close(conn)  # idle

    def _stop_accepting(self) -> None:
        if self._listening:
            self._listening = False
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self.socket)
            self.socket.close()
        self._stopped_accepting.set()

    # ------------------------------------------------------------------ requests

    def _parse(self, conn: _Connection) -> WSGIJob | None:
        """The next complete request in ``conn.inbox`` as a job, or None (not all here yet,
        or refused: then the error answer is on its way and the connection closes)."""
        inbox = conn.inbox
        try:
            head = conn.pending_head
            if head is None:
                while inbox[:2] == b"\r\n" or inbox[:1] == b"\n":  # blank lines before it
                    del inbox[:2 if inbox[:1] == b"\r" else 1]
                end = http11.find_head_end(inbox, conn.scanned)
                if end is None:
                    conn.scanned = len(inbox)
                    return None
                head = http11.RequestHead(bytes(inbox[:end]), self.max_body_bytes)
                del inbox[:end]
                conn.scanned = 0
            return self._take_body(conn, head)
        except http11.BadRequest as error:
            conn.pending_head = None
            inbox.clear()
            conn.close_after = conn.unread = True
            self._send(conn, error_answer(error.code, error.message))
            return None

    def _take_body(self, conn: _Connection, head: http11.RequestHead) -> WSGIJob | None:
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
            # set first: the connection waits for a body, not for another request
            conn.pending_head = head
            self._send(conn, _CONTINUE)
        conn.pending_head = head  # the rest of the body is on its way
        return None

    def _job(self, conn: _Connection, head: http11.RequestHead, body: bytes,
             body_unread: bool) -> WSGIJob:
        conn.pending_head = None
        conn.busy = True
        if body_unread:
            conn.inbox.clear()
            conn.unread = True
        environ = build_environ(head, body, self.server_address, conn.address)
        return WSGIJob(self.app, head, environ, body_unread, conn)

    def _answered(self, job: WSGIJob) -> None:
        conn: _Connection = job.connection
        conn.busy = False
        conn.close_after = conn.close_after or job.close
        self._watch(conn, selectors.EVENT_READ)
        assert job.output is not None
        self._send(conn, job.output)

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
