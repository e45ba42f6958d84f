"""The ASGI application: authentication, CORS, limits, metrics and JSON answers around the
routes of :mod:`minidl.serving.tfserving`.

Every answer is JSON (``Content-Type: application/json``) but the metrics page; every error
is ``{"error": "message"}`` with TF Serving's status code for its kind. Bad input is answered
with a 4xx and changes nothing: the models are only ever changed by the version manager.

The app starts its version manager (which loads the models) on the ASGI lifespan's startup,
or at the first request under an engine without lifespan events, and stops it on shutdown.
Each of the engine's worker processes builds its own app, so each loads and polls the models
itself.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import hmac
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from minidl.serving import payload, tfserving
from minidl.serving.batching import Batcher
from minidl.serving.config import (
    DEFAULT_MODEL_NAME,
    ModelConfig,
    load_model_config_file,
    read_api_keys,
)
from minidl.serving.errors import ClientGone, HTTPError
from minidl.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from minidl.serving.metrics import ServingMetrics
from minidl.serving.models import ModelManager, ServableNotFound, ServableUnavailable

logger = logging.getLogger("minidl.serving")

METRICS_ROUTE = "/monitoring/prometheus/metrics"
INLINE_SECONDS = 0.0005  # a predict expected to be shorter runs on the event loop
TIMINGS_KEPT = 8  # the expectation: the least seconds per row of a model's last 8 predicts
_JSON = b"application/json"
_CORS_HEADERS = [(b"access-control-allow-origin", b"*")]
_PREFLIGHT_HEADERS = [(b"access-control-allow-methods", b"GET, HEAD, POST, OPTIONS"),
                      (b"access-control-allow-headers", b"Content-Type, Authorization, X-API-Key"),
                      (b"access-control-max-age", b"600")]


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


class ServingApp:
    """An ASGI application serving the models of a :class:`ModelManager`.

    ``api_keys``: accepted keys (None: no authentication). ``max_enqueued_requests`` bounds the
    predict requests in progress in this process; one more is answered 429 at once.
    ``predict_threads``: threads that run unbatched predicts off the event loop.
    """

    def __init__(self, manager: ModelManager, *, batcher: Batcher | None = None,
                 api_keys: Iterable[str] | None = None, max_body_bytes: int = 10 * 1024 * 1024,
                 enable_cors: bool = False, max_enqueued_requests: int = 128,
                 predict_threads: int | None = None) -> None:
        for name, value in (("max_body_bytes", max_body_bytes),
                            ("max_enqueued_requests", max_enqueued_requests),
                            ("predict_threads", 1 if predict_threads is None else predict_threads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.manager = manager
        self.batcher = batcher
        self.metrics = ServingMetrics(manager.versions_loaded)
        if batcher is not None:
            batcher.on_batch = self._observe_batch
        # keys are compared as SHA-256 digests: equal lengths, so compare_digest leaks nothing
        self._key_digests = (None if api_keys is None else
                             [hashlib.sha256(k.encode("utf-8")).digest() for k in api_keys])
        if self._key_digests == []:
            raise ValueError("api_keys is empty: give at least one key, or None for no keys")
        self.max_body_bytes = max_body_bytes
        self.enable_cors = enable_cors
        self.max_enqueued_requests = max_enqueued_requests
        self.predicts_in_progress = 0
        # batching: POST requests whose body is not read yet; the batcher waits for their rows
        self.arriving = 0
        if batcher is not None:
            batcher.arriving = lambda: self.arriving
        self._predict_threads = concurrent.futures.ThreadPoolExecutor(
            predict_threads or 4 * (os.cpu_count() or 1), thread_name_prefix="minidl-predict")
        self._routes = tfserving.Routes(self)
        # unbatched predicts: seconds per row of each model's last predicts, forgotten with
        # the model
        self._seconds_per_row: weakref.WeakKeyDictionary[Any, collections.deque[float]] = (
            weakref.WeakKeyDictionary())
        self._started = False
        # called once the models are loaded (the engine prints its ready line there)
        self.on_started: Callable[[], None] | None = None

    def start(self) -> None:
        """Load the models and start the version manager's thread (idempotent)."""
        if not self._started:
            self.manager.start()
            self._started = True
            if self.on_started is not None:
                self.on_started()

    def close(self) -> None:
        """Fail the predicts still queued for a batch and stop the version manager."""
        if self.batcher is not None:
            self.batcher.close()
        self.manager.close()
        self._predict_threads.shutdown(wait=False)

    # ------------------------------------------------------------------ ASGI entry

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.get_running_loop().run_in_executor(None, self.start)
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        if not self._started:  # an engine without lifespan events
            self.start()
        on_body_done = None
        if self.batcher is not None and scope["method"] == "POST":
            self.arriving += 1  # a predict, maybe: its rows may be on their way to a batch
            on_body_done = self._arrived
        request = Request(scope, receive, self.max_body_bytes, on_body_done)
        path = request.path.lower()  # routes match case-insensitively
        headers = list(_CORS_HEADERS) if self.enable_cors else []
        labels = ["", ""]  # model, version for the requests counter
        content_type = _JSON
        try:
            if request.method == "OPTIONS" and self.enable_cors:
                code, answer = 204, None
                headers += _PREFLIGHT_HEADERS
            elif path == METRICS_ROUTE:
                self.authenticate(request)
                if request.method not in ("GET", "HEAD"):
                    raise HTTPError(405, f"Method {request.method} is not allowed for "
                                         f"{METRICS_ROUTE}; use GET", [(b"allow", b"GET, HEAD")])
                code, answer = 200, self.metrics.render().encode("utf-8")
                content_type = METRICS_CONTENT_TYPE.encode("ascii")
            else:
                code, answer = await self._routes.answer(request, labels)
        except ClientGone:
            return
        except (HTTPError, payload.InvalidArgument, ServableNotFound,
                ServableUnavailable) as error:
            code, answer = self._error_answer(error, headers)
        finally:
            request.body_done()  # when no route read it
        self.metrics.requests.inc(labels[0], labels[1], str(code))
        if labels[0] and path.endswith(":predict"):
            self.metrics.latency.observe(time.perf_counter() - started, labels[0])
        if code >= 400:
            logger.debug("minidl.serving: %s %s -> %d %s", request.method, request.path, code,
                         answer["error"])
        body = (b"" if answer is None else answer if isinstance(answer, bytes)
                else payload.encode(answer))
        headers += [(b"content-type", content_type),
                    (b"content-length", str(len(body)).encode("ascii"))]
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body",
                    "body": b"" if request.method == "HEAD" else body})

    @staticmethod
    def _error_answer(error: Exception,
                      headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, str]]:
        """The status code and ``{"error": ...}`` of an error raised while answering."""
        if isinstance(error, HTTPError):
            headers += error.headers
            return error.code, {"error": error.message}
        if isinstance(error, ServableUnavailable):
            headers.append((b"retry-after", b"1"))
            return 503, {"error": str(error)}
        code = 400 if isinstance(error, payload.InvalidArgument) else 404  # ServableNotFound
        return code, {"error": str(error)}

    # ------------------------------------------------------------------ used by the routes

    def authenticate(self, request: Request) -> None:
        """Nothing when keys are off or the request carries one; else a 401."""
        if self._key_digests is None:
            return
        scheme, _, token = request.headers.get(b"authorization", b"").partition(b" ")
        given = token.strip() if scheme.lower() == b"bearer" else b""
        given = given or request.headers.get(b"x-api-key", b"").strip()
        if given:
            digest = hashlib.sha256(given).digest()
            matched = False
            for key_digest in self._key_digests:  # every key, no early exit: constant time
                matched |= hmac.compare_digest(digest, key_digest)
            if matched:
                return
        raise HTTPError(401, "Missing or invalid API key: send 'Authorization: Bearer KEY' or "
                             "'X-API-Key: KEY'", [(b"www-authenticate", b'Bearer realm="minidl"')])

    async def predict(self, name: str, model: Any, x: np.ndarray) -> np.ndarray:
        """The model's outputs for ``x`` (batched when batching is on); at most
        ``max_enqueued_requests`` at once, one more is a 429.

        Without batching, a predict expected to take under ``INLINE_SECONDS`` runs on the
        event loop, and any other in a thread of the pool. Handing a call to a thread and back
        costs ~0.1 ms, a third of a small model's request (benchmarks/SERVING.md), while a
        predict that short holds the loop no longer than parsing its JSON does. The
        expectation is the model's time per row, the least of its last ``TIMINGS_KEPT``
        predicts (a model not yet measured runs in the pool), times the rows. The least, not
        an average: a call is only ever slowed down (waiting for the GIL in a pool thread, the
        host pausing the machine), and one slow call must not send a cheap model to the
        pool, where every call waits for the GIL again.
        """
        if self.predicts_in_progress >= self.max_enqueued_requests:
            raise HTTPError(429, f"Too many predict requests in progress (limit "
                                 f"{self.max_enqueued_requests}); retry later",
                            [(b"retry-after", b"1")])
        self.predicts_in_progress += 1
        try:
            if self.batcher is not None:
                return await self.batcher.predict(model, x, key=name)
            timings = self._seconds_per_row.get(model)
            if timings is not None and min(timings) * len(x) < INLINE_SECONDS:
                outputs, seconds = _timed_run(model, x)
            else:
                outputs, seconds = await asyncio.get_running_loop().run_in_executor(
                    self._predict_threads, _timed_run, model, x)
            if timings is None:
                timings = self._seconds_per_row[model] = collections.deque(maxlen=TIMINGS_KEPT)
            timings.append(seconds / max(len(x), 1))
            self._observe_batch(name, len(x))
            return outputs
        finally:
            self.predicts_in_progress -= 1

    def _arrived(self) -> None:
        self.arriving -= 1
        if self.arriving == 0:
            # after this turn, in which the request whose body was just read queues its rows
            asyncio.get_running_loop().call_soon(self.batcher.settle)

    def _observe_batch(self, name: str, rows: int) -> None:
        self.metrics.batch_size.observe(rows, name)


