"""The HTTP engine: uvicorn with httptools (llhttp, the parser of Node.js) runs the ASGI app.

No HTTP is parsed here: llhttp parses. It answers the request-smuggling forms with 400 and
closes the connection: both Content-Length and Transfer-Encoding, a duplicate (even of the
same value), signed or listed Content-Length, a Transfer-Encoding list that ends in a
coding other than chunked, obs-fold, a bare CR or LF, a byte that is not a token character
in the method (``GET\\xa0/``) or a header name, whitespace before a colon, an oversize chunk
size. Why uvicorn and not granian, measured on this machine: benchmarks/SERVING.md.

What uvicorn and llhttp leave open, :class:`minidl.serving.protocol.GuardedProtocol`
closes (a deadline and a bound for request heads, bounded input, closes that keep the last
answer, a connection cap). This module runs the app: one process or uvicorn's workers,
signals, TLS, and a server in a thread for tests and notebooks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

from minidl.extras import missing
from minidl.serving.protocol import (
    HEAD_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_HEAD_BYTES,
    GuardedProtocol,
)

try:
    import uvicorn
    from uvicorn import supervisors
except ModuleNotFoundError as error:
    raise missing(error, "serving") from error

KEEP_ALIVE_TIMEOUT = 15  # seconds an idle keep-alive connection stays open
GRACE_SECONDS = 10  # after SIGTERM, how long requests in progress may take to finish
_APP_ARGUMENTS = "MINIDL_SERVING_APP"  # create_app's arguments, for worker processes


class ServingConfig(uvicorn.Config):
    """uvicorn's configuration plus the limits of :class:`GuardedProtocol`."""

    def __init__(self, app: Any, *, head_timeout: float = HEAD_TIMEOUT,
                 max_head_bytes: int = MAX_HEAD_BYTES, max_connections: int = MAX_CONNECTIONS,
                 **options: Any) -> None:
        super().__init__(app, http=GuardedProtocol, **options)
        self.head_timeout = head_timeout
        self.max_head_bytes = max_head_bytes
        self.max_connections = max_connections


class _Server(uvicorn.Server):
    """uvicorn's server, but a stop on SIGTERM/SIGINT is a clean exit (status 0): uvicorn
    raises the signal again once it has stopped, so that the process dies of it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self.handle_exit)
                    for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port), IPv4 or IPv6."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)  # uvicorn's worker processes serve the same socket
    except BaseException:
        sock.close()
        raise
    return sock


class ServingServer:
    """An ASGI app behind uvicorn on a socket bound at construction (so port 0 works and
    :attr:`url` is known before serving). :meth:`serve_forever` runs until
    :meth:`shutdown`, or until SIGTERM/SIGINT when it runs in the main thread; stopping lets
    requests in progress finish for up to ``grace_seconds``.

    With ``workers`` > 1 the app must be a :func:`~minidl.serving.create_app` keyword dict:
    uvicorn's supervisor starts that many processes on the socket, each building its own app
    (so each loads and polls the models itself), and restarts one that dies.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8501, *,
                 workers: int = 1, ssl_certfile: str | None = None,
                 ssl_keyfile: str | None = None, head_timeout: float = HEAD_TIMEOUT,
                 max_head_bytes: int = MAX_HEAD_BYTES,
                 keep_alive_timeout: int = KEEP_ALIVE_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS,
                 grace_seconds: int = GRACE_SECONDS) -> None:
        if (ssl_certfile is None) != (ssl_keyfile is None):
            raise ValueError("TLS needs both --ssl_certfile and --ssl_keyfile")
        self.socket = bind(host, port)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self.scheme = "https" if ssl_certfile else "http"
        self.workers = workers
        if workers > 1:
            # the children build the app from the environment, which they inherit
            os.environ[_APP_ARGUMENTS] = json.dumps({"app": app, "url": self.url})
            app = "minidl.serving.engine:app_from_environment"
        self.config = ServingConfig(
            app, factory=workers > 1, workers=workers, head_timeout=head_timeout,
            max_head_bytes=max_head_bytes, lifespan="on", ws="none", log_config=None,
            access_log=False, server_header=False, timeout_keep_alive=keep_alive_timeout,
            max_connections=max_connections, timeout_graceful_shutdown=grace_seconds,
            ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
            # the app reads no client address, so uvicorn's X-Forwarded-For rewriting
            # (a middleware around every request) has nothing to do
            proxy_headers=False)
        self._server = _Server(self.config)

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{port}"

    @property
    def started(self) -> bool:
        """True once the app has started (models loaded) and the socket is served."""
        return self._server.started

    def serve_forever(self) -> None:
        try:
            if self.workers > 1:
                supervisors.Multiprocess(self.config, sockets=[self.socket]).run()
            else:
                self._server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def shutdown(self) -> None:
        """Stop accepting and finish what is in progress (from any thread)."""
        self._server.should_exit = True


def say_ready(url: str) -> None:
    """The one line scripts wait for: the models are loaded and ``url`` answers."""
    print(f"minidl serving on {url}", flush=True)


def app_from_environment() -> Any:
    """The app of one worker process: :func:`create_app` with the keyword arguments the
    parent left in the environment; it says it is ready once its models are loaded."""
    from minidl.serving.app import create_app

    arguments = json.loads(os.environ[_APP_ARGUMENTS])
    app = create_app(**arguments["app"])
    app.on_started = lambda: say_ready(f"{arguments['url']} (worker {os.getpid()})")
    return app


def serve(app: Any, host: str = "127.0.0.1", port: int = 8501, **options: Any) -> int:
    """Serve ``app`` (or, with ``workers``, the app each worker builds from these
    :func:`create_app` arguments) until SIGTERM or SIGINT, then stop gracefully; returns 0.
    Prints ``minidl serving on URL`` once the models are loaded (see :func:`say_ready`)."""
    server = ServingServer(app, host, port, **options)
    if server.workers == 1:
        app.on_started = lambda: say_ready(server.url)
    server.serve_forever()
    return 0


@contextlib.contextmanager
def serving_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0,
                      **options: Any) -> Iterator[ServingServer]:
    """Serve ``app`` in a thread until the block ends (port 0: a free port); yields the
    server once it answers. For tests, notebooks and the demo: a script calls ``serve``."""
    server = ServingServer(app, host, port, **options)
    thread = threading.Thread(target=server.serve_forever, name="minidl-serving", daemon=True)
    thread.start()
    try:
        for _ in range(3000):  # at most 30 s for the models to load
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not server.started:
            raise RuntimeError("the server did not start within 30 s")
        yield server
    finally:
        server.shutdown()
        thread.join(30)