def run_model(model: Any, x: np.ndarray) -> np.ndarray:
    """One ``model.predict`` call; overflow to inf is answered as such, not warned about."""
    with np.errstate(all="ignore"):
        return np.asarray(model.predict(x))


def _timed_run(model: Any, x: np.ndarray) -> tuple[np.ndarray, float]:
    """:func:`run_model` and the seconds it took, measured where it ran."""
    started = time.perf_counter()
    outputs = run_model(model, x)
    return outputs, time.perf_counter() - started


def create_app(model_name: str | None = None, model_base_path: str | None = None, *,
               model_config_file: str | None = None, enable_batching: bool = False,
               max_batch_size: int = 64, batch_timeout_micros: int = 1000,
               num_batch_threads: int = 1, max_enqueued_batches: int = 100,
               api_key_file: str | None = None, file_system_poll_wait_seconds: float = 1.0,
               max_body_bytes: int = 10 * 1024 * 1024, enable_cors: bool = False,
               max_enqueued_requests: int = 128,
               predict_threads: int | None = None) -> ServingApp:
    """An ASGI app serving one model (``model_base_path``, named ``model_name`` or "default")
    or the models of ``model_config_file``. Arguments are ``tensorflow_model_server``'s flags.

    Any ASGI engine runs it; ``minidl serve`` runs it under uvicorn
    (:mod:`minidl.serving.engine`)::

        uvicorn --factory 'minidl.serving:app_from_environment'
    """
    if model_config_file is not None:
        if model_base_path is not None or model_name is not None:
            raise ValueError("give either model_config_file or model_name/model_base_path, "
                             "not both")
        configs = load_model_config_file(model_config_file)
    elif model_base_path is not None:
        configs = [ModelConfig(model_name or DEFAULT_MODEL_NAME, model_base_path)]
    else:
        raise ValueError("nothing to serve: give model_base_path (and model_name) "
                         "or model_config_file")
    manager = ModelManager(configs, file_system_poll_wait_seconds=file_system_poll_wait_seconds)
    batcher = (Batcher(run_model, max_batch_size=max_batch_size,
                       batch_timeout_micros=batch_timeout_micros,
                       num_batch_threads=num_batch_threads,
                       max_enqueued_batches=max_enqueued_batches)
               if enable_batching else None)
    api_keys = read_api_keys(api_key_file) if api_key_file is not None else None
    return ServingApp(manager, batcher=batcher, api_keys=api_keys, max_body_bytes=max_body_bytes,
                      enable_cors=enable_cors, max_enqueued_requests=max_enqueued_requests,
                      predict_threads=predict_threads)
